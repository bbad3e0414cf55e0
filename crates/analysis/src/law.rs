//! Fitting scaling laws to (scale, loss) points.
//!
//! Every law is fitted the way Hoffmann et al. 2022 (appendix D.2) fit theirs: the
//! prediction is written in log space as a log-sum-exp of terms, the objective is the
//! Huber loss (δ = 1e-3 by default) of `log L̂ − log L` summed over points, and L-BFGS
//! (argmin's, with a More–Thuente line search) runs from every point of a grid of
//! initialisations; the best end point is kept. Gradients are analytic.
//!
//! Stopping: the gradient-norm tolerance is 1e-12 and the cost-change tolerance is zero, so a
//! run stops at a stationary point, when the line search can make no further progress, or
//! after `max_iters`. Besiroglu et al. 2024 showed that a loose stop gives wrong Chinchilla
//! constants; the gradient norm at the reported optimum is part of the result so that a
//! reader can check convergence.

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::AnalysisError;
use crate::bootstrap::{percentile_interval, resample};

mod forms;
mod objective;

use forms::{ChinchillaLaw, KaplanLaw, LogLaw, PowerLaw};
use objective::{best_of, best_starts, objective_gradient};

/// One measured point: model size, data size and loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Parameters N (in whichever convention the caller chose; the record says which).
    pub n: f64,
    /// Training tokens D.
    pub d: f64,
    /// Loss (nats per token or per byte).
    pub loss: f64,
}

/// Which law a fit is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LawKind {
    /// `L(N, D) = E + A/N^α + B/D^β` (Hoffmann et al. 2022, eq. 2).
    Chinchilla,
    /// `L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D` (Kaplan et al. 2020, eq. 1.5). In results
    /// `alpha` is α_N and `beta` is α_D.
    Kaplan,
    /// `L(X) = E + A·X^(-α)` for one scale axis X (N, D or C).
    Power,
}

impl LawKind {
    /// The formula, for reports.
    pub fn formula(self) -> &'static str {
        match self {
            LawKind::Chinchilla => "L(N, D) = E + A/N^alpha + B/D^beta",
            LawKind::Kaplan => "L(N, D) = [(N_c/N)^(alpha/beta) + D_c/D]^beta",
            LawKind::Power => "L(X) = E + A*X^(-alpha)",
        }
    }
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Coverage, for example 0.95.
    pub level: f64,
}

impl Interval {
    /// Whether `x` lies in the interval (ends included).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// One fitted constant with its bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constant {
    /// Name as in the paper: `E`, `A`, `B`, `alpha`, `beta`, `a`, `b`, `N_c`, `D_c`.
    pub name: String,
    /// Value at the best fit to all points.
    pub value: f64,
    /// Percentile bootstrap interval, when bootstrapping was asked for.
    pub interval: Option<Interval>,
}

/// How to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Huber δ on log-loss residuals. Hoffmann et al. use 1e-3.
    pub huber_delta: f64,
    /// L-BFGS iteration cap per start.
    pub max_iters: u64,
    /// Bootstrap replicates (0: no intervals).
    pub bootstrap: usize,
    /// Interval coverage.
    pub level: f64,
    /// Seed of the bootstrap resampling.
    pub seed: u64,
    /// Starts per bootstrap replicate: the best grid points on the resample, plus the full fit.
    pub bootstrap_starts: usize,
    /// What a bootstrap replicate redraws.
    pub resampling: Resampling,
    /// Starts of the full fit: `None` runs L-BFGS from every point of the grid, as
    /// Hoffmann et al. do; `Some(k)` from the k grid points with the lowest objective (for
    /// studies of the fitting procedure itself, which refit hundreds of synthetic data sets).
    pub grid_starts: Option<usize>,
}

/// What a bootstrap replicate redraws.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampling {
    /// The points themselves, with replacement (the case bootstrap): right when the points
    /// are a sample from some population of runs, as rows of a CSV from elsewhere may be.
    #[default]
    Cases,
    /// The design is kept and only the noise is redrawn: each point's fitted log-loss plus a
    /// residual drawn with replacement from the fit's residuals (scaled by √(n/(n−p)) for the
    /// p constants fitted). This is what another seed of the same runs would do, and it
    /// never drops the sizes or budgets that pin a constant down (Efron & Tibshirani 1993,
    /// §9.5).
    Residuals,
}

