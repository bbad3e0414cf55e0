//! The compute-optimal question of an IsoFLOP study, answered three ways (Hoffmann et al.
//! 2022, §3): for a budget of C FLOPs, how large a model, on how many tokens?
//!
//! - approach 1: the compute-efficient frontier of every run's evaluation curve, between the
//!   study's smallest and largest budget ([`crate::frontier`]);
//! - approach 2: a parabola per IsoFLOP profile, then power laws in C ([`crate::isoflop`]);
//! - approach 3: `L(N, D) = E + A/N^α + B/D^β` through every run's final loss, minimised along
//!   the study's own FLOP line `C = κ·N^γ·D` ([`crate::optimal`]).
//!
//! Each exponent carries a bootstrap interval whose scheme follows the design: approach 1
//! resamples runs (the frontier is a property of the set of runs), approaches 2 and 3 keep the
//! design and redraw the noise (a residual bootstrap: what another seed of the same runs would
//! do). A [`Consistency`] block sets the three values of `a` side by side, and the largest
//! budget can be held out: approaches 2 and 3 fitted without it predict its optimal size and
//! loss, and the prediction is set beside the measurement ([`HeldOut`]).
//!
//! When runs repeat their data, approach 3 is fitted to the data-constrained effective tokens
//! D′ of Muennighoff et al. 2023 rather than to D ([`crate::optimal::effective_tokens`]).

use serde::{Deserialize, Serialize};

use crate::bootstrap::percentile_interval;
use crate::frontier::{Approach1, CurvePoint, RunCurve, frontier_exponents};
use crate::isoflop::{Approach2, IsoFlopGroup, approach2};
use crate::optimal::{Chinchilla, FlopModel, effective_tokens};
use crate::{
    AnalysisError, Constant, FitOptions, Interval, LawFit, Point, Resampling, fit_chinchilla,
};

/// One finished run of an IsoFLOP study, with N in the convention being analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsoRun {
    /// Its budget C (FLOPs).
    pub budget: f64,
    /// Parameters N.
    pub n: f64,
    /// Training FLOPs per token.
    pub flops_per_token: f64,
    /// Tokens trained.
    pub tokens: f64,
    /// Final validation loss.
    pub loss: f64,
    /// Its evaluations, for approach 1.
    pub curve: Vec<CurvePoint>,
}

/// How to analyse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Bootstrap replicates of every interval.
    pub bootstrap: usize,
    /// Interval coverage.
    pub level: f64,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Distinct training tokens available to every run (the training split), when known.
    pub unique_tokens: Option<f64>,
    /// Fit approaches 2 and 3 again without the largest budget and predict it.
    pub hold_out_largest: bool,
    /// Log-spaced budgets approach 1 samples.
    pub frontier_bins: usize,
    /// Starts of approach 3's full fit ([`FitOptions::grid_starts`]; `None`: the paper's
    /// whole grid).
    pub grid_starts: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bootstrap: 200,
            level: 0.95,
            seed: 0,
            unique_tokens: None,
            hold_out_largest: true,
            frontier_bins: 20,
            grid_starts: None,
        }
    }
}

/// Approach 1, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approach1Summary {
    /// `a` in `N_opt ∝ C^a`.
    pub a: Constant,
    /// `b` in `D_opt ∝ C^b`.
    pub b: Constant,
    /// What the data do not support.
    pub cautions: Vec<String>,
    /// The frontier's winners and fits.
    pub detail: Approach1,
}

/// Approach 2, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approach2Summary {
    /// `a` in `N_opt ∝ C^a`.
    pub a: Constant,
    /// `b` in `D_opt ∝ C^b`.
    pub b: Constant,
    /// What the data do not support.
    pub cautions: Vec<String>,
    /// Every profile, its parabola and optimum.
    pub detail: Approach2,
}

