//! Compute-optimal allocation: for a budget of C training FLOPs with C = 6·N·D, the model
//! size N and token count D that minimise the fitted loss.
//!
//! For the Chinchilla law `L = E + A/N^α + B/D^β` minimised under `C = 6ND`
//! (Hoffmann et al. 2022, eq. 4):
//!
//! ```text
//! N_opt(C) = G·(C/6)^a,  D_opt(C) = G⁻¹·(C/6)^b,
//! G = (αA / (βB))^(1/(α+β)),  a = β/(α+β),  b = α/(α+β).
//! ```
//!
//! A study counts its FLOPs exactly, and at small scale `C = 6·N·D` is not what it spends:
//! with N counting every parameter, embedding lookups cost no FLOPs and the attention term
//! costs some that no parameter accounts for. [`FlopModel`] fits `C = κ·N^γ·D` to the study's
//! own sizes, and [`Chinchilla::optimal_with`] minimises the law along that line instead:
//!
//! ```text
//! N_opt = (αA / (γβB))^(1/(α+γβ)) · (C/κ)^a,  D_opt = C / (κ·N_opt^γ),
//! a = β/(α+γβ),  b = α/(α+γβ),
//! ```
//!
//! which is eq. 4 again when κ = 6 and γ = 1. How N is counted changes γ, and so the exponent
//! a; this is most of the Kaplan–Chinchilla disagreement (Pearce & Song 2024).
//!
//! Repeated data are worth less than fresh: [`effective_tokens`] is the data-constrained
//! D′ of Muennighoff et al. 2023 (eq. 5), `D′ = U + U·R*·(1 − e^(−R/R*))` with `R = D/U − 1`
//! repetitions of U unique tokens and R* = 15.4 (their fitted R_D*).

use serde::{Deserialize, Serialize};

use crate::bootstrap::percentile_interval;
use crate::{AnalysisError, Interval, LawFit, LawKind};

/// Muennighoff et al. 2023's fitted R_D*: the number of repetitions after which repeated
/// tokens are worth 1 − 1/e less than fresh ones.
pub const REPEAT_HALF_LIFE: f64 = 15.39;

/// The data-constrained effective token count D′ of D tokens drawn from `unique` distinct
/// ones (Muennighoff et al. 2023, eq. 5): D itself while `D ≤ U`.
pub fn effective_tokens(tokens: f64, unique: f64) -> f64 {
    if unique.is_nan() || unique <= 0.0 || tokens <= unique {
        return tokens;
    }
    let repeats = tokens / unique - 1.0;
    unique + unique * REPEAT_HALF_LIFE * (1.0 - (-repeats / REPEAT_HALF_LIFE).exp())
}

/// How training FLOPs follow from N and D: `C = κ·N^γ·D`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlopModel {
    /// FLOPs per token per parameter^γ (6 in Hoffmann et al.'s `C = 6ND`).
    pub kappa: f64,
    /// How FLOPs per token grow with N (1 in `C = 6ND`).
    pub gamma: f64,
}

impl FlopModel {
    /// Hoffmann et al. 2022's `C = 6·N·D`.
    pub const SIX_N: FlopModel = FlopModel {
        kappa: 6.0,
        gamma: 1.0,
    };

    /// The least-squares line `ln(FLOPs per token) = ln κ + γ·ln N` through a study's sizes,
    /// given as `(N, FLOPs per token)` of its runs (each distinct size counted once, however
    /// many runs it had); `κ = FLOPs per token / N` (γ = 1) with one size, and `C = 6ND` with
    /// none.
    pub fn fit(sizes: &[(f64, f64)]) -> FlopModel {
        let mut ok: Vec<(f64, f64)> = sizes
            .iter()
            .copied()
            .filter(|(n, f)| n.is_finite() && *n > 0.0 && f.is_finite() && *f > 0.0)
            .collect();
        ok.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
        ok.dedup();
        let x: Vec<f64> = ok.iter().map(|p| p.0.ln()).collect();
        let y: Vec<f64> = ok.iter().map(|p| p.1.ln()).collect();
        match crate::linear::fit_line(&x, &y) {
            Some(line) => FlopModel {
                kappa: line.intercept.exp(),
                gamma: line.slope,
            },
            None => match ok.first() {
                Some(&(n, f)) => FlopModel {
                    kappa: f / n,
                    gamma: 1.0,
                },
                None => FlopModel::SIX_N,
            },
        }
    }