impl Resampling {
    /// A sentence for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Resampling::Cases => "runs resampled with replacement (case bootstrap)",
            Resampling::Residuals => {
                "design kept, residuals of the fit redrawn with replacement and added to its predictions (residual bootstrap: what another seed of the same runs would give)"
            }
        }
    }
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            huber_delta: 1e-3,
            max_iters: 2000,
            bootstrap: 200,
            level: 0.95,
            seed: 0,
            bootstrap_starts: 8,
            resampling: Resampling::Cases,
            grid_starts: None,
        }
    }
}

/// The result of fitting a law.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LawFit {
    /// Which law.
    pub law: LawKind,
    /// For [`LawKind::Power`], the axis X (`N`, `D` or `C`); empty otherwise.
    pub axis: String,
    /// Fitted constants, in the paper's names; derived ones (`a`, `b`) last.
    pub constants: Vec<Constant>,
    /// Huber objective at the optimum, summed over points.
    pub objective: f64,
    /// Norm of the objective's gradient at the optimum (in the log-space parameters).
    pub gradient_norm: f64,
    /// Points fitted.
    pub points: usize,
    /// Starting points tried for the full fit.
    pub starts: usize,
    /// Bootstrap replicates that gave a finite fit (of those requested).
    pub bootstrap_used: usize,
    /// Huber δ used.
    pub huber_delta: f64,
    /// The constants of every bootstrap replicate, in the order of `constants`; used for
    /// prediction bands. Not serialised.
    #[serde(skip)]
    pub samples: Vec<Vec<f64>>,
}

impl LawFit {
    /// The value of a constant by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.constants
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
    }

    /// Plain-language warnings that the data do not pin the fit down: an exponent at an
    /// extreme (below 0.01 or above 3, where a term degenerates into a constant or a step),
    /// or a scale constant (A, B, N_c, D_c) whose interval spans more than three orders of
    /// magnitude.
    /// Empty when none applies. (E at its bound of zero is not a caution by itself: the law
    /// is then a pure power law, Kaplan's form for loss against compute.)
    pub fn cautions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.constants {
            let exponent = c.name == "alpha" || c.name == "beta";
            if exponent && !(0.01..=3.0).contains(&c.value) {
                out.push(format!(
                    "{} = {:.3} is outside 0.01..3: the data do not constrain this exponent, and the term it belongs to acts as a constant or a step",
                    c.name, c.value
                ));
            }
            if let Some(i) = c.interval
                && !exponent
                && c.name != "E"
                && i.lo > 0.0
                && i.hi / i.lo > 1e3
            {
                out.push(format!(
                    "the interval of {} spans {:.0} orders of magnitude: resampled runs move it freely",
                    c.name,
                    (i.hi / i.lo).log10()
                ));
            }
        }
        out
    }

    /// The interval of a constant by name.
    pub fn interval(&self, name: &str) -> Option<Interval> {
        self.constants
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.interval)
    }

    /// Predicted loss at (N, D); for a power law, at X = `n` (and `d` is ignored).
    pub fn predict(&self, n: f64, d: f64) -> f64 {
        let values: Vec<f64> = self.constants.iter().map(|c| c.value).collect();
        predict_with(self.law, &values, n, d)
    }

    /// The bootstrap band of the prediction at (N, D): the central `level` share of the
    /// replicates' predictions. `None` without bootstrap replicates.
    pub fn band(&self, n: f64, d: f64, level: f64) -> Option<Interval> {
        let predictions: Vec<f64> = self
            .samples
            .iter()
            .map(|s| predict_with(self.law, s, n, d))
            .collect();
        percentile_interval(&predictions, level)
    }
}

/// A law's prediction from its constants in the order [`LawFit::constants`] lists them.
fn predict_with(law: LawKind, c: &[f64], n: f64, d: f64) -> f64 {
    match law {
        // E, A, B, alpha, beta, (a, b)
        LawKind::Chinchilla => c[0] + c[1] * n.powf(-c[3]) + c[2] * d.powf(-c[4]),
        // N_c, D_c, alpha_N, alpha_D
        LawKind::Kaplan => ((c[0] / n).powf(c[2] / c[3]) + c[1] / d).powf(c[3]),
        // E, A, alpha
        LawKind::Power => c[0] + c[1] * n.powf(-c[2]),
    }
}