/// Approach 3, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approach3 {
    /// `a = β/(α+γβ)` of `N_opt ∝ C^a` along the study's FLOP line (β/(α+β) when γ = 1).
    pub a: Constant,
    /// `b = α/(α+γβ)`.
    pub b: Constant,
    /// The fit of `L(N, D′)` with E, A, B, α, β and their intervals.
    pub fit: LawFit,
    /// Whether D was replaced by the data-constrained D′ because some run repeated data.
    pub data_constrained: bool,
    /// What the data do not support ([`LawFit::cautions`]).
    pub cautions: Vec<String>,
}

/// One approach's `a`, for the consistency block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApproachA {
    /// 1, 2 or 3.
    pub approach: u8,
    /// Its value.
    pub value: f64,
    /// Its interval.
    pub interval: Option<Interval>,
    /// Whether that approach has cautions.
    pub cautioned: bool,
}

/// Two approaches' `a` compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The first approach.
    pub first: u8,
    /// The second.
    pub second: u8,
    /// `|a_first − a_second|`.
    pub difference: f64,
    /// Whether their intervals overlap (false when either has none).
    pub overlap: bool,
}

/// The three values of `a` side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consistency {
    /// Each approach that gave an `a`.
    pub a: Vec<ApproachA>,
    /// Every pair of them.
    pub pairs: Vec<Pair>,
    /// In words.
    pub summary: String,
}

/// The largest budget predicted from the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// The held-out budget C.
    pub budget: f64,
    /// Its runs.
    pub runs: usize,
    /// N_opt from approach 3 fitted without it.
    pub predicted_n_opt: Option<f64>,
    /// Its interval.
    pub predicted_n_opt_interval: Option<Interval>,
    /// N_opt from approach 2's power law fitted without it.
    pub predicted_n_opt_approach2: Option<f64>,
    /// Its interval.
    pub predicted_n_opt_approach2_interval: Option<Interval>,
    /// The loss at approach 3's optimum.
    pub predicted_loss: Option<f64>,
    /// Its interval.
    pub predicted_loss_interval: Option<Interval>,
    /// The best final loss measured at the budget.
    pub measured_loss: f64,
    /// The N of the run that measured it.
    pub measured_best_n: f64,
    /// The optimum of the held-out profile's own parabola, if it has one.
    pub measured_n_opt: Option<f64>,
    /// `(predicted_loss − measured_loss) / measured_loss`.
    pub relative_error: Option<f64>,
    /// Approach 3's `a` fitted without the budget.
    pub approach3_a: Option<Constant>,
    /// Approach 2's `a` fitted without the budget.
    pub approach2_a: Option<Constant>,
}

/// The compute-optimal analysis of one study, N counted one way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeOptimal {
    /// `total` or `non_embedding`, as the caller named it.
    pub param_convention: String,
    /// `C = κ·N^γ·D` through the study's sizes.
    pub flop_model: FlopModel,
    /// The IsoFLOP budgets, ascending.
    pub budgets: Vec<f64>,
    /// Runs analysed.
    pub runs: usize,
    /// Distinct training tokens, when known.
    pub unique_tokens: Option<f64>,
    /// The most passes any run made over them.
    pub max_epochs: Option<f64>,
    /// Approach 1.
    pub approach1: Option<Approach1Summary>,
    /// Approach 2.
    pub approach2: Option<Approach2Summary>,
    /// Approach 3.
    pub approach3: Option<Approach3>,
    /// The three `a` compared.
    pub consistency: Consistency,
    /// The largest budget predicted from the others.
    pub held_out: Option<HeldOut>,
    /// Each approach's bootstrap scheme, in words.
    pub bootstrap_schemes: Vec<(u8, String)>,
    /// Bootstrap replicates requested.
    pub bootstrap: usize,
    /// Interval coverage.
    pub level: f64,
    /// Why something is missing.
    pub notes: Vec<String>,
}