    /// FLOPs per token of a model of N parameters.
    pub fn flops_per_token(&self, n: f64) -> f64 {
        self.kappa * n.powf(self.gamma)
    }

    /// Tokens a model of N parameters trains on with C FLOPs.
    pub fn tokens(&self, flops: f64, n: f64) -> f64 {
        flops / self.flops_per_token(n)
    }
}

/// The constants of a Chinchilla law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chinchilla {
    /// Irreducible loss E.
    pub e: f64,
    /// Parameter-term coefficient A.
    pub a: f64,
    /// Data-term coefficient B.
    pub b: f64,
    /// Parameter exponent α.
    pub alpha: f64,
    /// Data exponent β.
    pub beta: f64,
}

impl Chinchilla {
    /// Hoffmann et al. 2022, eq. 10: E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28.
    pub const PAPER: Chinchilla = Chinchilla {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    };

    /// The constants of a fitted Chinchilla law.
    pub fn from_fit(fit: &LawFit) -> Result<Chinchilla, AnalysisError> {
        if fit.law != LawKind::Chinchilla {
            return Err(AnalysisError::InvalidArgument {
                name: "law",
                value: format!("{:?}", fit.law),
                hint: "compute-optimal allocation needs a Chinchilla fit (--law chinchilla)",
            });
        }
        let g = |k: &str| fit.get(k).unwrap_or(f64::NAN);
        Ok(Chinchilla {
            e: g("E"),
            a: g("A"),
            b: g("B"),
            alpha: g("alpha"),
            beta: g("beta"),
        })
    }

    /// The constants of one bootstrap replicate of a Chinchilla fit
    /// ([`LawFit::samples`]: E, A, B, α, β first).
    pub fn from_sample(sample: &[f64]) -> Option<Chinchilla> {
        match *sample {
            [e, a, b, alpha, beta, ..] => Some(Chinchilla {
                e,
                a,
                b,
                alpha,
                beta,
            }),
            _ => None,
        }
    }

    /// Loss at (N, D).
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.e + self.a * n.powf(-self.alpha) + self.b * d.powf(-self.beta)
    }

    /// The compute-optimal N, D and loss for `flops` training FLOPs with `C = 6ND`.
    pub fn optimal(&self, flops: f64) -> Result<Allocation, AnalysisError> {
        self.optimal_with(flops, &FlopModel::SIX_N)
    }

    /// The exponents `(a, b)` of `N_opt ∝ C^a` and `D_opt ∝ C^b` under `model`.
    pub fn exponents(&self, model: &FlopModel) -> (f64, f64) {
        let s = self.alpha + model.gamma * self.beta;
        (self.beta / s, self.alpha / s)
    }

    /// The compute-optimal N, D and loss for `flops` training FLOPs spent as `model` says.
    pub fn optimal_with(&self, flops: f64, model: &FlopModel) -> Result<Allocation, AnalysisError> {
        if !(flops.is_finite() && flops > 0.0) {
            return Err(AnalysisError::InvalidArgument {
                name: "flops",
                value: flops.to_string(),
                hint: "a compute budget must be a finite number of FLOPs > 0, for example 1e18",
            });
        }
        if !(self.alpha > 0.0 && self.beta > 0.0 && self.a > 0.0 && self.b > 0.0) {
            return Err(AnalysisError::InvalidArgument {
                name: "alpha/beta",
                value: format!("alpha = {}, beta = {}", self.alpha, self.beta),
                hint: "the loss must fall with both N and D (A, B, alpha, beta > 0) for an optimum to exist",
            });
        }
        if !(model.kappa > 0.0 && model.gamma > 0.0) {
            return Err(AnalysisError::InvalidArgument {
                name: "flop model",
                value: format!("kappa = {}, gamma = {}", model.kappa, model.gamma),
                hint: "FLOPs per token must grow with N (kappa, gamma > 0)",
            });
        }
        let (a, b) = self.exponents(model);
        let s = self.alpha + model.gamma * self.beta;
        let g = (self.alpha * self.a / (model.gamma * self.beta * self.b)).powf(1.0 / s);
        let n = g * (flops / model.kappa).powf(a);
        let d = model.tokens(flops, n);
        if !(n.is_finite() && d.is_finite() && n > 0.0 && d > 0.0) {
            return Err(AnalysisError::InvalidArgument {
                name: "flops",
                value: flops.to_string(),
                hint: "the optimum overflows at this budget with these constants; give a budget nearer the fitted range",
            });
        }
        Ok(Allocation {
            flops,
            n_opt: n,
            d_opt: d,
            tokens_per_param: d / n,
            loss: self.loss(n, d),
            n_exponent: a,
            d_exponent: b,
        })
    }
}

