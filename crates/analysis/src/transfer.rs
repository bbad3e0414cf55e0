//! The scaling laws of transfer (Hernandez et al. 2021, "Scaling Laws for Transfer").
//!
//! A model pre-trained on one distribution and fine-tuned on `D_F` examples (tokens) of
//! another reaches some loss. The **effective data transferred** `D_T` is how much more
//! data a model of the same size trained from scratch on the target distribution would
//! have needed to reach that loss: `D_T = D_E − D_F`, where `D_E` is read off the
//! from-scratch loss-against-data curve of that size ([`effective_data`]). Hernandez et
//! al. found `D_T = k·D_F^α·N^β` ([`fit_transfer`]; for text → Python, α ≈ 0.18,
//! β ≈ 0.38, k ≈ 1.9e4).
//!
//! The from-scratch curve is made monotone (a loss that rises with more data is noise for
//! this purpose: pool-adjacent-violators pools it with its neighbours) and interpolated
//! linearly in log space, `ln D` against `ln L` (exact for a pure power law `L = A·D^(−a)`;
//! with an irreducible loss the curve bends, and at one from-scratch run per decade of data
//! the interpolated `D_E` runs up to ~15% high between runs: see the tests). A fine-tuned
//! loss outside the measured range is extrapolated along the nearest segment and flagged,
//! because then `D_T` is a guess.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{percentile_interval, resample};
use crate::{AnalysisError, Interval};

/// What a fine-tuned loss is worth in from-scratch data (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transferred {
    /// Data a from-scratch model of the same size needs for the fine-tuned loss.
    pub d_e: f64,
    /// `D_E − D_F`: the data pre-training was worth (negative: the pre-trained model did
    /// worse than training from scratch on `D_F`, "ossification").
    pub d_t: f64,
    /// `D_E / D_F = (D_F + D_T) / D_F`: the effective-data multiplier.
    pub multiplier: f64,
    /// The fine-tuned loss lies outside the from-scratch curve's measured losses: `D_E` is
    /// extrapolated from its nearest segment.
    pub extrapolated: bool,
}

/// `D_E` and `D_T` of a fine-tuned run that reached `fine_tuned_loss` on `d_f` examples,
/// against the from-scratch curve `scratch` of `(D, loss)` points of the same model size.
pub fn effective_data(
    scratch: &[(f64, f64)],
    fine_tuned_loss: f64,
    d_f: f64,
) -> Result<Transferred, AnalysisError> {
    let what = "effective data transferred";
    for (index, &(d, loss)) in scratch.iter().enumerate() {
        for (column, value) in [("D", d), ("loss", loss)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(AnalysisError::NotPositive {
                    what: format!("{what}: from-scratch curve"),
                    column,
                    index,
                    value,
                });
            }
        }
    }
    for (column, value) in [("D_F", d_f), ("fine-tuned loss", fine_tuned_loss)] {
        if !(value.is_finite() && value > 0.0) {
            return Err(AnalysisError::NotPositive {
                what: what.to_string(),
                column: if column == "D_F" { "D_F" } else { "loss" },
                index: 0,
                value,
            });
        }
    }
    let Some((d_e, extrapolated)) = amount_for_loss(scratch, fine_tuned_loss) else {
        return Err(AnalysisError::Degenerate {
            what: what.to_string(),
            hint: "the from-scratch curve needs at least two amounts of data with different \
                   losses, falling as data grows; train the size from scratch at more data sizes"
                .into(),
        });
    };
    Ok(Transferred {
        d_e,
        d_t: d_e - d_f,
        multiplier: d_e / d_f,
        extrapolated,
    })
}

