//! IsoFLOP profiles: Chinchilla approach 2 (Hoffmann et al. 2022, §3.2).
//!
//! For each compute budget C, several model sizes are trained to exactly C FLOPs. A parabola
//! in ln N through their final losses gives the loss-optimal N at that budget, and
//! `D_opt = C / FLOPs per token of N_opt` (the study's [`FlopModel`]; `C/(6N)` in the paper).
//! Power laws `N_opt ∝ C^a`, `D_opt ∝ C^b` are then fitted across budgets.
//!
//! Intervals come from a residual bootstrap: the sizes and budgets are the experimenter's
//! design, so a replicate keeps them and redraws only the noise — each loss is its
//! parabola's value plus a residual drawn from all profiles' residuals (each scaled by
//! √(k/(k−3)) for the three coefficients fitted to k sizes). Every replicate refits every
//! parabola and then the power laws, so the uncertainty of each parabola's optimum is carried
//! into a and b.

use rand::Rng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::bootstrap::percentile_interval;
use crate::linear::{fit_line, fit_parabola};
use crate::optimal::FlopModel;
use crate::{AnalysisError, Interval, Line};

/// All runs trained to one compute budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopGroup {
    /// The budget C in FLOPs.
    pub flops: f64,
    /// `(N, final loss)` of each run.
    pub points: Vec<(f64, f64)>,
}

/// The parabola through one budget's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopCurve {
    /// The budget C.
    pub flops: f64,
    /// `loss = c0 + c1·ln N + c2·(ln N)²`, when at least three sizes were trained.
    pub coeffs: Option<[f64; 3]>,
    /// The optimal N, when the parabola opens upwards.
    pub n_opt: Option<f64>,
    /// Bootstrap interval of the optimal N.
    pub n_opt_interval: Option<Interval>,
    /// `C / FLOPs per token of N_opt`.
    pub d_opt: Option<f64>,
    /// The parabola's minimum.
    pub loss_opt: Option<f64>,
    /// Whether N_opt lies inside the range of sizes trained (outside is an extrapolation).
    pub inside: bool,
    /// The smallest and largest N trained at this budget.
    pub n_range: (f64, f64),
    /// Root-mean-square residual of the parabola (nats).
    pub rms_residual: f64,
    /// Why there is no optimum, when there is none.
    pub note: Option<String>,
    /// The `(N, final loss)` points the parabola was fitted to.
    #[serde(default)]
    pub points: Vec<(f64, f64)>,
}

/// Approach 2's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approach2 {
    /// One curve per budget.
    pub curves: Vec<IsoFlopCurve>,
    /// `ln N_opt = a·ln C + k`, when two or more budgets have an optimum.
    pub n_opt: Option<Line>,
    /// `ln D_opt = b·ln C + k`.
    pub d_opt: Option<Line>,
    /// Bootstrap interval of a.
    pub a_interval: Option<Interval>,
    /// Bootstrap interval of b.
    pub b_interval: Option<Interval>,
    /// The `(a, intercept)` of every bootstrap replicate, for prediction bands.
    pub samples: Vec<(f64, f64)>,
    /// Replicates in which every profile had an optimum (of those requested).
    pub bootstrap_used: usize,
    /// Replicates requested.
    pub bootstrap_requested: usize,
    /// The FLOP model that turned N_opt into D_opt.
    pub flop_model: FlopModel,
    /// What the data do not support.
    pub cautions: Vec<String>,
}

impl Approach2 {
    /// `N_opt` predicted at `flops` by the power law, with the bootstrap band at `level`.
    pub fn predict_n_opt(&self, flops: f64, level: f64) -> Option<(f64, Option<Interval>)> {
        let line = self.n_opt?;
        let at = |slope: f64, intercept: f64| (slope * flops.ln() + intercept).exp();
        let band: Vec<f64> = self.samples.iter().map(|&(s, k)| at(s, k)).collect();
        Some((
            at(line.slope, line.intercept),
            percentile_interval(&band, level),
        ))
    }
}

