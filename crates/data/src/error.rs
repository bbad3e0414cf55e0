//! Errors of reading corpora and tokenizers: each names the file, the position and the fix.

use std::path::PathBuf;

use thiserror::Error;

/// A corpus or tokenizer that cannot be used.
#[derive(Debug, Error)]
pub enum DataError {
    /// The path does not exist.
    #[error("{path} does not exist\nhint: {hint}")]
    NotFound {
        /// The missing path.
        path: PathBuf,
        /// How to get the data.
        hint: String,
    },
    /// Reading failed.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A text file is not UTF-8.
    #[error(
        "{path} is not UTF-8 text (invalid byte at offset {offset})\nhint: convert it, e.g. `iconv -f latin1 -t utf-8`"
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A JSON Lines file has a bad line.
    #[error(
        "{path}, line {line}: {message}\nhint: every line must be a JSON object with a string field `{field}` (set `data.text_field` to use another field)"
    )]
    Jsonl {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
        /// The field that was looked for.
        field: String,
    },
    /// No text at all.
    #[error("corpus {name} holds no text\nhint: {hint}")]
    Empty {
        /// Name of the corpus.
        name: String,
        /// What to check.
        hint: String,
    },
    /// The corpus is too small for the requested context and split.
    #[error(
        "corpus {name} is too small: its {split} split has {tokens} tokens but one sequence needs {needed}\nhint: use a larger corpus, a shorter `model.ctx_len`, or a larger `data.val_fraction`"
    )]
    TooSmall {
        /// Name of the corpus.
        name: String,
        /// `train` or `validation`.
        split: &'static str,
        /// Tokens available.
        tokens: usize,
        /// Tokens needed.
        needed: usize,
    },
    /// A data file is malformed at a known place.
    #[error(
        "{path}, {position}: {message}\nhint: fetch the file again (`scripts/fetch-data.sh`) or check its format"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where: `byte N`, `line N`, `label N`.
        position: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer library failed.
    #[error("tokenizer error ({context}): {message}")]
    Tokenizer {
        /// What was being done.
        context: String,
        /// The library's message.
        message: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tokenizer(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Tokenizer {
            context: context.into(),
            message: err.to_string(),
        }
    }
}
