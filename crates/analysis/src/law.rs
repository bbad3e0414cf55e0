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

use forms::{ChinchillaLaw, KaplanLaw, LogLaw, PowerLaw, SparsityLaw};
use objective::{Residual, best_of, best_starts, objective_gradient};

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
    /// `L(S, N, D) = (a_S(1 − S)^b_S + c_S)·N^(−b_N) + a_D·D^(−b_D) + c`, N the non-zero
    /// parameters and S the sparsity (Frantar et al. 2023, eq. 1).
    Sparsity,
}

impl LawKind {
    /// The formula, for reports.
    pub fn formula(self) -> &'static str {
        match self {
            LawKind::Chinchilla => "L(N, D) = E + A/N^alpha + B/D^beta",
            LawKind::Kaplan => "L(N, D) = [(N_c/N)^(alpha/beta) + D_c/D]^beta",
            LawKind::Power => "L(X) = E + A*X^(-alpha)",
            LawKind::Sparsity => "L(S, N, D) = (a_S*(1-S)^b_S + c_S)*N^(-b_N) + a_D*D^(-b_D) + c",
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
    /// Whether residuals are taken on log losses (Hoffmann et al. 2022; Frantar et al. 2023
    /// for language models) or on the losses (Frantar et al. for vision models).
    pub residuals: ResidualScale,
    /// Starts of the full fit: `None` runs L-BFGS from every point of the grid, as
    /// Hoffmann et al. do; `Some(k)` from the k grid points with the lowest objective (for
    /// studies of the fitting procedure itself, which refit hundreds of synthetic data sets).
    pub grid_starts: Option<usize>,
}

/// Where a fit's residuals are measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualScale {
    /// `log L̂ − log L`.
    #[default]
    Log,
    /// `L̂ − L`.
    Linear,
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
            residuals: ResidualScale::Log,
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
            let exponent = matches!(c.name.as_str(), "alpha" | "beta" | "b_S" | "b_N" | "b_D");
            if exponent && !(0.01..=3.0).contains(&c.value) {
                out.push(format!(
                    "{} = {:.3} is outside 0.01..3: the data do not constrain this exponent, and the term it belongs to acts as a constant or a step",
                    c.name, c.value
                ));
            }
            if let Some(i) = c.interval
                && !exponent
                && c.name != "E"
                && c.name != "c"
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

    /// A sparsity law's predicted loss at sparsity `s`, non-zero parameters `n` and tokens
    /// `d` (another law: its prediction at (N, D)).
    pub fn predict_sparse(&self, s: f64, n: f64, d: f64) -> f64 {
        let c: Vec<f64> = self.constants.iter().map(|c| c.value).collect();
        match self.law {
            LawKind::Sparsity => {
                (c[0] * (1.0 - s).powf(c[1]) + c[2]) * n.powf(-c[3]) + c[4] * d.powf(-c[5]) + c[6]
            }
            law => predict_with(law, &c, n, d),
        }
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
        // a_S, b_S, c_S, b_N, a_D, b_D, c: a dense model (S = 0).
        LawKind::Sparsity => (c[0] + c[2]) * n.powf(-c[3]) + c[4] * d.powf(-c[5]) + c[6],
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

/// One measured point of a sparse model: sparsity S (the share of weights that are zero, in
/// [0, 1)), non-zero parameters N, training tokens D and loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SparsePoint {
    /// Sparsity S.
    pub s: f64,
    /// Non-zero parameters N.
    pub n: f64,
    /// Training tokens D.
    pub d: f64,
    /// Loss.
    pub loss: f64,
}

/// Fits Frantar et al. 2023's sparsity law
/// `L(S, N, D) = (a_S(1 − S)^b_S + c_S)·N^(−b_N) + a_D·D^(−b_D) + c`.
pub fn fit_sparsity(points: &[SparsePoint], opts: &FitOptions) -> Result<LawFit, AnalysisError> {
    let what = "sparsity fit L(S, N, D) = (a_S(1-S)^b_S + c_S)N^-b_N + a_D D^-b_D + c".to_string();
    for (index, p) in points.iter().enumerate() {
        if !(p.s.is_finite() && (0.0..1.0).contains(&p.s)) {
            return Err(AnalysisError::InvalidArgument {
                name: "S",
                value: format!("{} (point {})", p.s, index + 1),
                hint: "sparsity is the share of zero weights: at least 0 (dense) and below 1",
            });
        }
    }
    let dense: Vec<Point> = points
        .iter()
        .map(|p| Point {
            n: p.n,
            d: p.d,
            loss: p.loss,
        })
        .collect();
    let mut obs = observations(&what, &dense, &["N", "D"], true)?;
    for (o, p) in obs.iter_mut().zip(points) {
        o.x[2] = (1.0 - p.s).ln();
    }
    let mut levels: Vec<f64> = points.iter().map(|p| p.s).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    if levels.len() < 2 {
        return Err(AnalysisError::Degenerate {
            what,
            hint: "every point has the same sparsity, so a_S, b_S and c_S cannot be told apart: train at two or more sparsities (0 for dense)".into(),
        });
    }
    run_fit(&SparsityLaw, &what, &obs, opts)
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
        LawKind::Sparsity => {
            let dense: Vec<SparsePoint> = points
                .iter()
                .map(|p| SparsePoint {
                    s: 0.0,
                    n: p.n,
                    d: p.d,
                    loss: p.loss,
                })
                .collect();
            fit_sparsity(&dense, opts)
        }
    }
}

