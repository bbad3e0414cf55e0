//! A scaling study's analysis, from its plain run summaries to every fit its design supports:
//! the power law in N at each size's largest budget, the compute-efficient frontier
//! (approach 1), the three compute-optimal approaches of an IsoFLOP study in both parameter
//! conventions, the parametric law L(N, D), the held-out extrapolation check and the
//! compute-optimal allocations at a few budgets, each with its intervals, and a note for
//! every fit the design cannot give. No I/O: the store's rows go in, the analysis comes out.

use scalelab_spec::{AnalysisSpec, RunState, StoredCurvePoint, StoredRun};

use crate::compute_optimal::{self, ComputeOptimal, IsoRun};
use crate::extrapolation::{Extrapolation, extrapolation_check};
use crate::frontier::{Approach1, CurvePoint, RunCurve, approach1};
use crate::optimal::{FlopModel, PlannedAllocation, plan_allocation};
use crate::{FitOptions, LawFit, LawKind, Point, fit_chinchilla, fit_power};

/// The fits of a study.
#[derive(Debug, Clone, Default)]
pub struct StudyAnalysis {
    /// `L = E + A·N^(-α)` through the final losses (at the largest budget of each size).
    pub loss_vs_n: Option<LawFit>,
    /// The points `loss_vs_n` was fitted to: `(N, loss)`.
    pub loss_vs_n_points: Vec<(f64, f64)>,
    /// The compute-efficient frontier, approach 1, and `L(C)`.
    pub frontier: Option<Approach1>,
    /// `L(N, D) = E + A/N^α + B/D^β`, when the study varies both N and D.
    pub chinchilla: Option<LawFit>,
    /// The three compute-optimal approaches of an IsoFLOP study, N counted the study's way
    /// first and the other way second.
    pub compute_optimal: Vec<ComputeOptimal>,
    /// Fit on the smaller runs, predict the largest.
    pub extrapolation: Option<Extrapolation>,
    /// Compute-optimal allocations at a few budgets, with intervals.
    pub allocations: Vec<PlannedAllocation>,
    /// `C = κ·N^γ·D` through the study's sizes.
    pub flop_model: Option<FlopModel>,
    /// Distinct training tokens of the corpus, when recorded.
    pub unique_tokens: Option<f64>,
    /// The most FLOPs any run spent.
    pub largest_budget: f64,
    /// Interval coverage used throughout.
    pub level: f64,
    /// Why a fit is missing, or what to keep in mind.
    pub notes: Vec<String>,
}

