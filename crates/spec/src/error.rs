//! The one error type of spec validation: which key holds which bad value, and how to fix it.

use thiserror::Error;

/// A value in a spec that cannot be resolved into a runnable configuration.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    /// A key holds a value outside its allowed range or set.
    #[error("invalid value for `{key}`: {value}\nhint: {hint}")]
    Invalid {
        /// The dotted key in the spec, e.g. `model.n_heads`.
        key: String,
        /// The offending value as the user wrote it.
        value: String,
        /// What to write instead.
        hint: String,
    },
    /// A configuration could not be written as JSON to hash it.
    #[error("cannot serialise {what} to derive its run id: {message}")]
    Unserialisable {
        /// What was being serialised.
        what: &'static str,
        /// The serialiser's message.
        message: String,
    },
}

impl SpecError {
    /// Shorthand for [`SpecError::Invalid`].
    pub fn invalid(key: &str, value: impl ToString, hint: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            hint: hint.into(),
        }
    }
}