fn constant(name: &str, value: f64, samples: &[f64], level: f64) -> Constant {
    Constant {
        name: name.to_string(),
        value,
        interval: percentile_interval(samples, level),
    }
}

fn groups_of(runs: &[&IsoRun], budgets: &[f64]) -> Vec<IsoFlopGroup> {
    budgets
        .iter()
        .map(|&c| IsoFlopGroup {
            flops: c,
            points: runs
                .iter()
                .filter(|r| r.budget == c)
                .map(|r| (r.n, r.loss))
                .collect(),
        })
        .collect()
}

fn run_approach2(
    runs: &[&IsoRun],
    budgets: &[f64],
    model: &FlopModel,
    opts: &Options,
) -> Result<Approach2Summary, AnalysisError> {
    let detail = approach2(
        &groups_of(runs, budgets),
        model,
        opts.bootstrap,
        opts.level,
        opts.seed,
    )?;
    let (Some(n_line), Some(d_line)) = (detail.n_opt, detail.d_opt) else {
        return Err(AnalysisError::Degenerate {
            what: "IsoFLOP profiles (approach 2)".into(),
            hint: "fewer than two budgets have a loss minimum; widen each budget's ladder so the smallest and largest sizes both lose to a middle one".into(),
        });
    };
    let cautions = detail.cautions.clone();
    Ok(Approach2Summary {
        a: Constant {
            name: "a".into(),
            value: n_line.slope,
            interval: detail.a_interval,
        },
        b: Constant {
            name: "b".into(),
            value: d_line.slope,
            interval: detail.b_interval,
        },
        cautions,
        detail,
    })
}

fn run_approach3(
    runs: &[&IsoRun],
    model: &FlopModel,
    opts: &Options,
) -> Result<Approach3, AnalysisError> {
    let unique = opts.unique_tokens;
    let data_constrained = unique.is_some_and(|u| runs.iter().any(|r| r.tokens > u));
    let points: Vec<Point> = runs
        .iter()
        .map(|r| Point {
            n: r.n,
            d: unique.map_or(r.tokens, |u| effective_tokens(r.tokens, u)),
            loss: r.loss,
        })
        .collect();
    let fit = fit_chinchilla(
        &points,
        &FitOptions {
            bootstrap: opts.bootstrap,
            level: opts.level,
            seed: opts.seed,
            resampling: Resampling::Residuals,
            grid_starts: opts.grid_starts,
            ..FitOptions::default()
        },
    )?;
    let law = Chinchilla::from_fit(&fit)?;
    let (a, b) = law.exponents(model);
    let (a_s, b_s): (Vec<f64>, Vec<f64>) = fit
        .samples
        .iter()
        .filter_map(|s| Some(Chinchilla::from_sample(s)?.exponents(model)))
        .unzip();
    Ok(Approach3 {
        a: constant("a", a, &a_s, opts.level),
        b: constant("b", b, &b_s, opts.level),
        cautions: fit.cautions(),
        fit,
        data_constrained,
    })
}

fn consistency(
    a1: Option<&Approach1Summary>,
    a2: Option<&Approach2Summary>,
    a3: Option<&Approach3>,
) -> Consistency {
    let a: Vec<ApproachA> = [
        a1.map(|x| (1, &x.a, x.cautions.is_empty())),
        a2.map(|x| (2, &x.a, x.cautions.is_empty())),
        a3.map(|x| (3, &x.a, x.cautions.is_empty())),
    ]
    .into_iter()
    .flatten()
    .map(|(approach, a, clean)| ApproachA {
        approach,
        value: a.value,
        interval: a.interval,
        cautioned: !clean,
    })
    .collect();
    let mut pairs = Vec::new();
    for (i, p) in a.iter().enumerate() {
        for q in &a[i + 1..] {
            let overlap = match (p.interval, q.interval) {
                (Some(x), Some(y)) => x.lo <= y.hi && y.lo <= x.hi,
                _ => false,
            };
            pairs.push(Pair {
                first: p.approach,
                second: q.approach,
                difference: (p.value - q.value).abs(),
                overlap,
            });
        }
    }
    let summary = summarise(&a, &pairs);
    Consistency { a, pairs, summary }
}

