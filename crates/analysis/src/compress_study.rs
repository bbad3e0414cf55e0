//! A compression study's analysis: every compressed model against the dense frontier.
//!
//! The dense models of a ladder, trained from scratch on the same tokens, give the loss a
//! dense model reaches at each size. On each axis of cost — non-zero parameters N, bytes of
//! weights, inference FLOPs per token — the frontier is their loss against the cost, made
//! monotone and interpolated linearly in log-log (as the transfer study reads effective
//! data). A compressed model of cost x and loss L is then
//!
//! - `Δ = L − L_dense(x)` nats above (positive) or below (negative: it **beats** the
//!   frontier) the dense model of the same cost, and
//! - worth a dense model of cost `x_eq`, where the frontier reaches L: the **effective size
//!   ratio** `x_eq / x` (> 1: compression kept more quality than shrinking the model would
//!   have).
//!
//! Outside the dense sizes' range both are extrapolated along the nearest segment and flagged.
//! With several seeds each seed's model is set against its own seed's frontier, and Δ's mean
//! gets a 95% Student-t interval over seeds; the verdict is `beats` or `worse` only when the
//! interval excludes 0 (with one seed, by the sign alone, and said so).

use serde::{Deserialize, Serialize};

use crate::Interval;
use crate::linear::fit_line;
use crate::transfer::{amount_for_loss, loss_at_amount};

/// The axes of cost a compressed model is set against the frontier on.
pub const AXES: [Axis; 3] = [Axis::Nonzero, Axis::Bytes, Axis::InferenceFlops];

/// One axis of cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Non-zero parameters (the study's convention).
    Nonzero,
    /// Bytes of the weights.
    Bytes,
    /// Forward FLOPs per token, counting only non-zero weights.
    InferenceFlops,
}

impl Axis {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Nonzero => "non-zero parameters",
            Axis::Bytes => "bytes of weights",
            Axis::InferenceFlops => "inference FLOPs per token",
        }
    }

    /// Its key in tables (CSV column names).
    pub fn key(self) -> &'static str {
        match self {
            Axis::Nonzero => "nonzero",
            Axis::Bytes => "bytes",
            Axis::InferenceFlops => "inference_flops",
        }
    }
}

/// One trained or compressed model, as the analysis needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressPoint {
    /// `dense` for the frontier's models; otherwise the method (`magnitude`, `2:4`,
    /// `int4-channel`, `gradual`, `distilled`).
    pub method: String,
    /// The method's level, where it has one (a sparsity).
    pub level: Option<f64>,
    /// The size it was made from (a student's own size).
    pub size: String,
    /// Seed of the run it comes from.
    pub seed: u64,
    /// Validation loss, nats per token.
    pub loss: f64,
    /// Non-zero parameters.
    pub nonzero: f64,
    /// Bytes of its weights.
    pub bytes: f64,
    /// Forward FLOPs per token.
    pub inference_flops: f64,
}

impl CompressPoint {
    /// Its cost on `axis`.
    pub fn cost(&self, axis: Axis) -> f64 {
        match axis {
            Axis::Nonzero => self.nonzero,
            Axis::Bytes => self.bytes,
            Axis::InferenceFlops => self.inference_flops,
        }
    }
}

/// One compressed model (seeds averaged) against the frontier on one axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The axis.
    pub axis: Axis,
    /// Its cost (mean over seeds).
    pub cost: f64,
    /// Mean of `L − L_dense(cost)` over seeds.
    pub delta: f64,
    /// 95% interval of `delta` over seeds (none with one seed).
    pub interval: Option<Interval>,
    /// Effective size ratio `x_eq / x` (mean over seeds).
    pub ratio: Option<f64>,
    /// The cost or the loss lies outside the dense models' and was extrapolated.
    pub extrapolated: bool,
    /// `beats`, `worse` or `within noise`.
    pub verdict: Verdict,
}

/// Where a compressed model stands against the dense frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Lower loss than the dense model of the same cost.
    Beats,
    /// Higher loss.
    Worse,
    /// The interval over seeds includes 0.
    WithinNoise,
}

impl Verdict {
    /// In words.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Beats => "beats",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within noise",
        }
    }
}