/// Every fit the study's design supports, with notes for those it does not.
pub fn analyse_study(
    runs: &[StoredRun],
    curves: &[Vec<StoredCurvePoint>],
    settings: &AnalysisSpec,
) -> StudyAnalysis {
    let AnalysisSpec {
        bootstrap,
        hold_out,
        seed,
        fit_starts,
    } = *settings;
    let opts = FitOptions {
        bootstrap,
        seed,
        grid_starts: fit_starts,
        ..FitOptions::default()
    };
    let mut a = StudyAnalysis {
        level: opts.level,
        ..StudyAnalysis::default()
    };
    let done: Vec<(usize, &StoredRun)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == RunState::Completed && r.final_val_loss.is_some())
        .collect();
    if done.is_empty() {
        a.notes
            .push("no run has completed yet; run the study first".into());
        return a;
    }
    let final_loss = |r: &StoredRun| r.final_val_loss.unwrap_or(f64::NAN);
    // Loss against N: each size at its largest budget.
    let mut sizes: Vec<&str> = done.iter().map(|(_, r)| r.size.as_str()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in &sizes {
        let of_size: Vec<&StoredRun> = done
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| r.size == *size)
            .collect();
        let top = of_size.iter().map(|r| r.planned_flops).fold(0.0, f64::max);
        for r in of_size.iter().filter(|r| r.planned_flops == top) {
            a.loss_vs_n_points.push((r.n, final_loss(r)));
        }
    }
    a.loss_vs_n_points.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (ns, ls): (Vec<f64>, Vec<f64>) = a.loss_vs_n_points.iter().copied().unzip();
    match fit_power("N", &ns, &ls, &opts) {
        Ok(fit) => a.loss_vs_n = Some(fit),
        Err(e) => a.notes.push(format!("no power law in N: {e}")),
    }
    let curve_of = |i: usize| -> Vec<CurvePoint> {
        curves[i]
            .iter()
            .map(|p| CurvePoint {
                flops: p.flops,
                tokens: p.tokens as f64,
                loss: p.val_loss,
            })
            .collect()
    };
    // The frontier and approach 1 over every run.
    let run_curves: Vec<RunCurve> = done
        .iter()
        .map(|(i, r)| RunCurve {
            n: r.n,
            points: curve_of(*i),
        })
        .collect();
    match approach1(&run_curves, 20, None, &opts) {
        Ok(f) => {
            if f.loss_fit.is_none() {
                a.notes
                    .push("too few frontier points for a power law in C (need 4)".into());
            }
            a.frontier = Some(f);
        }
        Err(e) => a.notes.push(format!("no compute frontier: {e}")),
    }
    let unique_tokens = done
        .iter()
        .filter_map(|(_, r)| r.unique_train_tokens)
        .min()
        .map(|u| u as f64);
    // The largest budget: an IsoFLOP study's largest C, else the most FLOPs a run spent.
    let top_flops = done
        .iter()
        .map(|(_, r)| {
            if r.budget_kind == "flops" {
                r.budget_value
            } else {
                r.train_flops
            }
        })
        .fold(0.0, f64::max);
    // IsoFLOP studies: the three approaches, with N counted both ways (the study's own
    // convention first).
    let iso: Vec<(usize, &StoredRun)> = done
        .iter()
        .copied()
        .filter(|(_, r)| r.budget_kind == "flops")
        .collect();
    if !iso.is_empty() {
        let own = iso[0].1.param_convention.clone();
        let other = if own == "total" {
            "non_embedding"
        } else {
            "total"
        };
        let co_opts = compute_optimal::Options {
            bootstrap,
            level: opts.level,
            seed,
            unique_tokens,
            hold_out_largest: hold_out > 0,
            grid_starts: fit_starts,
            ..compute_optimal::Options::default()
        };
        for convention in [own.as_str(), other] {
            let iso_runs: Vec<IsoRun> = iso
                .iter()
                .map(|&(i, r)| IsoRun {
                    budget: r.budget_value,
                    n: if convention == "total" {
                        r.params_total as f64
                    } else {
                        r.params_non_embedding as f64
                    },
                    flops_per_token: r.flops_per_token,
                    tokens: r.tokens_seen as f64,
                    loss: final_loss(r),
                    curve: curve_of(i),
                })
                .collect();
            match compute_optimal::compute_optimal(&iso_runs, convention, &co_opts) {
                Ok(x) => a.compute_optimal.push(x),
                Err(e) => a
                    .notes
                    .push(format!("no compute-optimal analysis ({convention} N): {e}")),
            }
        }
        if hold_out > 0 {
            a.notes.push("an IsoFLOP study checks its law on its largest budget (held out), not on its largest sizes".into());
        }
    }
    // The parametric law: approach 3 of an IsoFLOP study, else a fit to every run when D
    // varies.
    let flop_model;
    if let Some(co) = a.compute_optimal.first() {
        a.chinchilla = co.approach3.as_ref().map(|x| x.fit.clone());
        flop_model = co.flop_model;
    } else {
        let sizes: Vec<(f64, f64)> = done.iter().map(|(_, r)| (r.n, r.flops_per_token)).collect();
        flop_model = FlopModel::fit(&sizes);
        let points: Vec<Point> = done
            .iter()
            .map(|(_, r)| Point {
                n: r.n,
                d: r.tokens_seen as f64,
                loss: final_loss(r),
            })
            .collect();
        let mut ds: Vec<f64> = points.iter().map(|p| p.d).collect();
        ds.sort_by(f64::total_cmp);
        ds.dedup();
        if ds.len() >= 2 {
            match fit_chinchilla(&points, &opts) {
                Ok(fit) => a.chinchilla = Some(fit),
                Err(e) => a.notes.push(format!("no Chinchilla fit: {e}")),
            }
        } else {
            a.notes.push("every run trained on the same number of tokens, so L(N, D) is not fitted; the loss-against-N law above is at that fixed D".into());
        }
        // Extrapolation: refit without the largest sizes.
        if hold_out > 0 {
            let check_opts = FitOptions {
                bootstrap: 0,
                ..opts
            };
            let result = if a.chinchilla.is_some() {
                extrapolation_check(LawKind::Chinchilla, &points, hold_out, &check_opts)
            } else {
                let pts: Vec<Point> = a
                    .loss_vs_n_points
                    .iter()
                    .map(|&(n, loss)| Point { n, d: 1.0, loss })
                    .collect();
                extrapolation_check(LawKind::Power, &pts, hold_out, &check_opts)
            };
            match result {
                Ok(x) => a.extrapolation = Some(x),
                Err(e) => a.notes.push(format!("no extrapolation check: {e}")),
            }
        }
    }
    a.flop_model = Some(flop_model);
    a.unique_tokens = unique_tokens;
    a.largest_budget = top_flops;
    if let Some(fit) = &a.chinchilla {
        a.allocations = [1.0, 10.0, 100.0]
            .iter()
            .filter_map(|m| {
                plan_allocation(fit, &flop_model, top_flops * m, unique_tokens, opts.level).ok()
            })
            .collect();
    }
    a
}

