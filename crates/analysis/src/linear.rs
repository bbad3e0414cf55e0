//! Ordinary least squares for lines and parabolas: the building blocks of Chinchilla's
//! approaches 1 and 2.

use serde::{Deserialize, Serialize};

use crate::AnalysisError;

/// `y = slope·x + intercept`, with the coefficient of determination.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Slope.
    pub slope: f64,
    /// Intercept.
    pub intercept: f64,
    /// R² of the fit.
    pub r2: f64,
}

/// Least-squares line through `(x, y)`.
pub(crate) fn fit_line(x: &[f64], y: &[f64]) -> Option<Line> {
    let n = x.len() as f64;
    if x.len() < 2 || x.len() != y.len() {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|xi| (xi - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(xi, yi)| (xi - mx) * (yi - my)).sum();
    let syy: f64 = y.iter().map(|yi| (yi - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 { slope * sxy / syy } else { 1.0 };
    Some(Line {
        slope,
        intercept: my - slope * mx,
        r2,
    })
}

/// Fits `ln y = slope·ln x + intercept`, i.e. `y = e^intercept · x^slope`.
pub fn fit_line_loglog(what: &str, x: &[f64], y: &[f64]) -> Result<Line, AnalysisError> {
    for (column, values) in [("x", x), ("y", y)] {
        if let Some((index, &value)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v > 0.0))
        {
            return Err(AnalysisError::NotPositive {
                what: what.to_string(),
                column,
                index,
                value,
            });
        }
    }
    if x.len() < 2 {
        return Err(AnalysisError::TooFewPoints {
            what: what.to_string(),
            need: 2,
            got: x.len(),
        });
    }
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    fit_line(&lx, &ly).ok_or_else(|| AnalysisError::Degenerate {
        what: what.to_string(),
        hint: "every point has the same x; a power law needs at least two distinct values".into(),
    })
}

/// Least-squares parabola `y = c0 + c1·x + c2·x²`; `None` when x takes fewer than three
/// distinct values.
pub(crate) fn fit_parabola(x: &[f64], y: &[f64]) -> Option<[f64; 3]> {
    if x.len() < 3 || x.len() != y.len() {
        return None;
    }
    // Centre and scale x for conditioning, solve, then map the coefficients back.
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let sx = (x.iter().map(|v| (v - mx).powi(2)).sum::<f64>() / n).sqrt();
    if sx <= 0.0 {
        return None;
    }
    let z: Vec<f64> = x.iter().map(|v| (v - mx) / sx).collect();
    let mut m = [[0.0; 4]; 3];
    for (zi, yi) in z.iter().zip(y) {
        let p = [1.0, *zi, zi * zi];
        for r in 0..3 {
            for c in 0..3 {
                m[r][c] += p[r] * p[c];
            }
            m[r][3] += p[r] * yi;
        }
    }
    let q = solve3(m)?;
    // y = q0 + q1 (x−μ)/σ + q2 (x−μ)²/σ².
    let c2 = q[2] / (sx * sx);
    let c1 = q[1] / sx - 2.0 * q[2] * mx / (sx * sx);
    let c0 = q[0] - q[1] * mx / sx + q[2] * mx * mx / (sx * sx);
    Some([c0, c1, c2])
}

/// Gaussian elimination with partial pivoting on an augmented 3×4 matrix.
fn solve3(mut m: [[f64; 4]; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        for row in 0..3 {
            if row != col {
                let f = m[row][col] / m[col][col];
                let pivot_row = m[col];
                for (x, p) in m[row].iter_mut().zip(pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    Some([m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_parabola_recover_exact_coefficients() {
        let x = [1.0_f64, 2.0, 4.0, 8.0];
        let y: Vec<f64> = x.iter().map(|v| 3.0 * v.powf(-0.5)).collect();
        let l = fit_line_loglog("t", &x, &y).unwrap();
        assert!((l.slope + 0.5).abs() < 1e-12 && (l.intercept - 3f64.ln()).abs() < 1e-12);
        assert!((l.r2 - 1.0).abs() < 1e-12);

        let x = [15.0, 16.0, 17.5, 19.0, 20.0];
        let y: Vec<f64> = x.iter().map(|v| 2.0 - 0.3 * v + 0.01 * v * v).collect();
        let c = fit_parabola(&x, &y).unwrap();
        assert!((c[0] - 2.0).abs() < 1e-8 && (c[1] + 0.3).abs() < 1e-9);
        assert!((c[2] - 0.01).abs() < 1e-11);
    }

    #[test]
    fn degenerate_inputs_are_refused() {
        assert!(fit_line_loglog("t", &[2.0, 2.0], &[1.0, 2.0]).is_err());
        assert!(matches!(
            fit_line_loglog("t", &[1.0, -2.0], &[1.0, 2.0]),
            Err(AnalysisError::NotPositive { index: 1, .. })
        ));
        assert!(fit_parabola(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).is_none());
    }
}
