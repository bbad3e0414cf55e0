//! Errors of planning, running and recording a study.

use std::path::PathBuf;

/// Why a study could not be planned, run or recorded.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The study spec is invalid.
    #[error("{path}: {source}")]
    Spec {
        /// The study file.
        path: PathBuf,
        /// What is wrong.
        source: scalelab_spec::SpecError,
    },
    /// One cell of a classification study does not resolve.
    #[error("{path}: in {cell}: {source}")]
    Cell {
        /// The study file.
        path: PathBuf,
        /// The cell: its model and its place in the grid.
        cell: String,
        /// What is wrong.
        source: scalelab_spec::SpecError,
    },
    /// The corpus or tokenizer could not be prepared.
    #[error(transparent)]
    Data(#[from] scalelab_data::DataError),
    /// A value could not be written as JSON for the store.
    #[error("study store {path}: cannot serialise {what}: {source}")]
    Serialise {
        /// The store file.
        path: PathBuf,
        /// What was being serialised.
        what: &'static str,
        /// The serialiser's error.
        source: serde_json::Error,
    },
    /// The SQLite store failed.
    #[error("study store {path}: {source}\nhint: {hint}")]
    Store {
        /// The store file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
        /// What to do.
        hint: &'static str,
    },
    /// The store was written by another schema version.
    #[error(
        "study store {path} has schema version {found}; this scalelab reads version {expected}\nhint: use a new study directory (--dir), or the scalelab version that wrote it"
    )]
    SchemaVersion {
        /// The store file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Version this program reads.
        expected: i64,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A run record could not be read.
    #[error(
        "run record {path} is unreadable: {message}\nhint: use the scalelab that wrote it, or move the run's directory aside to train the run again"
    )]
    Record {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl SweepError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SweepError::Io {
            path: path.into(),
            source,
        }
    }
}
