//! Plain data types shared by every scalelab crate: what a user asks for (specs), what a run
//! resolved it to (resolved configs), and what a run produced (records).
//!
//! This crate holds data and its validation only. It has no Burn, no file I/O and no maths
//! beyond the arithmetic of resolving a size dial: the layers above read files, train models
//! and fit laws, and pass these types between them.

pub mod classify;
pub mod compress;
pub mod compress_study;
pub mod error;
pub mod family;
pub mod init;
pub mod model;
pub mod names;
pub mod optim;
pub mod record;
pub mod run;
pub mod study;
pub mod summary;
pub mod task;
pub mod transfer;

pub use classify::{
    Augmentation, CLASSIFY_PARAM_CONVENTION, CLASSIFY_RECORD_SCHEMA_VERSION, ClassMetrics,
    ClassScores, ClassifierConfig, ClassifierPreset, ClassifierSpec, ClassifyConfig, ClassifyPoint,
    ClassifyRecord, ClassifyResult, ClassifySpec, ClassifyStudySpec, ClassifyTrainConfig,
    ClassifyTrainSpec, Dataset, ImageDataSpec, InputShape, Objective, Regulariser, RnnCell,
    SampleBudget, SplitAccuracy, StudyCell,
};
pub use error::SpecError;

/// The id of a run: the first 8 bytes of the SHA-256 of its resolved configuration as JSON,
/// in hex. Every kind of run (language model, task, classifier) takes its id here, so the
/// same configuration always gets the same id and a finished run is never trained twice.
pub fn run_id<T: serde::Serialize>(config: &T) -> Result<String, SpecError> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(config).map_err(|e| SpecError::Unserialisable {
        what: "the run configuration",
        message: e.to_string(),
    })?;
    Ok(Sha256::digest(&json)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}
pub use compress::{DistillConfig, Method, PruneConfig, Scales};
pub use compress_study::{CompressSpec, CompressionStudySpec, DenseSpec};
pub use family::{Family, Purpose, Shape};
pub use init::{Adapt, AdaptKind, Head, HeadChoice, InitConfig, InitSpec, Parent};
pub use model::{GptPreset, LmConfig, LmSpec};
pub use names::Named;
pub use optim::{Optimiser, OptimiserKind};
pub use record::{
    Adaptation, CurvePoint, ExampleScore, FlopsConvention, LayerSparsity, LmResult, Machine,
    ParamCounts, RUN_RECORD_SCHEMA_VERSION, Record, RecordKind, RunRecord, RunStatus,
    SparsityReport, TASK_EXAMPLES_FILE, TaskMetrics,
};
pub use run::{
    Budget, CorpusKind, CorpusSource, DataConfig, DataSpec, RunConfig, RunSpec, TokenizerKind,
    TokenizerSpec, TrainConfig, TrainDevice, TrainSpec,
};
pub use study::{
    AnalysisSpec, BudgetAxis, BudgetKind, ParamConvention, STUDY_SCHEMA_VERSION, ShapeSpec,
    SizeLadder, StudySpec,
};
pub use summary::{RunKind, RunState, StoredCurvePoint, StoredRun};
pub use task::{
    MAX_MODULUS, ModOp, RESIDUE_TOKEN_BASE, TASK_NAMES, TaskConfig, TaskKind, TaskSpec,
    TaskTrainSet,
};
pub use transfer::{
    FinetuneSpec, PretrainBudget, PretrainSpec, TransferAnalysisSpec, TransferMethod,
    TransferStudySpec,
};