/// Fits `L = E + A·X^(-α)` to `(x, loss)` pairs; `axis` names X in the result.
pub fn fit_power(
    axis: &str,
    x: &[f64],
    loss: &[f64],
    opts: &FitOptions,
) -> Result<LawFit, AnalysisError> {
    let what = format!("power-law fit of loss against {axis}");
    if x.len() != loss.len() {
        return Err(AnalysisError::InvalidArgument {
            name: "x",
            value: format!("{} values for {} losses", x.len(), loss.len()),
            hint: "give one loss per scale value",
        });
    }
    let points: Vec<Point> = x
        .iter()
        .zip(loss)
        .map(|(&n, &loss)| Point { n, d: 1.0, loss })
        .collect();
    let obs = observations(&what, &points, &[axis, "D"], false)?;
    let mut fit = run_fit(&PowerLaw, &what, &obs, opts)?;
    fit.axis = axis.to_string();
    Ok(fit)
}

/// Fits the Chinchilla law `L(N, D) = E + A/N^α + B/D^β` (Hoffmann et al. 2022, approach 3).
pub fn fit_chinchilla(points: &[Point], opts: &FitOptions) -> Result<LawFit, AnalysisError> {
    let what = "Chinchilla fit L(N, D) = E + A/N^alpha + B/D^beta".to_string();
    let obs = observations(&what, points, &["N", "D"], true)?;
    run_fit(&ChinchillaLaw, &what, &obs, opts)
}

/// Fits Kaplan et al.'s `L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D`.
pub fn fit_kaplan(points: &[Point], opts: &FitOptions) -> Result<LawFit, AnalysisError> {
    let what = "Kaplan fit L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D".to_string();
    let obs = observations(&what, points, &["N", "D"], true)?;
    run_fit(&KaplanLaw, &what, &obs, opts)
}

/// Fits the named law; for [`LawKind::Power`] the axis is N.
pub fn fit_law(
    kind: LawKind,
    points: &[Point],
    opts: &FitOptions,
) -> Result<LawFit, AnalysisError> {
    match kind {
        LawKind::Chinchilla => fit_chinchilla(points, opts),
        LawKind::Kaplan => fit_kaplan(points, opts),
        LawKind::Power => {
            let x: Vec<f64> = points.iter().map(|p| p.n).collect();
            let y: Vec<f64> = points.iter().map(|p| p.loss).collect();
            fit_power("N", &x, &y, opts)
        }
    }
}

/// A point in log space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obs {
    /// `[ln N, ln D]` (or `[ln X, 0]`).
    pub(crate) x: [f64; 2],
    pub(crate) log_y: f64,
}

fn observations(
    what: &str,
    points: &[Point],
    axes: &[&str; 2],
    two_axes: bool,
) -> Result<Vec<Obs>, AnalysisError> {
    let mut obs = Vec::with_capacity(points.len());
    for (index, p) in points.iter().enumerate() {
        for (column, value) in [(axes[0], p.n), (axes[1], p.d), ("loss", p.loss)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(AnalysisError::NotPositive {
                    what: what.to_string(),
                    column: static_axis(column),
                    index,
                    value,
                });
            }
        }
        obs.push(Obs {
            x: [p.n.ln(), p.d.ln()],
            log_y: p.loss.ln(),
        });
    }
    let distinct = |k: usize| {
        let mut v: Vec<f64> = obs.iter().map(|o| o.x[k]).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.len()
    };
    if !obs.is_empty() && distinct(0) < 2 {
        return Err(AnalysisError::Degenerate {
            what: what.to_string(),
            hint: format!(
                "every point has the same {}; a law in {} needs at least two distinct values",
                axes[0], axes[0]
            ),
        });
    }
    if two_axes && !obs.is_empty() && distinct(1) < 2 {
        return Err(AnalysisError::Degenerate {
            what: what.to_string(),
            hint: format!(
                "every point has the same {}, so the data term cannot be told apart from E; \
                 train at several token budgets or fit a power law in {} (--law power)",
                axes[1], axes[0]
            ),
        });
    }
    Ok(obs)
}

