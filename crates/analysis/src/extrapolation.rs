//! The extrapolation check: fit the law on the smaller models only, predict the largest, and
//! report how far off the prediction is. A law that cannot predict its own held-out runs
//! should not be trusted for a budget ten times larger.

use serde::{Deserialize, Serialize};

use crate::{AnalysisError, FitOptions, LawFit, LawKind, Point, fit_law};

/// One held-out point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Parameters N.
    pub n: f64,
    /// Tokens D.
    pub d: f64,
    /// Measured loss.
    pub actual: f64,
    /// Loss predicted by the fit to the smaller models.
    pub predicted: f64,
    /// `(predicted − actual) / actual`.
    pub rel_error: f64,
}

/// The result of the check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extrapolation {
    /// The fit to the smaller models.
    pub fit: LawFit,
    /// The sizes that were held out.
    pub held_out_sizes: Vec<f64>,
    /// Predictions for every held-out point.
    pub predictions: Vec<Prediction>,
    /// Mean of |rel_error|.
    pub mean_abs_rel_error: f64,
    /// Largest |rel_error|.
    pub max_abs_rel_error: f64,
}

/// Holds out the `hold_out` largest distinct N, fits `kind` to the rest, predicts the held out.
pub fn extrapolation_check(
    kind: LawKind,
    points: &[Point],
    hold_out: usize,
    opts: &FitOptions,
) -> Result<Extrapolation, AnalysisError> {
    let mut sizes: Vec<f64> = points.iter().map(|p| p.n).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    if hold_out == 0 || hold_out >= sizes.len() {
        return Err(AnalysisError::InvalidArgument {
            name: "hold_out",
            value: hold_out.to_string(),
            hint: "hold out at least one size and keep at least one to fit (sizes - 1 at most)",
        });
    }
    let cut = sizes[sizes.len() - hold_out];
    let (test, train): (Vec<Point>, Vec<Point>) = points.iter().partition(|p| p.n >= cut);
    let fit = fit_law(kind, &train, opts)?;
    let predictions: Vec<Prediction> = test
        .iter()
        .map(|p| {
            let predicted = fit.predict(p.n, p.d);
            Prediction {
                n: p.n,
                d: p.d,
                actual: p.loss,
                predicted,
                rel_error: (predicted - p.loss) / p.loss,
            }
        })
        .collect();
    let abs: Vec<f64> = predictions.iter().map(|p| p.rel_error.abs()).collect();
    Ok(Extrapolation {
        fit,
        held_out_sizes: sizes[sizes.len() - hold_out..].to_vec(),
        mean_abs_rel_error: abs.iter().sum::<f64>() / abs.len() as f64,
        max_abs_rel_error: abs.iter().copied().fold(0.0, f64::max),
        predictions,
    })
}