/// The amount (of data, parameters, bytes…) at which the falling loss curve `points` of
/// positive `(amount, loss)` pairs reaches `loss`: the curve made monotone, then interpolated
/// linearly between `ln amount` and `ln loss`, and extrapolated from the nearest segment
/// outside it (flagged `true`). `None` when fewer than two distinct losses remain.
pub(crate) fn amount_for_loss(points: &[(f64, f64)], loss: f64) -> Option<(f64, bool)> {
    let curve = monotone_curve(points);
    if curve.len() < 2 {
        return None;
    }
    // `curve` runs from the least amount (highest loss) to the most (lowest loss).
    let (first, last) = (curve[0], curve[curve.len() - 1]);
    let extrapolated = loss > first.1 || loss < last.1;
    let segment = curve
        .windows(2)
        .position(|w| loss <= w[0].1 && loss >= w[1].1)
        .unwrap_or(if loss > first.1 { 0 } else { curve.len() - 2 });
    let ((x0, y0), (x1, y1)) = (curve[segment], curve[segment + 1]);
    let (y, y0, y1) = (loss.ln(), y0.ln(), y1.ln());
    Some(((x0 + (y - y0) * (x1 - x0) / (y1 - y0)).exp(), extrapolated))
}

/// The loss the falling curve `points` reaches at `amount` (the inverse of
/// [`amount_for_loss`], on the same monotone curve and interpolation), flagged `true` when
/// `amount` lies outside the measured amounts. `None` when fewer than two distinct losses
/// remain.
pub(crate) fn loss_at_amount(points: &[(f64, f64)], amount: f64) -> Option<(f64, bool)> {
    let curve = monotone_curve(points);
    if curve.len() < 2 {
        return None;
    }
    let x = amount.ln();
    let (first, last) = (curve[0], curve[curve.len() - 1]);
    let extrapolated = x < first.0 || x > last.0;
    let segment = curve
        .windows(2)
        .position(|w| x >= w[0].0 && x <= w[1].0)
        .unwrap_or(if x < first.0 { 0 } else { curve.len() - 2 });
    let ((x0, y0), (x1, y1)) = (curve[segment], curve[segment + 1]);
    let (y0, y1) = (y0.ln(), y1.ln());
    Some(((y0 + (x - x0) * (y1 - y0) / (x1 - x0)).exp(), extrapolated))
}

/// The curve as `(ln D, loss)` points with strictly falling loss: repeated amounts of data
/// averaged, then pool-adjacent-violators for a non-increasing loss (pooled blocks at their
/// mean `ln D` and mean loss), then blocks of equal loss merged.
fn monotone_curve(scratch: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = scratch.iter().map(|&(d, l)| (d.ln(), l)).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Blocks of (sum ln D, sum loss, count).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for (x, y) in points {
        blocks.push((x, y, 1.0));
        while blocks.len() >= 2 {
            let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            let same_d = (a.0 / a.2 - b.0 / b.2).abs() < 1e-12;
            if b.1 / b.2 >= a.1 / a.2 || same_d {
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
            } else {
                break;
            }
        }
    }
    blocks.iter().map(|&(x, y, n)| (x / n, y / n)).collect()
}

/// One fine-tuned cell for the transfer law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransferPoint {
    /// Model size (parameters, in the study's convention).
    pub n: f64,
    /// Fine-tuning data.
    pub d_f: f64,
    /// Effective data transferred.
    pub d_t: f64,
}

/// `D_T = k·D_F^α·N^β`, fitted by least squares in log space, with bootstrap intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferLaw {
    /// k.
    pub k: f64,
    /// α, the exponent of fine-tuning data.
    pub alpha: f64,
    /// β, the exponent of model size (none when every point has the same N: then the law
    /// is `D_T = k·D_F^α` at that size).
    pub beta: Option<f64>,
    /// Percentile bootstrap intervals (cases resampled), when asked for.
    pub intervals: TransferIntervals,
    /// Points fitted (those with `D_T > 0`).
    pub points: usize,
    /// Points left out because `D_T ≤ 0` (pre-training did not help there), which a power
    /// law cannot hold.
    pub dropped: usize,
    /// R² of the log-space fit.
    pub r2: f64,
    /// Bootstrap replicates that gave a fit.
    pub bootstrap_used: usize,
}