/// A compressed model (one method at one level on one size), seeds averaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compressed {
    /// Method.
    pub method: String,
    /// Level.
    pub level: Option<f64>,
    /// The size it was made from.
    pub size: String,
    /// Mean validation loss.
    pub loss: f64,
    /// Seeds.
    pub seeds: usize,
    /// The mean costs, in [`AXES`] order.
    pub costs: [f64; 3],
    /// Against the frontier on each axis, in [`AXES`] order (none where a seed's frontier has
    /// fewer than two distinct losses).
    pub placements: Vec<Placement>,
}

/// The precision penalty of one dense model: its loss after post-training quantisation less
/// its loss before, against its tokens per parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PenaltyPoint {
    /// Size.
    pub size: String,
    /// N (the study's convention).
    pub n: f64,
    /// Training tokens.
    pub tokens: f64,
    /// Loss increase (mean over seeds).
    pub penalty: f64,
    /// Seeds.
    pub seeds: usize,
}

/// `penalty ∝ D^k` at one fixed size, through its budgets with a positive penalty, in
/// log-log: the growth with data that Kumar et al. 2024 report, free of the confounding of N
/// and D/N across sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PenaltyTrend {
    /// The size (the one with the most budgets).
    pub size: String,
    /// k.
    pub exponent: f64,
    /// R² of the line.
    pub r2: f64,
    /// Budgets it went through.
    pub points: usize,
}

/// The whole analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionAnalysis {
    /// The dense frontier's models, seeds averaged, smallest first: `(size, loss, costs)`.
    pub dense: Vec<(String, f64, [f64; 3])>,
    /// Every compressed model.
    pub compressed: Vec<Compressed>,
    /// The precision penalty, smallest D/N first.
    pub penalty: Vec<PenaltyPoint>,
    /// Its growth with D at the size trained at the most budgets (three or more).
    pub penalty_trend: Option<PenaltyTrend>,
}