fn show(x: &ApproachA) -> String {
    match x.interval {
        Some(i) => format!("{:.3} [{:.3}, {:.3}]", x.value, i.lo, i.hi),
        None => format!("{:.3} (no interval)", x.value),
    }
}

fn summarise(a: &[ApproachA], pairs: &[Pair]) -> String {
    if a.is_empty() {
        return "no approach gave an exponent: see the notes".into();
    }
    let values: Vec<String> = a
        .iter()
        .map(|x| format!("approach {}: a = {}", x.approach, show(x)))
        .collect();
    let mut out = format!("{}.", values.join("; "));
    if let Some(p) = pairs.iter().find(|p| p.first == 2 && p.second == 3) {
        let verdict = if p.overlap && p.difference <= 0.1 {
            "Approaches 2 and 3 agree"
        } else if p.overlap {
            "Approaches 2 and 3 overlap within their intervals but differ by more than 0.1"
        } else {
            "Approaches 2 and 3 disagree: their intervals do not overlap, so at this scale the parabola minima and the parametric law describe the runs differently"
        };
        out.push_str(&format!(" {verdict} (difference {:.3}).", p.difference));
    }
    let apart: Vec<String> = pairs
        .iter()
        .filter(|p| !(p.overlap || (p.first == 2 && p.second == 3)))
        .map(|p| format!("{} and {}", p.first, p.second))
        .collect();
    if !apart.is_empty() {
        out.push_str(&format!(
            " Intervals that do not overlap: approaches {}.",
            apart.join(", ")
        ));
    }
    if a.iter().any(|x| x.cautioned) {
        let which: Vec<String> = a
            .iter()
            .filter(|x| x.cautioned)
            .map(|x| x.approach.to_string())
            .collect();
        out.push_str(&format!(
            " Read with the cautions of approach {}.",
            which.join(", ")
        ));
    }
    out
}

