//! What a run record looks like to the experiment trackers researchers already use.
//!
//! [`view`] turns a record into one tracker-neutral shape (parameters, and metric series
//! keyed by training tokens or samples); [`tensorboard`] writes that shape as TensorBoard
//! event files and [`mlflow`] logs it to an MLflow tracking server. Nothing here trains, fits or renders HTML: records in, files (or requests) out.

pub mod mlflow;
pub mod tensorboard;
pub mod view;

pub use tensorboard::{TensorBoardError, write_events};
pub use view::{Metric, ParamValue, Tracked, TrackedStatus};
