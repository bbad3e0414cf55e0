//! Errors of a training run. Divergence is not an error: it is a run outcome, recorded.

use std::path::PathBuf;

use thiserror::Error;

/// Why a run could not train or could not be saved.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] scalelab_spec::SpecError),
    /// The data cannot be used.
    #[error(transparent)]
    Data(#[from] scalelab_data::DataError),
    /// A file could not be written or read.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint exists but cannot be used.
    #[error("checkpoint {path} cannot be used: {message}\nhint: {hint}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A model cannot be compressed as asked.
    #[error("compressing: {message}\nhint: {hint}")]
    Compress {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A Hugging Face checkpoint cannot be written or read as a GPT.
    #[error("{path}: {message}\nhint: {hint}")]
    HuggingFace {
        /// The run or model directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The parent run (`init.from`) cannot be started from.
    #[error("init.from = {path}: {message}\nhint: {hint}")]
    Parent {
        /// The parent's directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The record could not be serialised.
    #[error("cannot serialise {what}: {source}")]
    Serialise {
        /// What was being serialised.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}
