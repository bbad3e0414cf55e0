//! Errors of the analysis crate: every one names the input that is wrong and what to do.

/// Why a fit or an analysis could not be done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    /// Fewer points than the law has constants (plus one), so the fit is not determined.
    #[error(
        "{what}: need at least {need} points, got {got}; add runs (or rows) or choose a law with fewer constants"
    )]
    TooFewPoints {
        /// What was being fitted.
        what: String,
        /// Points needed.
        need: usize,
        /// Points given.
        got: usize,
    },
    /// A value that must be a finite positive number is not.
    #[error(
        "{what}: {column} = {value} at point {index} must be a finite number > 0; fix or drop that row"
    )]
    NotPositive {
        /// What was being fitted.
        what: String,
        /// Which quantity (N, D, C, loss, ...).
        column: &'static str,
        /// Zero-based index of the offending point.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// The points do not vary along an axis the law needs.
    #[error("{what}: {hint}")]
    Degenerate {
        /// What was being fitted.
        what: String,
        /// What is missing and what to do.
        hint: String,
    },
    /// No starting point led to a finite objective.
    #[error("{what}: the optimiser found no finite solution from any of {starts} starting points")]
    NoSolution {
        /// What was being fitted.
        what: String,
        /// Starting points tried.
        starts: usize,
    },
    /// A metric value outside the metric's range.
    #[error(
        "{what}: {metric} = {value} at point {index} is out of range: it must be {hint}; fix that row or name the right metric"
    )]
    OutOfRange {
        /// What was being analysed.
        what: String,
        /// The metric's name.
        metric: &'static str,
        /// Zero-based index of the offending point.
        index: usize,
        /// The offending value.
        value: f64,
        /// The valid range.
        hint: &'static str,
    },
    /// An argument (budget, level, count) is out of range.
    #[error("{name} = {value} is invalid: {hint}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// Its value, as written.
        value: String,
        /// The accepted range.
        hint: &'static str,
    },
}