fn curve_of(flops: f64, points: &[(f64, f64)], model: &FlopModel) -> IsoFlopCurve {
    let x: Vec<f64> = points.iter().map(|p| p.0.ln()).collect();
    let y: Vec<f64> = points.iter().map(|p| p.1).collect();
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let none = |note: &str| IsoFlopCurve {
        flops,
        coeffs: None,
        n_opt: None,
        n_opt_interval: None,
        d_opt: None,
        loss_opt: None,
        inside: false,
        n_range: (lo.exp(), hi.exp()),
        rms_residual: 0.0,
        note: Some(note.to_string()),
        points: points.to_vec(),
    };
    let Some(c) = fit_parabola(&x, &y) else {
        return none("fewer than three distinct sizes at this budget");
    };
    let rms_residual = (x
        .iter()
        .zip(&y)
        .map(|(xi, yi)| (yi - (c[0] + c[1] * xi + c[2] * xi * xi)).powi(2))
        .sum::<f64>()
        / x.len() as f64)
        .sqrt();
    let scale = y.iter().map(|v| v.abs()).fold(0.0, f64::max);
    // Curvature across the sampled range must stand clear of rounding error.
    if c[2] * (hi - lo).powi(2) <= 1e-9 * scale {
        return IsoFlopCurve {
            coeffs: Some(c),
            rms_residual,
            ..none("the losses do not curve upwards; train smaller and larger sizes")
        };
    }
    let xo = -c[1] / (2.0 * c[2]);
    let n = xo.exp();
    IsoFlopCurve {
        flops,
        coeffs: Some(c),
        n_opt: Some(n),
        n_opt_interval: None,
        d_opt: Some(model.tokens(flops, n)),
        loss_opt: Some(c[0] + c[1] * xo + c[2] * xo * xo),
        inside: lo <= xo && xo <= hi,
        n_range: (lo.exp(), hi.exp()),
        rms_residual,
        note: None,
        points: points.to_vec(),
    }
}

fn lines(curves: &[IsoFlopCurve]) -> (Option<Line>, Option<Line>) {
    let ok: Vec<&IsoFlopCurve> = curves.iter().filter(|c| c.n_opt.is_some()).collect();
    let lc: Vec<f64> = ok.iter().map(|c| c.flops.ln()).collect();
    let ln: Vec<f64> = ok.iter().filter_map(|c| c.n_opt.map(f64::ln)).collect();
    let ld: Vec<f64> = ok.iter().filter_map(|c| c.d_opt.map(f64::ln)).collect();
    (fit_line(&lc, &ln), fit_line(&lc, &ld))
}