/// Intervals of the transfer law's constants.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TransferIntervals {
    /// Of k.
    pub k: Option<Interval>,
    /// Of α.
    pub alpha: Option<Interval>,
    /// Of β.
    pub beta: Option<Interval>,
}

/// Fits `D_T = k·D_F^α·N^β` to `points` (see [`TransferLaw`]), with `bootstrap`
/// case-resampled replicates (seeded) for intervals at coverage `level`.
pub fn fit_transfer(
    points: &[TransferPoint],
    bootstrap: usize,
    level: f64,
    seed: u64,
) -> Result<TransferLaw, AnalysisError> {
    let what = "transfer law D_T = k * D_F^alpha * N^beta";
    for (index, p) in points.iter().enumerate() {
        for (column, value) in [("N", p.n), ("D_F", p.d_f)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(AnalysisError::NotPositive {
                    what: what.to_string(),
                    column,
                    index,
                    value,
                });
            }
        }
        if !p.d_t.is_finite() {
            return Err(AnalysisError::NotPositive {
                what: what.to_string(),
                column: "D_T",
                index,
                value: p.d_t,
            });
        }
    }
    let kept: Vec<TransferPoint> = points.iter().copied().filter(|p| p.d_t > 0.0).collect();
    let one_size = kept.windows(2).all(|w| w[0].n == w[1].n);
    let need = if one_size { 2 } else { 3 };
    if kept.len() < need + usize::from(bootstrap > 0) {
        return Err(AnalysisError::TooFewPoints {
            what: format!(
                "{what} ({} of {} points have D_T > 0)",
                kept.len(),
                points.len()
            ),
            need: need + usize::from(bootstrap > 0),
            got: kept.len(),
        });
    }
    let (coef, r2) = least_squares(&kept, one_size).ok_or_else(|| AnalysisError::Degenerate {
        what: what.to_string(),
        hint: "the points need at least two values of D_F (and of N, for beta) that do not \
               move together"
            .into(),
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples: Vec<[f64; 3]> = Vec::new();
    for _ in 0..bootstrap {
        let draw: Vec<TransferPoint> = resample(kept.len(), &mut rng)
            .into_iter()
            .map(|i| kept[i])
            .collect();
        if let Some((c, _)) = least_squares(&draw, one_size) {
            samples.push(c);
        }
    }
    let interval = |i: usize, f: fn(f64) -> f64| {
        let values: Vec<f64> = samples.iter().map(|c| f(c[i])).collect();
        percentile_interval(&values, level)
    };
    Ok(TransferLaw {
        k: coef[0].exp(),
        alpha: coef[1],
        beta: (!one_size).then_some(coef[2]),
        intervals: TransferIntervals {
            k: interval(0, f64::exp),
            alpha: interval(1, |x| x),
            beta: if one_size { None } else { interval(2, |x| x) },
        },
        points: kept.len(),
        dropped: points.len() - kept.len(),
        r2,
        bootstrap_used: samples.len(),
    })
}

/// Zhang et al. 2024 ("When Scaling Meets LLM Finetuning")'s multiplicative law of
/// fine-tuning, `L = A·X^(−α)·D_F^(−β) + E`, with `X` the model size (or another scaling
/// factor of the fine-tuning setup, such as the LoRA rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiplicativeLaw {
    /// A.
    pub a: f64,
    /// α, the exponent of X (none when every point has the same X: then `A` absorbs it).
    pub alpha: Option<f64>,
    /// β, the exponent of the fine-tuning data.
    pub beta: f64,
    /// E, the loss no amount of X or D_F removes.
    pub e: f64,
    /// Percentile bootstrap intervals (cases resampled), when asked for.
    pub intervals: MultiplicativeIntervals,
    /// Points fitted.
    pub points: usize,
    /// Root-mean-square residual of `ln L`.
    pub rms_log_residual: f64,
    /// Bootstrap replicates that gave a fit.
    pub bootstrap_used: usize,
}

/// Intervals of the multiplicative law's constants.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MultiplicativeIntervals {
    /// Of A.
    pub a: Option<Interval>,
    /// Of α.
    pub alpha: Option<Interval>,
    /// Of β.
    pub beta: Option<Interval>,
    /// Of E.
    pub e: Option<Interval>,
}

