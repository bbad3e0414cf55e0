//! The compute-efficient frontier and Chinchilla approach 1.
//!
//! Every run contributes its evaluation curve: loss after C FLOPs. The frontier is the lower
//! envelope of all those points against C. Approach 1 (Hoffmann et al. 2022, §3.1) samples
//! log-spaced budgets, takes the run with the lowest (log-interpolated) loss at each, and
//! fits `N_opt ∝ C^a` and `D_opt ∝ C^b` through the winners.
//!
//! A caveat the paper itself handles and this crate reports: a point in the middle of a run
//! trained with a cosine schedule sits above the loss a run of that length would reach, so
//! runs of several lengths (or the final points only) make the frontier honest.

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{percentile_interval, resample};
use crate::linear::fit_line;
use crate::{AnalysisError, FitOptions, Interval, LawFit, Line, fit_power};

/// One evaluation of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Training FLOPs spent so far.
    pub flops: f64,
    /// Training tokens seen so far.
    pub tokens: f64,
    /// Validation loss.
    pub loss: f64,
}

/// A run's evaluation curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCurve {
    /// Parameters N.
    pub n: f64,
    /// Evaluations, in any order.
    pub points: Vec<CurvePoint>,
}

/// A point on the frontier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// FLOPs.
    pub flops: f64,
    /// Lowest loss reached by any run at or below these FLOPs.
    pub loss: f64,
    /// Index of the run that reached it.
    pub run: usize,
    /// That run's N.
    pub n: f64,
    /// Tokens that run had seen.
    pub tokens: f64,
}

/// The lower envelope of loss against FLOPs over every run's evaluations: the points that
/// beat every point at fewer or equal FLOPs. Points with zero FLOPs are left out.
pub fn efficient_frontier(runs: &[RunCurve]) -> Vec<FrontierPoint> {
    let mut all: Vec<FrontierPoint> = runs
        .iter()
        .enumerate()
        .flat_map(|(run, r)| {
            r.points
                .iter()
                .filter(|p| p.flops > 0.0 && p.loss.is_finite())
                .map(move |p| FrontierPoint {
                    flops: p.flops,
                    loss: p.loss,
                    run,
                    n: r.n,
                    tokens: p.tokens,
                })
        })
        .collect();
    all.sort_by(|a, b| a.flops.total_cmp(&b.flops).then(a.loss.total_cmp(&b.loss)));
    let mut out: Vec<FrontierPoint> = Vec::new();
    for p in all {
        if out.last().is_none_or(|last| p.loss < last.loss) {
            out.push(p);
        }
    }
    out
}

/// Approach 1's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approach1 {
    /// The best run at each sampled budget.
    pub samples: Vec<FrontierPoint>,
    /// `ln N_opt = slope·ln C + intercept`; `None` when one run wins at every budget.
    pub n_opt: Option<Line>,
    /// `ln D_opt = slope·ln C + intercept`.
    pub d_opt: Option<Line>,
    /// The compute-efficient frontier of every run's curve ([`efficient_frontier`]); empty
    /// from [`frontier_exponents`].
    #[serde(default)]
    pub frontier: Vec<FrontierPoint>,
    /// `L = E + A·C^(-α)` through the frontier points; `None` with fewer than 4 of them.
    pub loss_fit: Option<LawFit>,
    /// Bootstrap interval of a (runs resampled with replacement: the frontier is a property
    /// of the set of runs, so a replicate is another draw of them).
    pub a_interval: Option<Interval>,
    /// Bootstrap interval of b.
    pub b_interval: Option<Interval>,
}

/// Log-interpolated loss (and tokens) of one run at `flops`, if the run's curve spans it.
fn at_flops(points: &[CurvePoint], flops: f64) -> Option<(f64, f64)> {
    let w = points
        .windows(2)
        .find(|w| w[0].flops <= flops && flops <= w[1].flops)?;
    let (a, b) = (w[0], w[1]);
    if b.flops <= a.flops {
        return Some((a.loss, a.tokens));
    }
    let t = (flops.ln() - a.flops.ln()) / (b.flops.ln() - a.flops.ln());
    let f = (flops - a.flops) / (b.flops - a.flops);
    Some((
        a.loss + t * (b.loss - a.loss),
        a.tokens + f * (b.tokens - a.tokens),
    ))
}

/// Chinchilla approach 1 over `bins` log-spaced budgets, within `span` (FLOPs) when given
/// (an IsoFLOP study samples between its smallest and largest budget: below the smallest,
/// every point is the middle of a run, which overstates the loss a run of that length
/// would reach); `opts.bootstrap` replicates give the intervals of a and b.
pub fn approach1(
    runs: &[RunCurve],
    bins: usize,
    span: Option<(f64, f64)>,
    opts: &FitOptions,
) -> Result<Approach1, AnalysisError> {
    let mut out = frontier_exponents(runs, bins, span, opts)?;
    let frontier = efficient_frontier(runs);
    if frontier.len() >= 4 {
        let c: Vec<f64> = frontier.iter().map(|p| p.flops).collect();
        let l: Vec<f64> = frontier.iter().map(|p| p.loss).collect();
        out.loss_fit = fit_power("C", &c, &l, opts).ok();
    }
    out.frontier = frontier;
    Ok(out)
}