/// The compute-optimal analysis of an IsoFLOP study's finished runs. `convention` names
/// how N is counted (it is copied into the result).
pub fn compute_optimal(
    runs: &[IsoRun],
    convention: &str,
    opts: &Options,
) -> Result<ComputeOptimal, AnalysisError> {
    let what = "compute-optimal analysis";
    for (index, r) in runs.iter().enumerate() {
        for (column, value) in [
            ("C", r.budget),
            ("N", r.n),
            ("D", r.tokens),
            ("loss", r.loss),
            ("x", r.flops_per_token),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(AnalysisError::NotPositive {
                    what: what.into(),
                    column,
                    index,
                    value,
                });
            }
        }
    }
    let mut budgets: Vec<f64> = runs.iter().map(|r| r.budget).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    if budgets.len() < 2 {
        return Err(AnalysisError::Degenerate {
            what: what.into(),
            hint: format!(
                "{} IsoFLOP budget(s) among the finished runs; the compute-optimal exponents need at least two (give budget.flops several values)",
                budgets.len()
            ),
        });
    }
    let sizes: Vec<(f64, f64)> = runs.iter().map(|r| (r.n, r.flops_per_token)).collect();
    let model = FlopModel::fit(&sizes);
    let all: Vec<&IsoRun> = runs.iter().collect();
    let mut notes = Vec::new();

    let curves: Vec<RunCurve> = runs
        .iter()
        .map(|r| RunCurve {
            n: r.n,
            points: r.curve.clone(),
        })
        .collect();
    let span = Some((budgets[0], budgets[budgets.len() - 1]));
    let frontier_opts = FitOptions {
        bootstrap: opts.bootstrap,
        level: opts.level,
        seed: opts.seed,
        ..FitOptions::default()
    };
    let a1 = match frontier_exponents(&curves, opts.frontier_bins.max(2), span, &frontier_opts) {
        Ok(detail) => match (detail.n_opt, detail.d_opt) {
            (Some(n), Some(d)) => {
                let cautions = vec![
                    "the frontier is drawn through the middle of cosine schedules as well as their ends; a point in the middle of a run sits above the loss of a run of that length, so approach 1 leans towards the smaller, faster-learning models".to_string(),
                ];
                Some(Approach1Summary {
                    a: Constant {
                        name: "a".into(),
                        value: n.slope,
                        interval: detail.a_interval,
                    },
                    b: Constant {
                        name: "b".into(),
                        value: d.slope,
                        interval: detail.b_interval,
                    },
                    cautions,
                    detail,
                })
            }
            _ => {
                notes.push("approach 1: one run is best at every sampled budget".into());
                None
            }
        },
        Err(e) => {
            notes.push(format!("approach 1: {e}"));
            None
        }
    };
    let a2 = match run_approach2(&all, &budgets, &model, opts) {
        Ok(x) => Some(x),
        Err(e) => {
            notes.push(format!("approach 2: {e}"));
            None
        }
    };
    let a3 = match run_approach3(&all, &model, opts) {
        Ok(x) => Some(x),
        Err(e) => {
            notes.push(format!("approach 3: {e}"));
            None
        }
    };
    let held_out = if opts.hold_out_largest && budgets.len() >= 4 {
        Some(hold_out(runs, &budgets, &model, opts))
    } else {
        if opts.hold_out_largest {
            notes.push(format!(
                "no held-out prediction: {} budgets, and predicting the largest needs three others to fit",
                budgets.len()
            ));
        }
        None
    };
    let max_epochs = opts
        .unique_tokens
        .map(|u| runs.iter().map(|r| r.tokens / u).fold(0.0_f64, f64::max));
    Ok(ComputeOptimal {
        param_convention: convention.to_string(),
        flop_model: model,
        runs: runs.len(),
        unique_tokens: opts.unique_tokens,
        max_epochs,
        consistency: consistency(a1.as_ref(), a2.as_ref(), a3.as_ref()),
        approach1: a1,
        approach2: a2,
        approach3: a3,
        held_out,
        bootstrap_schemes: vec![
            (1, Resampling::Cases.describe().to_string()),
            (
                2,
                "design kept, each profile's losses redrawn as its parabola plus residuals pooled from every profile (residual bootstrap); every parabola and both power laws refitted".to_string(),
            ),
            (3, Resampling::Residuals.describe().to_string()),
        ],
        bootstrap: opts.bootstrap,
        level: opts.level,
        budgets,
        notes,
    })
}

