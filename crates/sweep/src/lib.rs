//! Scaling studies: turns a study spec into runs, schedules them, skips finished ones and
//! records results.
//!
//! - [`plan`] expands a [`StudySpec`](scalelab_spec::StudySpec) into [`PlannedRun`]s, each
//!   identified by the hash of its resolved config, with parameters, tokens and FLOPs;
//! - [`store`] is the study's SQLite file: runs, resolved specs, curves, final metrics;
//! - [`schedule`] runs the planned runs as child processes (one single-threaded run per core
//!   by default), records each as it ends, and resumes after any interruption, `kill -9`
//!   included.
//!
//! Training itself happens in the child (`scalelab train`), so a crash, a divergence or a
//! kill of one run never corrupts another. This crate computes no statistics.

mod classify_plan;
mod error;
pub mod plan;
pub mod schedule;
pub mod store;
mod transfer_plan;

pub use classify_plan::{ClassifyPlan, PlannedClassify, plan_classify_study};
pub use error::SweepError;
pub use plan::{BudgetPoint, PlannedRun, StudyPlan, plan_study, study_vocab};
pub use scalelab_spec::{RunKind, RunState, StoredCurvePoint, StoredRun};
pub use schedule::{
    INTERRUPTED_EXIT, Imported, Job, Launcher, PlannedStudy, RunEnd, StudyProgress, StudySummary,
    import_recorded, run_dir, run_study,
};
pub use store::{STORE_FILE, Store};
pub use transfer_plan::{
    PlannedTransfer, TransferPlan, TransferRole, is_transfer_study, plan_transfer_study,
};