/// A compute-optimal allocation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// Budget C in FLOPs.
    pub flops: f64,
    /// Optimal parameters.
    pub n_opt: f64,
    /// Optimal tokens, `C / (6·N_opt)`.
    pub d_opt: f64,
    /// `D_opt / N_opt`.
    pub tokens_per_param: f64,
    /// Predicted loss at the optimum.
    pub loss: f64,
    /// a in N_opt ∝ C^a.
    pub n_exponent: f64,
    /// b in D_opt ∝ C^b.
    pub d_exponent: f64,
}

/// A compute-optimal allocation with bootstrap intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAllocation {
    /// The allocation from the fit to every run.
    pub best: Allocation,
    /// Interval of N_opt.
    pub n_opt: Option<Interval>,
    /// Interval of D_opt.
    pub d_opt: Option<Interval>,
    /// Interval of D_opt / N_opt.
    pub tokens_per_param: Option<Interval>,
    /// Interval of the predicted loss.
    pub loss: Option<Interval>,
    /// The loss with D replaced by the data-constrained D′ of the unique tokens available,
    /// when D_opt exceeds them.
    pub loss_data_constrained: Option<f64>,
    /// Bootstrap replicates that gave an allocation.
    pub replicates: usize,
}

/// The allocation at `flops` from a Chinchilla fit and its bootstrap replicates.
/// `unique_tokens`, when known, gives the data-constrained loss of an allocation that needs
/// more tokens than the data hold.
pub fn plan_allocation(
    fit: &LawFit,
    model: &FlopModel,
    flops: f64,
    unique_tokens: Option<f64>,
    level: f64,
) -> Result<PlannedAllocation, AnalysisError> {
    let law = Chinchilla::from_fit(fit)?;
    let best = law.optimal_with(flops, model)?;
    let replicas: Vec<Allocation> = fit
        .samples
        .iter()
        .filter_map(|s| Chinchilla::from_sample(s)?.optimal_with(flops, model).ok())
        .collect();
    let interval = |f: fn(&Allocation) -> f64| {
        let v: Vec<f64> = replicas.iter().map(f).collect();
        percentile_interval(&v, level)
    };
    let loss_data_constrained = unique_tokens
        .filter(|&u| best.d_opt > u)
        .map(|u| law.loss(best.n_opt, effective_tokens(best.d_opt, u)));
    Ok(PlannedAllocation {
        best,
        n_opt: interval(|x| x.n_opt),
        d_opt: interval(|x| x.d_opt),
        tokens_per_param: interval(|x| x.tokens_per_param),
        loss: interval(|x| x.loss),
        loss_data_constrained,
        replicates: replicas.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand computation (Python, same formulas):
    /// ```python
    /// E,A,B,al,be = 1.69,406.4,410.7,0.34,0.28
    /// G = (al*A/(be*B))**(1/(al+be)); N = G*(C/6)**(be/(al+be)); D = (C/6)**(al/(al+be))/G
    /// # C = 5.76e23 -> N = 32189859151.368168, D = 2982305686662.796, L = 1.9307481017316481
    /// # C = 1e21    -> N = 1824217696.8955524, D = 91363364663.27403, D/N = 50.083586415566465
    /// ```
    #[test]
    fn allocation_matches_hand_computed_values() {
        let p = Chinchilla::PAPER;
        let x = p.optimal(5.76e23).unwrap();
        assert!((x.n_opt / 32189859151.368168 - 1.0).abs() < 1e-12);
        assert!((x.d_opt / 2982305686662.796 - 1.0).abs() < 1e-12);
        assert!((x.loss - 1.9307481017316481).abs() < 1e-12);
        assert!((6.0 * x.n_opt * x.d_opt / 5.76e23 - 1.0).abs() < 1e-12);
        let y = p.optimal(1e21).unwrap();
        assert!((y.n_opt / 1824217696.8955524 - 1.0).abs() < 1e-12);
        assert!((y.tokens_per_param - 50.083586415566465).abs() < 1e-9);
        assert!((x.n_exponent - 0.28 / 0.62).abs() < 1e-15);
    }

    /// The allocation is a minimum along the iso-FLOP line: moving N either way costs loss.
    #[test]
    fn allocation_is_the_minimum_on_its_isoflop_line() {
        let p = Chinchilla::PAPER;
        let c = 1e20;
        let x = p.optimal(c).unwrap();
        for f in [0.9, 1.1, 0.5, 2.0] {
            let n = x.n_opt * f;
            assert!(p.loss(n, c / (6.0 * n)) > x.loss);
        }
    }

    /// Under `C = κ·N^γ·D` the closed form is the minimum along the line found by brute force
    /// over a fine grid of N, and κ = 6, γ = 1 gives eq. 4's allocation.
    #[test]
    fn the_flop_model_moves_the_optimum_to_its_isoflop_line() {
        let p = Chinchilla::PAPER;
        let six = p.optimal(1e21).unwrap();
        let same = p.optimal_with(1e21, &FlopModel::SIX_N).unwrap();
        assert_eq!(six, same);
        let model = FlopModel {
            kappa: 4.0,
            gamma: 1.1,
        };
        let c = 1e20;
        let x = p.optimal_with(c, &model).unwrap();
        assert!((model.kappa * x.n_opt.powf(model.gamma) * x.d_opt / c - 1.0).abs() < 1e-12);
        let (mut best_n, mut best_loss) = (0.0, f64::INFINITY);
        for k in 0..20_000 {
            let n = 1e6 * 10f64.powf(k as f64 * 6.0 / 20_000.0);
            let loss = p.loss(n, model.tokens(c, n));
            if loss < best_loss {
                (best_n, best_loss) = (n, loss);
            }
        }
        assert!(
            (best_n / x.n_opt - 1.0).abs() < 1e-3,
            "{best_n} vs {}",
            x.n_opt
        );
        // No point of the grid beats the closed form.
        assert!(best_loss >= x.loss && best_loss - x.loss < 1e-6);
        // a = β/(α+γβ) = 0.28/(0.34+0.308).
        assert!((x.n_exponent - 0.28 / (0.34 + 1.1 * 0.28)).abs() < 1e-15);
    }

    /// A FLOP model fitted to sizes with FLOPs per token exactly 5·N^1.2 recovers it.
    #[test]
    fn flop_models_are_fitted_in_log_space() {
        let sizes: Vec<(f64, f64)> = [1e4, 3e4, 1e5, 4e5]
            .iter()
            .map(|&n| (n, 5.0 * f64::powf(n, 1.2)))
            .collect();
        let m = FlopModel::fit(&sizes);
        assert!((m.kappa - 5.0).abs() < 1e-9 && (m.gamma - 1.2).abs() < 1e-12);
        let one = FlopModel::fit(&[(1e4, 7e4)]);
        assert_eq!((one.kappa, one.gamma), (7.0, 1.0));
        assert_eq!(FlopModel::fit(&[]), FlopModel::SIX_N);
    }

    /// D′ by hand: U = 100, D = 400 (R = 3): 100 + 100·15.39·(1 − e^(−3/15.39)) = 372.571...
    /// (Python: `100 + 100*15.39*(1 - math.exp(-3/15.39))`).
    #[test]
    fn repeated_tokens_count_for_less() {
        assert_eq!(effective_tokens(50.0, 100.0), 50.0);
        assert_eq!(effective_tokens(100.0, 100.0), 100.0);
        let d = effective_tokens(400.0, 100.0);
        assert!((d - 372.5710606653).abs() < 1e-6, "{d}");
        // Never more than U·(1 + R*), however often the data repeat.
        assert!(effective_tokens(1e12, 100.0) <= 100.0 * (1.0 + REPEAT_HALF_LIFE));
    }

    #[test]
    fn bad_budgets_and_constants_are_refused() {
        assert!(Chinchilla::PAPER.optimal(0.0).is_err());
        assert!(Chinchilla::PAPER.optimal(f64::NAN).is_err());
        let flat = Chinchilla {
            beta: 0.0,
            ..Chinchilla::PAPER
        };
        assert!(flat.optimal(1e20).is_err());
    }
}