fn hold_out(runs: &[IsoRun], budgets: &[f64], model: &FlopModel, opts: &Options) -> HeldOut {
    let top = budgets[budgets.len() - 1];
    let (test, train): (Vec<&IsoRun>, Vec<&IsoRun>) = runs.iter().partition(|r| r.budget == top);
    let best = test
        .iter()
        .min_by(|x, y| x.loss.total_cmp(&y.loss))
        .map_or((f64::NAN, f64::NAN), |r| (r.loss, r.n));
    let measured_n_opt = approach2(&groups_of(&test, &[top]), model, 0, opts.level, opts.seed)
        .ok()
        .and_then(|a| a.curves.first().and_then(|c| c.n_opt));
    let a2 = run_approach2(&train, &budgets[..budgets.len() - 1], model, opts).ok();
    let a3 = run_approach3(&train, model, opts).ok();
    let plan = a3.as_ref().and_then(|x| {
        crate::optimal::plan_allocation(&x.fit, model, top, opts.unique_tokens, opts.level).ok()
    });
    let n2 = a2
        .as_ref()
        .and_then(|x| x.detail.predict_n_opt(top, opts.level));
    let predicted_loss = plan.as_ref().map(|p| {
        // A run at the optimum that needs more tokens than the data hold repeats them.
        p.loss_data_constrained.unwrap_or(p.best.loss)
    });
    HeldOut {
        budget: top,
        runs: test.len(),
        predicted_n_opt: plan.as_ref().map(|p| p.best.n_opt),
        predicted_n_opt_interval: plan.as_ref().and_then(|p| p.n_opt),
        predicted_n_opt_approach2: n2.map(|x| x.0),
        predicted_n_opt_approach2_interval: n2.and_then(|x| x.1),
        predicted_loss,
        predicted_loss_interval: plan.as_ref().and_then(|p| p.loss),
        measured_loss: best.0,
        measured_best_n: best.1,
        measured_n_opt,
        relative_error: predicted_loss.map(|p| (p - best.0) / best.0),
        approach3_a: a3.map(|x| x.a),
        approach2_a: a2.map(|x| x.a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs drawn exactly from a Chinchilla law along IsoFLOP lines of `C = 6ND`.
    fn exact_study(law: Chinchilla, budgets: &[f64]) -> Vec<IsoRun> {
        let mut runs = Vec::new();
        for &c in budgets {
            let centre = law.optimal(c).unwrap().n_opt;
            for k in -3..=3 {
                let n = centre * (k as f64 * 0.4).exp();
                let d = c / (6.0 * n);
                runs.push(IsoRun {
                    budget: c,
                    n,
                    flops_per_token: 6.0 * n,
                    tokens: d,
                    loss: law.loss(n, d),
                    curve: (1..=8)
                        .map(|j| {
                            let t = d * j as f64 / 8.0;
                            CurvePoint {
                                flops: 6.0 * n * t,
                                tokens: t,
                                loss: law.loss(n, t),
                            }
                        })
                        .collect(),
                });
            }
        }
        runs
    }

    /// On noise-free runs of a known law the three approaches and the held-out prediction
    /// recover it: a = 0.28/0.62 for the paper's constants.
    #[test]
    fn exact_runs_give_the_laws_allocation() {
        let law = Chinchilla {
            e: 1.5,
            ..Chinchilla::PAPER
        };
        let runs = exact_study(law, &[1e17, 3e17, 1e18, 3e18, 1e19]);
        let r = compute_optimal(
            &runs,
            "total",
            &Options {
                bootstrap: 0,
                ..Options::default()
            },
        )
        .unwrap();
        let want = 0.28 / 0.62;
        assert!(
            (r.flop_model.kappa - 6.0).abs() < 1e-9 && (r.flop_model.gamma - 1.0).abs() < 1e-12
        );
        let a2 = r.approach2.as_ref().unwrap().a.value;
        let a3 = r.approach3.as_ref().unwrap().a.value;
        assert!((a2 - want).abs() < 0.01, "approach 2: {a2}");
        assert!((a3 - want).abs() < 1e-3, "approach 3: {a3}");
        let h = r.held_out.unwrap();
        assert_eq!(h.budget, 1e19);
        let truth = law.optimal(1e19).unwrap();
        assert!((h.predicted_n_opt.unwrap() / truth.n_opt - 1.0).abs() < 0.01);
        assert!((h.predicted_loss.unwrap() - truth.loss).abs() < 1e-3);
        assert!(h.relative_error.unwrap().abs() < 0.01);
        let p = r
            .consistency
            .pairs
            .iter()
            .find(|p| p.first == 2 && p.second == 3)
            .unwrap();
        assert!(p.difference < 0.01);
    }

    #[test]
    fn one_budget_is_refused_with_a_hint() {
        let law = Chinchilla::PAPER;
        let runs = exact_study(law, &[1e18]);
        let err = compute_optimal(&runs, "total", &Options::default()).unwrap_err();
        assert!(err.to_string().contains("budget.flops"), "{err}");
    }
}