/// Approach 2 over the given budgets, with `bootstrap` residual-bootstrap replicates for the
/// optima and the exponents; `model` turns each N_opt into D_opt.
pub fn approach2(
    groups: &[IsoFlopGroup],
    model: &FlopModel,
    bootstrap: usize,
    level: f64,
    seed: u64,
) -> Result<Approach2, AnalysisError> {
    for g in groups {
        for (index, &(n, loss)) in g.points.iter().enumerate() {
            for (column, value) in [("N", n), ("loss", loss), ("C", g.flops)] {
                if !(value.is_finite() && value > 0.0) {
                    return Err(AnalysisError::NotPositive {
                        what: format!("IsoFLOP profile at C = {:e}", g.flops),
                        column,
                        index,
                        value,
                    });
                }
            }
        }
    }
    let mut curves: Vec<IsoFlopCurve> = groups
        .iter()
        .map(|g| curve_of(g.flops, &g.points, model))
        .collect();
    let (n_opt, d_opt) = lines(&curves);
    // Pooled residuals of every profile that has more sizes than coefficients.
    let mut pool: Vec<f64> = Vec::new();
    for (g, c) in groups.iter().zip(&curves) {
        let k = g.points.len();
        if let Some(q) = c.coeffs
            && k > 3
        {
            let inflation = (k as f64 / (k - 3) as f64).sqrt();
            pool.extend(g.points.iter().map(|&(n, loss)| {
                let x = n.ln();
                (loss - (q[0] + q[1] * x + q[2] * x * x)) * inflation
            }));
        }
    }
    let mut cautions = Vec::new();
    let mut samples = Vec::new();
    let mut b_samples = Vec::new();
    let mut optima: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
    let resampling = bootstrap > 0 && pool.iter().any(|r| r.abs() > 1e-12);
    if bootstrap > 0 && !resampling {
        cautions.push("no profile has more than three sizes, so there are no residuals to estimate the noise from and no intervals; train four or more sizes per budget".to_string());
    }
    if resampling && n_opt.is_some() {
        for replicate in 0..bootstrap {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(replicate as u64);
            let resampled: Vec<IsoFlopCurve> = groups
                .iter()
                .zip(&curves)
                .map(|(g, c)| {
                    let pts: Vec<(f64, f64)> = match c.coeffs {
                        Some(q) => g
                            .points
                            .iter()
                            .map(|&(n, _)| {
                                let x = n.ln();
                                let e = pool[rng.random_range(0..pool.len())];
                                (n, q[0] + q[1] * x + q[2] * x * x + e)
                            })
                            .collect(),
                        None => g.points.clone(),
                    };
                    curve_of(g.flops, &pts, model)
                })
                .collect();
            for (k, c) in resampled.iter().enumerate() {
                if let Some(n) = c.n_opt {
                    optima[k].push(n);
                }
            }
            let every = resampled
                .iter()
                .zip(&curves)
                .all(|(r, c)| r.n_opt.is_some() || c.n_opt.is_none());
            if every && let (Some(a), Some(b)) = lines(&resampled) {
                samples.push((a.slope, a.intercept));
                b_samples.push(b.slope);
            }
        }
        for (c, o) in curves.iter_mut().zip(&optima) {
            if c.n_opt.is_some() {
                // Over the replicates whose parabola still opens upwards; the caution below
                // says when too many did not.
                c.n_opt_interval = percentile_interval(o, level);
            }
        }
        let failed = bootstrap - samples.len();
        if failed * 10 > bootstrap {
            cautions.push(format!(
                "{failed} of {bootstrap} bootstrap replicates left some profile without a minimum: the profiles' curvature is within their noise, and the intervals only describe the replicates that had one"
            ));
        }
    }
    let with_optimum = curves.iter().filter(|c| c.n_opt.is_some()).count();
    if with_optimum < 3 {
        cautions.push(format!(
            "only {with_optimum} budget(s) have a loss minimum, so the power law in C has no degree of freedom to check it; train more budgets"
        ));
    }
    for c in &curves {
        if c.n_opt.is_some() && !c.inside {
            cautions.push(format!(
                "at C = {:.2e} the parabola's minimum lies outside the sizes trained ({:.3e} to {:.3e}): an extrapolation; widen that budget's ladder",
                c.flops, c.n_range.0, c.n_range.1
            ));
        }
    }
    let a_s: Vec<f64> = samples.iter().map(|s| s.0).collect();
    Ok(Approach2 {
        curves,
        n_opt,
        d_opt,
        a_interval: percentile_interval(&a_s, level),
        b_interval: percentile_interval(&b_samples, level),
        bootstrap_used: samples.len(),
        bootstrap_requested: bootstrap,
        samples,
        flop_model: *model,
        cautions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimal::Chinchilla;

    /// Losses drawn exactly from the paper's law along IsoFLOP lines: the parabola minima
    /// follow N_opt ∝ C^a with a = β/(α+β) = 0.4516 (to the accuracy of a parabola fit of a
    /// curve that is not exactly a parabola in ln N, hence the tolerance).
    #[test]
    fn approach2_recovers_the_laws_exponent() {
        let law = Chinchilla::PAPER;
        let groups: Vec<IsoFlopGroup> = [1e18, 1e19, 1e20, 1e21]
            .iter()
            .map(|&c| {
                let centre = law.optimal(c).unwrap().n_opt;
                IsoFlopGroup {
                    flops: c,
                    points: (-4..=4)
                        .map(|k| {
                            let n = centre * (k as f64 * 0.25).exp();
                            (n, law.loss(n, c / (6.0 * n)))
                        })
                        .collect(),
                }
            })
            .collect();
        let r = approach2(&groups, &FlopModel::SIX_N, 50, 0.95, 1).unwrap();
        let a = r.n_opt.unwrap().slope;
        assert!((a - 0.28 / 0.62).abs() < 0.01, "a = {a}");
        assert!((r.d_opt.unwrap().slope - 0.34 / 0.62).abs() < 0.01);
        assert!(r.curves.iter().all(|c| c.inside));
    }

    #[test]
    fn flat_or_thin_budgets_have_no_optimum() {
        let groups = [
            IsoFlopGroup {
                flops: 1e15,
                points: vec![(1e6, 3.0), (2e6, 2.9)],
            },
            IsoFlopGroup {
                flops: 1e16,
                points: vec![(1e6, 3.0), (2e6, 2.5), (4e6, 2.0)],
            },
        ];
        let r = approach2(&groups, &FlopModel::SIX_N, 0, 0.95, 0).unwrap();
        assert!(
            r.curves
                .iter()
                .all(|c| c.n_opt.is_none() && c.note.is_some())
        );
        assert!(r.n_opt.is_none());
        let bad = [IsoFlopGroup {
            flops: 1e15,
            points: vec![(-1.0, 3.0)],
        }];
        assert!(approach2(&bad, &FlopModel::SIX_N, 0, 0.95, 0).is_err());
    }
}
