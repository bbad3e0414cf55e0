//! Scaling studies: turns a study spec into runs, schedules them, skips finished ones and
//! records results.
//!
//! - [`plan`] expands a [`StudySpec`](scalelab_spec::StudySpec) into [`PlannedRun`]s, each
//!   identified by the hash of its resolved config, with parameters, tokens and FLOPs;
//! - [`store`] is the study's SQLite file: runs, resolved specs, curves, final metrics;
//! - [`schedule`] runs the planned runs as child processes (one single-threaded run per core
//!   by default), records each as it ends, and resumes after any interruption, `kill -9`
//!   included;
//! - [`claim`] lets many runners (one machine or many sharing a filesystem) train each run
//!   exactly once, taking over the runs of workers that died.
//!
//! Training itself happens in the child (`scalelab train`), so a crash, a divergence or a
//! kill of one run never corrupts another. This crate computes no statistics.

pub mod claim;
mod classify_plan;
mod compress_plan;
mod error;
pub mod plan;
pub mod schedule;
pub mod store;
mod transfer_plan;

pub use claim::{DEFAULT_CLAIM_TIMEOUT, Worker};
pub use classify_plan::{ClassifyPlan, PlannedClassify, plan_classify_study};
pub use compress_plan::{
    CompressRole, CompressionPlan, PlannedCompress, is_compression_study, plan_compression_study,
};
pub use error::SweepError;
pub use plan::{BudgetPoint, PlannedRun, StudyPlan, plan_study, study_vocab};
pub use scalelab_spec::{RunKind, RunState, StoredCurvePoint, StoredRun};
pub use schedule::{
    Book, FAILURE_FILE, INTERRUPTED_EXIT, Imported, Job, Launcher, PlannedStudy, RunEnd, Runner,
    StudyProgress, StudySummary, import_on_disk, import_recorded, run_dir, run_study,
};
pub use store::{STORE_FILE, Store};
pub use transfer_plan::{
    PlannedTransfer, TransferPlan, TransferRole, is_transfer_study, plan_transfer_study,
};