#[cfg(test)]
mod tests {
    use scalelab_spec::RunKind;

    use super::*;

    /// A completed run of `n` parameters trained on `tokens` tokens to `loss`, its curve one
    /// point at the end.
    fn run(n: f64, tokens: u64, loss: f64) -> (StoredRun, Vec<StoredCurvePoint>) {
        let flops_per_token = 6.0 * n;
        let flops = tokens as f64 * flops_per_token;
        let run = StoredRun {
            run_id: format!("{n}-{tokens}"),
            kind: RunKind::Lm,
            size: format!("{n}"),
            seed: 0,
            n_layers: 1,
            d_model: 8,
            n_heads: 1,
            params_total: n as u64,
            params_non_embedding: n as u64,
            n,
            param_convention: "total".into(),
            flops_per_token,
            planned_tokens: tokens,
            planned_flops: flops,
            budget_kind: "tokens".into(),
            budget_value: tokens as f64,
            status: RunState::Completed,
            tokens_seen: tokens,
            train_flops: flops,
            final_val_loss: Some(loss),
            final_val_bpb: Some(loss),
            wall_secs: 1.0,
            message: None,
            unique_train_tokens: None,
        };
        let curve = vec![StoredCurvePoint {
            tokens,
            flops,
            val_loss: loss,
            val_bpb: loss,
            train_loss: None,
        }];
        (run, curve)
    }

    fn settings() -> AnalysisSpec {
        AnalysisSpec {
            bootstrap: 0,
            hold_out: 0,
            ..AnalysisSpec::default()
        }
    }

    #[test]
    fn a_size_ladder_at_one_budget_recovers_its_power_law_and_says_why_there_is_no_d_law() {
        // L = 2 + 50·N^−0.3, exactly, at five sizes and one token budget.
        let (runs, curves): (Vec<_>, Vec<_>) = [1e4, 3e4, 1e5, 3e5, 1e6]
            .iter()
            .map(|&n: &f64| run(n, 1_000_000, 2.0 + 50.0 * n.powf(-0.3)))
            .unzip();
        let a = analyse_study(&runs, &curves, &settings());
        let fit = a.loss_vs_n.expect("a power law in N");
        let alpha = fit.get("alpha").expect("an exponent");
        assert!((alpha - 0.3).abs() < 0.01, "alpha {alpha}");
        assert_eq!(a.loss_vs_n_points.len(), 5);
        assert!(a.chinchilla.is_none());
        assert!(
            a.notes.iter().any(|n| n.contains("same number of tokens")),
            "{:?}",
            a.notes
        );
        assert_eq!(a.largest_budget, 1_000_000.0 * 6.0 * 1e6);
    }

    #[test]
    fn only_completed_runs_are_analysed() {
        let (mut r, c) = run(1e4, 1000, 3.0);
        r.status = RunState::Failed;
        let a = analyse_study(&[r], &[c], &settings());
        assert!(a.loss_vs_n.is_none() && a.frontier.is_none());
        assert_eq!(
            a.notes,
            vec!["no run has completed yet; run the study first"]
        );
    }
}