/// Two-sided 95% critical values of Student's t for 1 to 10 degrees of freedom (standard
/// tables, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2); 1.96 beyond.
fn t95(df: usize) -> f64 {
    const T: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    T.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Sets every non-dense point of `points` against the dense frontier of its own seed, and
/// reads the penalty curve off `penalties` (`(size, n, tokens, seed, penalty)`).
pub fn analyse_compression(
    points: &[CompressPoint],
    penalties: &[(String, f64, f64, u64, f64)],
) -> CompressionAnalysis {
    let dense: Vec<&CompressPoint> = points.iter().filter(|p| p.method == "dense").collect();
    let mut sizes: Vec<&str> = Vec::new();
    for p in &dense {
        if !sizes.contains(&p.size.as_str()) {
            sizes.push(&p.size);
        }
    }
    let mut dense_rows: Vec<(String, f64, [f64; 3])> = sizes
        .iter()
        .map(|&size| {
            let of: Vec<&&CompressPoint> = dense.iter().filter(|p| p.size == size).collect();
            let avg = |f: &dyn Fn(&CompressPoint) -> f64| {
                mean(&of.iter().map(|p| f(p)).collect::<Vec<_>>())
            };
            (
                size.to_string(),
                avg(&|p| p.loss),
                AXES.map(|a| avg(&|p| p.cost(a))),
            )
        })
        .collect();
    dense_rows.sort_by(|a, b| a.2[0].total_cmp(&b.2[0]));
    // Each seed's frontier on each axis: (cost, loss) of its dense models.
    let frontier = |seed: u64, axis: Axis| -> Vec<(f64, f64)> {
        (dense.iter())
            .filter(|p| p.seed == seed)
            .map(|p| (p.cost(axis), p.loss))
            .collect()
    };
    let mut groups: Vec<(String, Option<f64>, String)> = Vec::new();
    for p in points.iter().filter(|p| p.method != "dense") {
        let key = (p.method.clone(), p.level, p.size.clone());
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    let compressed = groups
        .into_iter()
        .map(|(method, level, size)| {
            let of: Vec<&CompressPoint> = (points.iter())
                .filter(|p| p.method == method && p.level == level && p.size == size)
                .collect();
            let placements = AXES
                .iter()
                .filter_map(|&axis| {
                    let mut deltas = Vec::new();
                    let mut ratios = Vec::new();
                    let mut extrapolated = false;
                    for p in &of {
                        let curve = frontier(p.seed, axis);
                        let x = p.cost(axis);
                        let (at, out1) = loss_at_amount(&curve, x)?;
                        let (x_eq, out2) = amount_for_loss(&curve, p.loss)?;
                        deltas.push(p.loss - at);
                        ratios.push(x_eq / x);
                        extrapolated |= out1 || out2;
                    }
                    let delta = mean(&deltas);
                    let interval = (deltas.len() >= 2).then(|| {
                        let n = deltas.len() as f64;
                        let sd = (deltas.iter().map(|d| (d - delta).powi(2)).sum::<f64>()
                            / (n - 1.0))
                            .sqrt();
                        let half = t95(deltas.len() - 1) * sd / n.sqrt();
                        Interval {
                            lo: delta - half,
                            hi: delta + half,
                            level: 0.95,
                        }
                    });
                    let verdict = match interval {
                        Some(i) if i.hi < 0.0 => Verdict::Beats,
                        Some(i) if i.lo > 0.0 => Verdict::Worse,
                        Some(_) => Verdict::WithinNoise,
                        None if delta < 0.0 => Verdict::Beats,
                        None => Verdict::Worse,
                    };
                    Some(Placement {
                        axis,
                        cost: mean(&of.iter().map(|p| p.cost(axis)).collect::<Vec<_>>()),
                        delta,
                        interval,
                        ratio: Some(mean(&ratios)),
                        extrapolated,
                        verdict,
                    })
                })
                .collect();
            Compressed {
                loss: mean(&of.iter().map(|p| p.loss).collect::<Vec<_>>()),
                seeds: of.len(),
                costs: AXES.map(|a| mean(&of.iter().map(|p| p.cost(a)).collect::<Vec<_>>())),
                method,
                level,
                size,
                placements,
            }
        })
        .collect();
    let mut penalty: Vec<PenaltyPoint> = Vec::new();
    for (size, n, tokens, _, _) in penalties {
        if penalty
            .iter()
            .any(|p| p.size == *size && p.tokens == *tokens)
        {
            continue;
        }
        let of: Vec<f64> = (penalties.iter())
            .filter(|q| q.0 == *size && q.2 == *tokens)
            .map(|q| q.4)
            .collect();
        penalty.push(PenaltyPoint {
            size: size.clone(),
            n: *n,
            tokens: *tokens,
            penalty: mean(&of),
            seeds: of.len(),
        });
    }
    penalty.sort_by(|a, b| (a.tokens / a.n).total_cmp(&(b.tokens / b.n)));
    // The size with the most budgets of positive penalty, if it has three or more.
    let positive = |size: &str| -> Vec<&PenaltyPoint> {
        (penalty.iter())
            .filter(|p| p.size == size && p.penalty > 0.0)
            .collect()
    };
    let penalty_trend = (penalty.iter())
        .map(|p| positive(&p.size))
        .max_by_key(Vec::len)
        .filter(|points| points.len() >= 3)
        .and_then(|points| {
            let x: Vec<f64> = points.iter().map(|p| p.tokens.ln()).collect();
            let y: Vec<f64> = points.iter().map(|p| p.penalty.ln()).collect();
            fit_line(&x, &y).map(|line| PenaltyTrend {
                size: points[0].size.clone(),
                exponent: line.slope,
                r2: line.r2,
                points: points.len(),
            })
        });
    CompressionAnalysis {
        dense: dense_rows,
        compressed,
        penalty,
        penalty_trend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense frontier L = 2 + 10·N^(-0.3) at four sizes; bytes 4N, FLOPs 2N.
    fn dense(seed: u64, shift: f64) -> Vec<CompressPoint> {
        [1e3, 1e4, 1e5, 1e6]
            .iter()
            .enumerate()
            .map(|(i, &n)| CompressPoint {
                method: "dense".into(),
                level: None,
                size: format!("s{i}"),
                seed,
                loss: 2.0 + 10.0 * f64::powf(n, -0.3) + shift,
                nonzero: n,
                bytes: 4.0 * n,
                inference_flops: 2.0 * n,
            })
            .collect()
    }

    fn pruned(seed: u64, nonzero: f64, loss: f64) -> CompressPoint {
        CompressPoint {
            method: "magnitude".into(),
            level: Some(0.5),
            size: "s3".into(),
            seed,
            loss,
            nonzero,
            bytes: 4e6,
            inference_flops: 2.0 * nonzero,
        }
    }

    /// A model that sits exactly on the frontier at a measured size has Δ = 0 and ratio 1; one
    /// whose loss is that of a 10× larger dense model has ratio 10 and beats it on N, while
    /// at the largest dense model's bytes it only matches it.
    #[test]
    fn a_planted_point_reads_back_its_place() {
        let mut points = dense(0, 0.0);
        let on = 2.0 + 10.0 * f64::powf(1e5, -0.3);
        let better = 2.0 + 10.0 * f64::powf(1e6, -0.3);
        points.push(pruned(0, 1e5, on));
        let mut p = pruned(0, 1e5, better);
        p.level = Some(0.9);
        points.push(p);
        let a = analyse_compression(&points, &[]);
        assert_eq!(a.dense.len(), 4);
        let on_place = &a.compressed[0].placements[0];
        assert!(on_place.delta.abs() < 1e-12, "{on_place:?}");
        assert!((on_place.ratio.unwrap() - 1.0).abs() < 1e-9);
        let better_place = &a.compressed[1].placements;
        assert_eq!(better_place[0].axis, Axis::Nonzero);
        assert!((better_place[0].ratio.unwrap() - 10.0).abs() < 1e-6);
        assert_eq!(better_place[0].verdict, Verdict::Beats);
        assert!(!better_place[0].extrapolated);
        // Bytes 4e6 = the largest dense model's: the same loss, so Δ = 0, ratio 1 — not below.
        assert!(better_place[1].delta.abs() < 1e-9);
        assert!((better_place[1].ratio.unwrap() - 1.0).abs() < 1e-6);
    }

    /// With three seeds the verdict follows the interval: a planted gain of 0.05 nats with
    /// seed noise of ±0.005 beats; a gain of 0.001 with noise ±0.02 is within noise.
    #[test]
    fn seeds_give_an_interval_and_the_verdict_follows_it() {
        let mut points = Vec::new();
        let base = 2.0 + 10.0 * f64::powf(1e5, -0.3);
        for (seed, noise) in [(0u64, 0.005), (1, -0.005), (2, 0.0)] {
            points.extend(dense(seed, noise));
            points.push(pruned(seed, 1e5, base + noise - 0.05));
            let mut q = pruned(seed, 1e5, base + noise * 4.0 - 0.001);
            q.level = Some(0.75);
            points.push(q);
        }
        let a = analyse_compression(&points, &[]);
        let clear = &a.compressed[0].placements[0];
        assert_eq!(a.compressed[0].seeds, 3);
        assert!((clear.delta + 0.05).abs() < 1e-9);
        assert_eq!(clear.verdict, Verdict::Beats);
        let noisy = &a.compressed[1].placements[0];
        assert_eq!(noisy.verdict, Verdict::WithinNoise, "{noisy:?}");
    }

    /// The penalty trend recovers a planted exponent at the size with several budgets
    /// (penalty = 1e-6·D^0.5), and ignores the other sizes' single points.
    #[test]
    fn the_penalty_trend_recovers_its_exponent() {
        let mut penalties: Vec<(String, f64, f64, u64, f64)> = [1e4, 4e4, 1.6e5, 6.4e5]
            .iter()
            .map(|&d| ("big".to_string(), 1e4, d, 0, 1e-6 * f64::sqrt(d)))
            .collect();
        penalties.push(("small".into(), 1e3, 1e4, 0, 0.5));
        let a = analyse_compression(&dense(0, 0.0), &penalties);
        let t = a.penalty_trend.unwrap();
        assert_eq!(t.size, "big");
        assert!((t.exponent - 0.5).abs() < 1e-9);
        assert_eq!(t.points, 4);
        assert_eq!(a.penalty.len(), 5);
        assert!(a.compressed.is_empty());
    }
}
