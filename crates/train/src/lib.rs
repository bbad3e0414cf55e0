//! The one training loop of scalelab: AdamW with warm-up and cosine decay over a budget of
//! tokens or FLOPs, global gradient-norm clipping, gradient accumulation, evaluation on a
//! fixed validation sample, divergence detection, atomic checkpoints and run records.
//!
//! It trains one run and knows nothing of other runs: studies, schedulers and analysis are
//! built on top of it. Model files live in `scalelab-models`, data in `scalelab-data`.

pub mod bench;
pub mod checkpoint;
pub mod classify;
pub mod compress;
mod distill;
mod engine;
pub mod error;
pub mod fsutil;
pub mod hf;
pub mod lm_eval;
pub mod machine;
pub mod metrics;
pub mod objective;
mod penalty;
pub mod schedule;
mod sparsify;
pub mod task_eval;
pub mod trainer;
pub mod transfer;

pub use classify::{Classifier, ClassifierInput, ClassifyRun, train_classifier};
pub use error::TrainError;
pub use metrics::class_metrics;
pub use objective::Objective;
pub use scalelab_spec::run_id;
pub use task_eval::evaluate_task;
pub use trainer::{NoProgress, Outcome, Progress, RunOptions, train_lm};