/// A point in log space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obs {
    /// `[ln N, ln D, ln(1 − S)]` (or `[ln X, 0, 0]`; S = 0 but for the sparsity law).
    pub(crate) x: [f64; 3],
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
            x: [p.n.ln(), p.d.ln(), 0.0],
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
    let loss = Residual {
        delta: opts.huber_delta,
        linear: opts.residuals == ResidualScale::Linear,
    };
    let grid = law.grid();
    let starts = match opts.grid_starts {
        None => grid.clone(),
        Some(k) => best_starts(law, obs, loss, &grid, k),
    };
    let best = best_of(law, obs, loss, &starts, opts.max_iters).ok_or_else(|| {
        AnalysisError::NoSolution {
            what: what.to_string(),
            starts: grid.len(),
        }
    })?;
    let gradient_norm = objective_gradient(law, obs, loss, &best.theta)
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
    // In the scale the fit measures residuals in: log losses, or losses.
    let scale = |log: f64| if loss.linear { log.exp() } else { log };
    let unscale = |y: f64| {
        if loss.linear {
            y.max(f64::MIN_POSITIVE).ln()
        } else {
            y
        }
    };
    let residuals: Vec<f64> = obs
        .iter()
        .zip(&fitted)
        .map(|(o, f)| (scale(o.log_y) - scale(*f)) * inflation)
        .collect();
    let ranked_on_data = match opts.resampling {
        Resampling::Cases => Vec::new(),
        Resampling::Residuals => best_starts(law, obs, loss, &grid, opts.bootstrap_starts),
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
                    log_y: unscale(scale(*f) + residuals[j]),
                })
                .collect(),
        };
        // A case resample can move the optimum far, so its starts are ranked on the resample;
        // a residual resample keeps the design, and the ranking on the data serves it.
        let mut starts = match opts.resampling {
            Resampling::Cases => best_starts(law, &sample, loss, &grid, opts.bootstrap_starts),
            Resampling::Residuals => {
                ranked_on_data[..opts.bootstrap_starts.min(ranked_on_data.len())].to_vec()
            }
        };
        starts.push(best.theta.clone());
        if let Some(sol) = best_of(law, &sample, loss, &starts, opts.max_iters) {
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
        fn check<L: LogLaw>(law: &L, theta: &[f64], x: [f64; 3]) {
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
        let x = [18.0_f64, 22.0, -1.5];
        check(&ChinchillaLaw, &[6.0, 6.0, 0.5, 0.34, 0.28], x);
        check(&PowerLaw, &[4.0, 0.3, 0.2], x);
        check(&KaplanLaw, &[30.0, 29.0, 0.076, 0.095], x);
        check(&SparsityLaw, &[3.4, 1.2, 2.3, 0.35, 6.0, 0.3, 0.5], x);
    }

    /// Known constants (of the magnitude Frantar et al. 2023 fit for T5 on C4: loss in nats,
    /// N from 10⁶, D from 10⁸) at four sparsities × five sizes × three budgets.
    const SPARSE_TRUTH: [f64; 7] = [30.0, 1.2, 10.0, 0.35, 400.0, 0.3, 1.7];

    fn sparse_points(noise: f64, seed: u64) -> Vec<SparsePoint> {
        use rand::Rng;
        let t = SPARSE_TRUTH;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        for s in [0.0, 0.5, 0.75, 0.875] {
            for n in [1e6, 3e6, 1e7, 3e7, 1e8] {
                for d in [1e8, 1e9, 1e10] {
                    let loss = (t[0] * f64::powf(1.0 - s, t[1]) + t[2]) * f64::powf(n, -t[3])
                        + t[4] * f64::powf(d, -t[5])
                        + t[6];
                    // Box–Muller: a normal draw.
                    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                    let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
                    out.push(SparsePoint {
                        s,
                        n,
                        d,
                        loss: loss * (noise * z).exp(),
                    });
                }
            }
        }
        out
    }

    /// The sparsity law recovers its constants: exactly from noise-free points (on log and on
    /// linear residuals), and within its 95% bootstrap intervals from points with 0.3%
    /// multiplicative noise.
    #[test]
    fn sparsity_law_recovers_synthetic_constants_within_its_intervals() {
        let names = ["a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c"];
        for residuals in [ResidualScale::Log, ResidualScale::Linear] {
            let opts = FitOptions {
                bootstrap: 0,
                residuals,
                huber_delta: if residuals == ResidualScale::Log {
                    1e-3
                } else {
                    1e-2
                },
                ..FitOptions::default()
            };
            let fit = fit_sparsity(&sparse_points(0.0, 0), &opts).unwrap();
            for (name, truth) in names.iter().zip(SPARSE_TRUTH) {
                let got = fit.get(name).unwrap();
                assert!(
                    (got - truth).abs() <= 1e-3 * truth,
                    "{residuals:?} {name}: {got} vs {truth}"
                );
            }
            let (s, n, d): (f64, f64, f64) = (0.75, 1e7, 1e9);
            let t = SPARSE_TRUTH;
            let want = (t[0] * 0.25f64.powf(t[1]) + t[2]) * n.powf(-t[3])
                + t[4] * f64::powf(d, -t[5])
                + t[6];
            assert!((fit.predict_sparse(s, n, d) - want).abs() < 1e-6);
        }
        let opts = FitOptions {
            bootstrap: 100,
            resampling: Resampling::Residuals,
            ..FitOptions::default()
        };
        let fit = fit_sparsity(&sparse_points(0.003, 1), &opts).unwrap();
        assert_eq!(fit.law, LawKind::Sparsity);
        for (name, truth) in names.iter().zip(SPARSE_TRUTH) {
            let i = fit.interval(name).unwrap();
            assert!(
                i.contains(truth),
                "{name}: {truth} outside [{}, {}] (fit {})",
                i.lo,
                i.hi,
                fit.get(name).unwrap()
            );
        }
    }

    #[test]
    fn sparsity_outside_0_to_1_and_a_single_sparsity_are_refused() {
        let mut points = sparse_points(0.0, 0);
        points[3].s = 1.0;
        let err = fit_sparsity(&points, &FitOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("S") && err.contains("below 1"), "{err}");
        points[3].s = -0.1;
        assert!(fit_sparsity(&points, &FitOptions::default()).is_err());
        let dense: Vec<SparsePoint> = sparse_points(0.0, 0)
            .into_iter()
            .filter(|p| p.s == 0.0)
            .collect();
        let err = fit_sparsity(&dense, &FitOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("same sparsity"), "{err}");
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