fn static_axis(name: &str) -> &'static str {
    match name {
        "N" => "N",
        "D" => "D",
        "C" => "C",
        "loss" => "loss",
        _ => "x",
    }
}

fn run_fit<L: LogLaw>(
    law: &L,
    what: &str,
    obs: &[Obs],
    opts: &FitOptions,
) -> Result<LawFit, AnalysisError> {
    let need = L::DIM + 1;
    if obs.len() < need {
        return Err(AnalysisError::TooFewPoints {
            what: what.to_string(),
            need,
            got: obs.len(),
        });
    }
    if opts.huber_delta.is_nan() || opts.huber_delta <= 0.0 {
        return Err(AnalysisError::InvalidArgument {
            name: "huber_delta",
            value: opts.huber_delta.to_string(),
            hint: "must be > 0 (Hoffmann et al. use 1e-3)",
        });
    }
    if !(opts.level > 0.0 && opts.level < 1.0) {
        return Err(AnalysisError::InvalidArgument {
            name: "level",
            value: opts.level.to_string(),
            hint: "must lie strictly between 0 and 1, for example 0.95",
        });
    }
    let grid = law.grid();
    let starts = match opts.grid_starts {
        None => grid.clone(),
        Some(k) => best_starts(law, obs, opts.huber_delta, &grid, k),
    };
    let best = best_of(law, obs, opts.huber_delta, &starts, opts.max_iters).ok_or_else(|| {
        AnalysisError::NoSolution {
            what: what.to_string(),
            starts: grid.len(),
        }
    })?;
    let gradient_norm = objective_gradient(law, obs, opts.huber_delta, &best.theta)
        .iter()
        .map(|g| g * g)
        .sum::<f64>()
        .sqrt();

    // Bootstrap: refit on resamples of the points (or of the residuals), starting from the
    // best grid points on the resample and from the full fit.
    let mut scratch = vec![0.0; L::DIM];
    let fitted: Vec<f64> = obs
        .iter()
        .map(|o| law.log_predict(&best.theta, &o.x, &mut scratch))
        .collect();
    let inflation = (obs.len() as f64 / (obs.len() - L::DIM) as f64).sqrt();
    let residuals: Vec<f64> = obs
        .iter()
        .zip(&fitted)
        .map(|(o, f)| (o.log_y - f) * inflation)
        .collect();
    let ranked_on_data = match opts.resampling {
        Resampling::Cases => Vec::new(),
        Resampling::Residuals => {
            best_starts(law, obs, opts.huber_delta, &grid, opts.bootstrap_starts)
        }
    };
    let mut samples: Vec<Vec<f64>> = Vec::new();
    for replicate in 0..opts.bootstrap {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
        rng.set_stream(replicate as u64);
        let idx = resample(obs.len(), &mut rng);
        let sample: Vec<Obs> = match opts.resampling {
            Resampling::Cases => idx.iter().map(|&i| obs[i]).collect(),
            Resampling::Residuals => obs
                .iter()
                .zip(&fitted)
                .zip(&idx)
                .map(|((o, f), &j)| Obs {
                    x: o.x,
                    log_y: f + residuals[j],
                })
                .collect(),
        };
        // A case resample can move the optimum far, so its starts are ranked on the resample;
        // a residual resample keeps the design, and the ranking on the data serves it.
        let mut starts = match opts.resampling {
            Resampling::Cases => {
                best_starts(law, &sample, opts.huber_delta, &grid, opts.bootstrap_starts)
            }
            Resampling::Residuals => {
                ranked_on_data[..opts.bootstrap_starts.min(ranked_on_data.len())].to_vec()
            }
        };
        starts.push(best.theta.clone());
        if let Some(sol) = best_of(law, &sample, opts.huber_delta, &starts, opts.max_iters) {
            let values: Vec<f64> = law.constants(&sol.theta).iter().map(|c| c.1).collect();
            if values.iter().all(|v| v.is_finite()) {
                samples.push(values);
            }
        }
    }

    let constants = law
        .constants(&best.theta)
        .into_iter()
        .enumerate()
        .map(|(k, (name, value))| {
            let column: Vec<f64> = samples.iter().map(|s| s[k]).collect();
            Constant {
                name: name.to_string(),
                value,
                interval: percentile_interval(&column, opts.level),
            }
        })
        .collect();
    Ok(LawFit {
        law: law.kind(),
        axis: String::new(),
        constants,
        objective: best.cost,
        gradient_norm,
        points: obs.len(),
        starts: starts.len(),
        bootstrap_used: samples.len(),
        huber_delta: opts.huber_delta,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::objective::{huber, huber_grad};
    use super::*;

    /// The analytic gradient of each law matches central finite differences.
    #[test]
    fn analytic_gradients_match_finite_differences() {
        fn check<L: LogLaw>(law: &L, theta: &[f64], x: [f64; 2]) {
            let mut g = vec![0.0; L::DIM];
            law.log_predict(theta, &x, &mut g);
            for k in 0..L::DIM {
                let h = 1e-6;
                let mut tp = theta.to_vec();
                let mut tm = theta.to_vec();
                tp[k] += h;
                tm[k] -= h;
                let mut s = vec![0.0; L::DIM];
                let fd = (law.log_predict(&tp, &x, &mut s) - law.log_predict(&tm, &x, &mut s))
                    / (2.0 * h);
                assert!((fd - g[k]).abs() < 1e-6, "param {k}: fd {fd} vs {}", g[k]);
            }
        }
        let x = [18.0_f64, 22.0];
        check(&ChinchillaLaw, &[6.0, 6.0, 0.5, 0.34, 0.28], x);
        check(&PowerLaw, &[4.0, 0.3, 0.2], x);
        check(&KaplanLaw, &[30.0, 29.0, 0.076, 0.095], x);
    }

    #[test]
    fn huber_is_quadratic_then_linear() {
        assert_eq!(huber(0.5e-3, 1e-3), 0.5 * 0.25e-6);
        assert!((huber(3e-3, 1e-3) - 1e-3 * (3e-3 - 0.5e-3)).abs() < 1e-18);
        assert_eq!(huber_grad(-5.0, 1e-3), -1e-3);
    }

    /// A constant's name, value and interval ends.
    type Row<'a> = (&'a str, f64, Option<(f64, f64)>);

    fn fit_with(constants: &[Row]) -> LawFit {
        LawFit {
            law: LawKind::Chinchilla,
            axis: String::new(),
            constants: constants
                .iter()
                .map(|&(name, value, i)| Constant {
                    name: name.into(),
                    value,
                    interval: i.map(|(lo, hi)| Interval {
                        lo,
                        hi,
                        level: 0.95,
                    }),
                })
                .collect(),
            objective: 0.0,
            gradient_norm: 0.0,
            points: 8,
            starts: 1,
            bootstrap_used: 0,
            huber_delta: 1e-3,
            samples: vec![],
        }
    }

    /// The paper's own constants raise no caution; a degenerate fit of the kind two token
    /// budgets produce (β → 20, B → 1e116; the quickstart's, see the README) raises one for
    /// each symptom.
    #[test]
    fn cautions_flag_degenerate_fits_only() {
        let paper = fit_with(&[
            ("E", 1.69, Some((1.6, 1.8))),
            ("A", 406.4, Some((300.0, 500.0))),
            ("B", 410.7, Some((300.0, 500.0))),
            ("alpha", 0.34, Some((0.3, 0.4))),
            ("beta", 0.28, Some((0.25, 0.31))),
        ]);
        assert!(paper.cautions().is_empty(), "{:?}", paper.cautions());
        let degenerate = fit_with(&[
            ("E", 4.8e-13, Some((1e-15, 1.8))),
            ("A", 2.8, Some((2.4, 2.0e4))),
            ("B", 3.2e116, Some((12.4, 3.1e189))),
            ("alpha", 0.037, Some((0.029, 1.3))),
            ("beta", 20.5, Some((0.14, 32.8))),
        ]);
        let c = degenerate.cautions();
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(c[0].contains("interval of A spans 4 orders"));
        assert!(c[1].contains("interval of B spans 188 orders"));
        assert!(c[2].starts_with("beta = 20.500"));
    }

    #[test]
    fn chinchilla_grid_is_the_papers() {
        // 6 values of a and b, 5 of e, α and β: 6·6·5·5·5 = 4,500.
        assert_eq!(ChinchillaLaw.grid().len(), 4500);
    }
}