/// One fine-tuned loss for the multiplicative law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinetunePoint {
    /// The scaling factor X (model size, LoRA rank).
    pub x: f64,
    /// Fine-tuning data.
    pub d_f: f64,
    /// The loss reached.
    pub loss: f64,
}

/// Fits `L = A·X^(−α)·D_F^(−β) + E` to `points` by least squares on `ln L`: for a given E
/// the law is linear in log space (`ln(L − E) = ln A − α·ln X − β·ln D_F`), so E is found by
/// a scan of `[0, min L)` refined by golden-section search, each E's other constants by
/// ordinary least squares; `bootstrap` case-resampled replicates (seeded) give intervals.
pub fn fit_multiplicative(
    points: &[FinetunePoint],
    bootstrap: usize,
    level: f64,
    seed: u64,
) -> Result<MultiplicativeLaw, AnalysisError> {
    let what = "multiplicative fine-tuning law L = A * X^-alpha * D_F^-beta + E";
    for (index, p) in points.iter().enumerate() {
        for (column, value) in [("X", p.x), ("D_F", p.d_f), ("loss", p.loss)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(AnalysisError::NotPositive {
                    what: what.to_string(),
                    column,
                    index,
                    value,
                });
            }
        }
    }
    let one_x = points.windows(2).all(|w| w[0].x == w[1].x);
    // Constants (E included) and one more point than constants, so that there is a residual.
    let need = if one_x { 4 } else { 5 };
    if points.len() < need {
        return Err(AnalysisError::TooFewPoints {
            what: what.to_string(),
            need,
            got: points.len(),
        });
    }
    let fit = multiplicative_fit(points, one_x).ok_or_else(|| AnalysisError::Degenerate {
        what: what.to_string(),
        hint: "the points need at least three values of D_F (and two of X, for alpha) with \
               losses that fall as D_F grows"
            .into(),
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples: Vec<[f64; 4]> = Vec::new();
    for _ in 0..bootstrap {
        let draw: Vec<FinetunePoint> = resample(points.len(), &mut rng)
            .into_iter()
            .map(|i| points[i])
            .collect();
        if let Some((c, _)) = multiplicative_fit(&draw, one_x) {
            samples.push(c);
        }
    }
    let interval = |i: usize| {
        let values: Vec<f64> = samples.iter().map(|c| c[i]).collect();
        percentile_interval(&values, level)
    };
    let ([a, alpha, beta, e], sse) = fit;
    Ok(MultiplicativeLaw {
        a,
        alpha: (!one_x).then_some(alpha),
        beta,
        e,
        intervals: MultiplicativeIntervals {
            a: interval(0),
            alpha: if one_x { None } else { interval(1) },
            beta: interval(2),
            e: interval(3),
        },
        points: points.len(),
        rms_log_residual: (sse / points.len() as f64).sqrt(),
        bootstrap_used: samples.len(),
    })
}

/// The best `[A, α, β, E]` and its sum of squared `ln L` residuals; `None` when no E gives
/// a solvable design.
fn multiplicative_fit(points: &[FinetunePoint], one_x: bool) -> Option<([f64; 4], f64)> {
    let floor = points.iter().map(|p| p.loss).fold(f64::INFINITY, f64::min);
    // The constants and the residual for one E.
    let at = |e: f64| -> Option<([f64; 4], f64)> {
        let logged: Vec<TransferPoint> = points
            .iter()
            .map(|p| TransferPoint {
                n: p.x,
                d_f: p.d_f,
                d_t: p.loss - e,
            })
            .collect();
        let (c, _) = least_squares(&logged, one_x)?;
        let constants = [c[0].exp(), -c[2], -c[1], e];
        let sse = points
            .iter()
            .map(|p| {
                let fit = (c[0] + c[1] * p.d_f.ln() + c[2] * p.x.ln()).exp() + e;
                (p.loss.ln() - fit.ln()).powi(2)
            })
            .sum::<f64>();
        sse.is_finite().then_some((constants, sse))
    };
    let upper = floor * (1.0 - 1e-6);
    let steps = 400;
    let grid = |i: usize| upper * i as f64 / steps as f64;
    let (best, _) = (0..steps)
        .filter_map(|i| at(grid(i)).map(|(_, sse)| (i, sse)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    // Golden-section search between the best grid point's neighbours.
    let (mut lo, mut hi) = (
        grid(best.saturating_sub(1)),
        grid((best + 1).min(steps - 1)),
    );
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let sse = |e: f64| at(e).map_or(f64::INFINITY, |(_, s)| s);
    for _ in 0..60 {
        let (m1, m2) = (hi - ratio * (hi - lo), lo + ratio * (hi - lo));
        if sse(m1) <= sse(m2) {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    let refined = at((lo + hi) / 2.0)?;
    let grid_best = at(grid(best))?;
    Some(if refined.1 <= grid_best.1 {
        refined
    } else {
        grid_best
    })
}

/// `ln D_T = c0 + c1·ln D_F (+ c2·ln N)` by ordinary least squares; `None` when the design
/// is singular. Returns the coefficients (c2 = 0 for one size) and R².
fn least_squares(points: &[TransferPoint], one_size: bool) -> Option<([f64; 3], f64)> {
    let rows: Vec<([f64; 3], f64)> = points
        .iter()
        .map(|p| ([1.0, p.d_f.ln(), p.n.ln()], p.d_t.ln()))
        .collect();
    let k = if one_size { 2 } else { 3 };
    // Normal equations XᵀX c = Xᵀy, solved by Gaussian elimination with partial pivoting.
    let mut a = [[0.0f64; 4]; 3];
    for (x, y) in &rows {
        for i in 0..k {
            for j in 0..k {
                a[i][j] += x[i] * x[j];
            }
            a[i][3] += x[i] * y;
        }
    }
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        a.swap(col, pivot);
        let scale = a[col][col];
        if scale.abs() < 1e-9 * (1.0 + a[col][3].abs()) {
            return None;
        }
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate().take(k) {
            if r != col {
                let f = row[col] / scale;
                for (x, p) in row.iter_mut().zip(pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut coef = [0.0; 3];
    for i in 0..k {
        coef[i] = a[i][3] / a[i][i];
    }
    let mean = rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (x, y) in &rows {
        let fit: f64 = (0..k).map(|i| coef[i] * x[i]).sum();
        ss_res += (y - fit).powi(2);
        ss_tot += (y - mean).powi(2);
    }
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    coef.iter().all(|c| c.is_finite()).then_some((coef, r2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A from-scratch curve with a known inverse: L(D) = 1 + 10·D^(-0.3), so the data that
    /// reaches loss L is D = ((L − 1)/10)^(-1/0.3).
    fn power_curve() -> Vec<(f64, f64)> {
        [1e3, 1e4, 1e5, 1e6, 1e7]
            .iter()
            .map(|&d: &f64| (d, 1.0 + 10.0 * d.powf(-0.3)))
            .collect()
    }

    fn inverse(loss: f64) -> f64 {
        ((loss - 1.0) / 10.0).powf(-1.0 / 0.3)
    }

    #[test]
    fn a_measured_point_maps_to_its_own_data_exactly() {
        let curve = power_curve();
        let (d, loss) = curve[2];
        let t = effective_data(&curve, loss, 2e4).unwrap();
        assert!((t.d_e / d - 1.0).abs() < 1e-12, "{}", t.d_e);
        assert!((t.d_t - (d - 2e4)).abs() < 1e-6 * d);
        assert!((t.multiplier - d / 2e4).abs() < 1e-9);
        assert!(!t.extrapolated);
    }

    #[test]
    fn between_points_the_log_interpolation_inverts_a_power_law_exactly() {
        // L = 20·D^(-0.3) is a line in log space: every loss maps back to its data.
        let pure: Vec<(f64, f64)> = [1e3, 1e4, 1e5, 1e6]
            .iter()
            .map(|&d: &f64| (d, 20.0 * d.powf(-0.3)))
            .collect();
        for d in [2e3, 3e4, 5e4, 8e5] {
            let t = effective_data(&pure, 20.0 * f64::powf(d, -0.3), 1e3).unwrap();
            assert!((t.d_e / d - 1.0).abs() < 1e-9, "{d}: {}", t.d_e);
        }
        // With an irreducible loss (L = 1 + 10·D^(-0.3)) the curve bends: between runs a
        // decade apart the interpolated data run high, by 12–15% mid-decade (computed in
        // closed form for these points), never low.
        let curve = power_curve();
        for (d, high) in [(2e4, 0.124), (3e4, 0.146), (5e4, 0.119), (8e4, 0.047)] {
            let loss = 1.0 + 10.0 * f64::powf(d, -0.3);
            let t = effective_data(&curve, loss, 1e3).unwrap();
            let error = t.d_e / inverse(loss) - 1.0;
            assert!((error - high).abs() < 2e-3, "{d}: {error}");
            assert!(!t.extrapolated);
        }
    }

    #[test]
    fn losses_outside_the_curve_are_extrapolated_and_flagged() {
        let curve = power_curve();
        // Better than the most data measured: more than 1e7 from scratch.
        let t = effective_data(&curve, 1.05, 1e3).unwrap();
        assert!(t.extrapolated && t.d_e > 1e7);
        // Worse than the least data measured: pre-training hurt ("ossification").
        let t = effective_data(&curve, 5.0, 1e4).unwrap();
        assert!(t.extrapolated && t.d_e < 1e3 && t.d_t < 0.0 && t.multiplier < 1.0);
    }

    #[test]
    fn a_noisy_curve_is_made_monotone_first() {
        // The loss at 1e5 rises above the one at 1e4: the two are pooled at their means.
        let curve = vec![(1e3, 3.0), (1e4, 2.0), (1e5, 2.2), (1e6, 1.5)];
        let m = monotone_curve(&curve);
        assert_eq!(m.len(), 3);
        assert!((m[1].1 - 2.1).abs() < 1e-12);
        assert!((m[1].0 - (1e4f64.ln() + 1e5f64.ln()) / 2.0).abs() < 1e-12);
        assert!(m.windows(2).all(|w| w[1].1 < w[0].1));
        let err = effective_data(&[(1e3, 2.0), (1e4, 2.5)], 2.2, 10.0).unwrap_err();
        assert!(err.to_string().contains("at least two amounts"), "{err}");
    }

    /// D_T = 1.9e4 · D_F^0.18 · N^0.38 (Hernandez et al. 2021, text → Python) on a grid of
    /// sizes and data, with multiplicative noise of a few per cent.
    fn hernandez_points(noise: f64) -> Vec<TransferPoint> {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut out = Vec::new();
        for &n in &[1e6, 3e6, 1e7, 3e7, 1e8] {
            for &d_f in &[1e5, 1e6, 1e7, 1e8] {
                let clean = 1.9e4 * f64::powf(d_f, 0.18) * f64::powf(n, 0.38);
                let e: f64 = rand::Rng::random_range(&mut rng, -1.0..1.0);
                out.push(TransferPoint {
                    n,
                    d_f,
                    d_t: clean * (noise * e).exp(),
                });
            }
        }
        out
    }

    #[test]
    fn the_law_recovers_known_constants_and_its_intervals_hold_them() {
        let exact = fit_transfer(&hernandez_points(0.0), 0, 0.95, 0).unwrap();
        assert!((exact.k / 1.9e4 - 1.0).abs() < 1e-6, "{}", exact.k);
        assert!((exact.alpha - 0.18).abs() < 1e-9);
        assert!((exact.beta.unwrap() - 0.38).abs() < 1e-9);
        assert!((exact.r2 - 1.0).abs() < 1e-12);

        let noisy = fit_transfer(&hernandez_points(0.05), 300, 0.95, 3).unwrap();
        let i = noisy.intervals;
        assert!(i.alpha.unwrap().contains(0.18), "{:?}", i.alpha);
        assert!(i.beta.unwrap().contains(0.38), "{:?}", i.beta);
        assert!(i.k.unwrap().contains(1.9e4), "{:?}", i.k);
        assert!(noisy.bootstrap_used > 290);
        let width = i.alpha.map_or(f64::NAN, |a| a.hi - a.lo);
        assert!(width > 0.0 && width < 0.05, "alpha interval width {width}");
    }

    #[test]
    fn points_without_transfer_are_left_out_and_one_size_fits_alpha_alone() {
        let mut points: Vec<TransferPoint> = hernandez_points(0.0)
            .into_iter()
            .filter(|p| p.n == 1e7)
            .collect();
        points.push(TransferPoint {
            n: 1e7,
            d_f: 1e9,
            d_t: -5.0,
        });
        let law = fit_transfer(&points, 0, 0.95, 0).unwrap();
        assert_eq!((law.points, law.dropped), (4, 1));
        assert_eq!(law.beta, None);
        assert!((law.alpha - 0.18).abs() < 1e-9);
        // k then absorbs N^beta at that size.
        assert!((law.k / (1.9e4 * f64::powf(1e7, 0.38)) - 1.0).abs() < 1e-6);
        let too_few = fit_transfer(&points[..1], 0, 0.95, 0).unwrap_err();
        assert!(too_few.to_string().contains("need at least 2"), "{too_few}");
    }

    /// Zhang et al.'s form with known constants, L = 2000·N^(-0.3)·D_F^(-0.2) + 1.5, on a
    /// grid of three sizes and four amounts of data.
    fn zhang_points(noise: f64) -> Vec<FinetunePoint> {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut out = Vec::new();
        for &x in &[1e5, 1e6, 1e7] {
            for &d_f in &[1e3, 1e4, 1e5, 1e6] {
                let clean = 2000.0 * f64::powf(x, -0.3) * f64::powf(d_f, -0.2) + 1.5;
                let e: f64 = rand::Rng::random_range(&mut rng, -1.0..1.0);
                out.push(FinetunePoint {
                    x,
                    d_f,
                    loss: clean * (noise * e).exp(),
                });
            }
        }
        out
    }

    #[test]
    fn the_multiplicative_law_recovers_known_constants() {
        let exact = fit_multiplicative(&zhang_points(0.0), 0, 0.95, 0).unwrap();
        assert!((exact.e - 1.5).abs() < 1e-4, "E = {}", exact.e);
        assert!((exact.alpha.unwrap() - 0.3).abs() < 1e-3, "{exact:?}");
        assert!((exact.beta - 0.2).abs() < 1e-3, "{exact:?}");
        assert!((exact.a / 2000.0 - 1.0).abs() < 0.02, "{exact:?}");
        assert!(exact.rms_log_residual < 1e-4);

        let noisy = fit_multiplicative(&zhang_points(0.003), 200, 0.95, 1).unwrap();
        let i = noisy.intervals;
        assert!(i.beta.unwrap().contains(0.2), "{:?}", i.beta);
        assert!(i.alpha.unwrap().contains(0.3), "{:?}", i.alpha);
        assert!(i.e.unwrap().contains(1.5), "{:?}", i.e);
        assert!(noisy.bootstrap_used > 150);
        // One size: alpha is not identified and is left out.
        let one: Vec<FinetunePoint> = zhang_points(0.0)
            .into_iter()
            .filter(|p| p.x == 1e6)
            .collect();
        let law = fit_multiplicative(&one, 0, 0.95, 0).unwrap();
        assert_eq!(law.alpha, None);
        assert!(
            (law.beta - 0.2).abs() < 1e-3 && (law.e - 1.5).abs() < 1e-3,
            "{law:?}"
        );
        let err = fit_multiplicative(&one[..3], 0, 0.95, 0).unwrap_err();
        assert!(err.to_string().contains("need at least 4"), "{err}");
    }
}