/// Approach 1's winners and exponents with their intervals, without the power law in C
/// (`loss_fit` is `None`).
pub fn frontier_exponents(
    runs: &[RunCurve],
    bins: usize,
    span: Option<(f64, f64)>,
    opts: &FitOptions,
) -> Result<Approach1, AnalysisError> {
    let what = "compute-efficient frontier (approach 1)";
    if runs.len() < 2 {
        return Err(AnalysisError::TooFewPoints {
            what: what.into(),
            need: 2,
            got: runs.len(),
        });
    }
    if bins < 2 {
        return Err(AnalysisError::InvalidArgument {
            name: "bins",
            value: bins.to_string(),
            hint: "sample at least 2 budgets",
        });
    }
    let sorted: Vec<Vec<CurvePoint>> = runs
        .iter()
        .map(|r| {
            let mut p: Vec<CurvePoint> = r
                .points
                .iter()
                .copied()
                .filter(|p| p.flops > 0.0 && p.loss.is_finite())
                .collect();
            p.sort_by(|a, b| a.flops.total_cmp(&b.flops));
            p
        })
        .collect();
    let lo = sorted
        .iter()
        .filter_map(|p| p.first())
        .map(|p| p.flops)
        .fold(f64::INFINITY, f64::min);
    let hi = sorted
        .iter()
        .filter_map(|p| p.last())
        .map(|p| p.flops)
        .fold(0.0, f64::max);
    if !(lo.is_finite() && hi > lo) {
        return Err(AnalysisError::Degenerate {
            what: what.into(),
            hint: "the runs' evaluations span no range of FLOPs; evaluate during training".into(),
        });
    }
    let (lo, hi) = match span {
        Some((a, b)) if a > 0.0 && b > a => (lo.max(a), hi.min(b)),
        _ => (lo, hi),
    };
    let ns: Vec<f64> = runs.iter().map(|r| r.n).collect();
    let samples = winners(&sorted, &ns, bins, lo, hi);
    let (n_opt, d_opt) = slopes(&samples);
    let mut a_s = Vec::new();
    let mut b_s = Vec::new();
    if n_opt.is_some() {
        for replicate in 0..opts.bootstrap {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
            rng.set_stream(replicate as u64);
            let idx = resample(runs.len(), &mut rng);
            let curves: Vec<Vec<CurvePoint>> = idx.iter().map(|&i| sorted[i].clone()).collect();
            let ns: Vec<f64> = idx.iter().map(|&i| runs[i].n).collect();
            if let (Some(a), Some(b)) = slopes(&winners(&curves, &ns, bins, lo, hi)) {
                a_s.push(a.slope);
                b_s.push(b.slope);
            }
        }
    }
    Ok(Approach1 {
        samples,
        n_opt,
        d_opt,
        frontier: Vec::new(),
        loss_fit: None,
        a_interval: percentile_interval(&a_s, opts.level),
        b_interval: percentile_interval(&b_s, opts.level),
    })
}

/// The run with the lowest interpolated loss at each of `bins` log-spaced budgets in
/// `[lo, hi]`.
fn winners(
    sorted: &[Vec<CurvePoint>],
    ns: &[f64],
    bins: usize,
    lo: f64,
    hi: f64,
) -> Vec<FrontierPoint> {
    let mut samples = Vec::new();
    for i in 0..bins {
        let c = (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (bins - 1) as f64).exp();
        let best = sorted
            .iter()
            .enumerate()
            .filter_map(|(run, p)| at_flops(p, c).map(|(loss, tokens)| (run, loss, tokens)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((run, loss, tokens)) = best {
            samples.push(FrontierPoint {
                flops: c,
                loss,
                run,
                n: ns[run],
                tokens,
            });
        }
    }
    samples
}

/// `ln N_opt` and `ln D_opt` against `ln C` through the winners; `None` when one run (or one
/// size) wins everywhere.
fn slopes(samples: &[FrontierPoint]) -> (Option<Line>, Option<Line>) {
    let lc: Vec<f64> = samples.iter().map(|s| s.flops.ln()).collect();
    let ln: Vec<f64> = samples.iter().map(|s| s.n.ln()).collect();
    let ld: Vec<f64> = samples.iter().map(|s| s.tokens.max(1.0).ln()).collect();
    let mut sizes: Vec<f64> = samples.iter().map(|s| s.n).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    if sizes.len() >= 2 {
        (fit_line(&lc, &ln), fit_line(&lc, &ld))
    } else {
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(n: f64, pts: &[(f64, f64)]) -> RunCurve {
        RunCurve {
            n,
            points: pts
                .iter()
                .map(|&(flops, loss)| CurvePoint {
                    flops,
                    tokens: flops / (6.0 * n),
                    loss,
                })
                .collect(),
        }
    }

    /// Hand-checked: the small run wins early, the big run wins late.
    #[test]
    fn frontier_is_the_lower_envelope() {
        let runs = [
            curve(10.0, &[(0.0, 9.0), (1.0, 5.0), (2.0, 4.0), (4.0, 3.5)]),
            curve(100.0, &[(2.0, 4.5), (4.0, 3.0), (8.0, 2.0)]),
        ];
        let f = efficient_frontier(&runs);
        let got: Vec<(f64, f64, usize)> = f.iter().map(|p| (p.flops, p.loss, p.run)).collect();
        assert_eq!(
            got,
            vec![(1.0, 5.0, 0), (2.0, 4.0, 0), (4.0, 3.0, 1), (8.0, 2.0, 1)]
        );
        let a = approach1(&runs, 5, None, &FitOptions::default()).unwrap();
        assert_eq!(a.samples.first().unwrap().run, 0);
        assert_eq!(a.samples.last().unwrap().run, 1);
        assert!(a.n_opt.unwrap().slope > 0.0, "N_opt must grow with C");
    }

    #[test]
    fn one_run_is_too_few() {
        let runs = [curve(10.0, &[(1.0, 5.0), (2.0, 4.0)])];
        assert!(matches!(
            approach1(&runs, 5, None, &FitOptions::default()),
            Err(AnalysisError::TooFewPoints { .. })
        ));
    }
}
