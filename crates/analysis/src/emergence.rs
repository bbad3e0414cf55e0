//! Emergence: is a jump in an ability across scale real, or an artefact of the metric?
//!
//! Wei et al. 2022 call an ability emergent when it is absent at small scale, present at large
//! scale, and not predictable by extrapolating the small scales. Schaeffer et al. 2023 showed
//! that a discontinuous metric (exact match of a several-token answer) turns smooth per-token
//! improvement into such a jump, and that small test sets cannot tell a small accuracy from
//! zero. This module measures one metric over one scale axis (parameters, FLOPs or training
//! tokens); [`mirage`] then asks, per task, whether the per-token quantity predicts the jump.
//!
//! Every continuous metric is measured in the space where a smooth power law in scale is a
//! straight line against `x = log10(scale)`, oriented so that up is better
//! ([`Metric::scored`]): the logit of per-token accuracy (clamped to `[1/2n, 1 − 1/2n]`, so
//! that a value below the test set's resolution cannot make a jump of its own),
//! `−ln(distance to the floor)` for a log-probability, a cross-entropy, an edit distance or a
//! Brier score. Exact match is measured as the share it is, the scale on which an emergent
//! ability is claimed; whether its jump is an artefact is the mirage test's question, not a
//! matter of rescaling it. There, normalised by the observed range to `u ∈ [0, 1]`:
//!
//! - **sharpness**: the largest rise of the piecewise-linear `u(x)` over any window of one
//!   decade — the share of the whole observed improvement that happens within one decade of
//!   scale (1 for a step, 1/k for a straight line over k decades). Reported, and required to be
//!   at least `min_sharpness` (0.25) for a verdict of emergent;
//! - **transition**: the steepest one-decade window; the transition scale is where `u` is
//!   half-way through that window's rise; its interval spans the two measured scales that
//!   bracket it, widened by a parametric bootstrap when test-set sizes are known (binomial
//!   resampling of each accuracy);
//! - **extrapolation error**: a straight line in `x` fitted to the smaller scales (every point
//!   up to the start of the steepest window, at least the first two) predicts the larger ones
//!   (every point past the transition, so that a long plateau between the window's start and
//!   a late jump does not dilute the miss); the error is the mean of (observed − predicted)
//!   over those larger scales, oriented and in units of the range. Positive means the larger
//!   models beat the smooth trend. Emergent requires at least `min_extrapolation_error` (0.2):
//!   a jump the smaller scales did not foretell. A power law in scale is a straight line here
//!   and has no error; one that saturates bends down and has a negative error;
//! - **resolution**: for accuracies with a known test-set size n, a value below 1/n cannot be
//!   told from zero (Schaeffer et al. 2023 §3); such points are counted, and a change of the
//!   metric smaller than its binomial noise is not called a jump.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::{AnalysisError, Interval, bootstrap::percentile_interval};

pub mod mirage;
pub use mirage::{
    ExactMatchPrediction, ExampleRow, MirageKind, MirageVerdict, PerToken, PerTokenFit,
    TaskEmergence, TaskRow, analyse_tasks,
};

/// A task metric whose meaning, direction and range are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Share of answers exactly right, in [0, 1] (discontinuous).
    ExactMatch,
    /// Share of answer tokens right, in [0, 1].
    TokenAccuracy,
    /// Mean token edit distance to the right answer, ≥ 0 (lower is better).
    EditDistance,
    /// Mean log-probability of the right answer, ≤ 0.
    LogProb,
    /// Mean per-token cross-entropy of the right answer, nats, ≥ 0 (lower is better).
    CrossEntropy,
    /// Mean multi-class Brier score, in [0, 2] (lower is better).
    Brier,
}

/// Test-set size taken where a row gives none: an accuracy's resolution floor and binomial
/// intervals need one, and 1,000 is the usual size of a task's test set (and scalelab's
/// default `test_size`). Explanations say when it was assumed.
pub const ASSUMED_N_TEST: u64 = 1000;

/// Smallest distance to its floor (0) a log-probability, cross-entropy or Brier score is taken
/// to have in the linearised space: a perfect score is not infinitely far from an almost
/// perfect one.
const TINY: f64 = 1e-6;

/// Names of the metrics, for messages.
pub const METRIC_NAMES: &str =
    "exact_match, token_accuracy, edit_distance, log_prob, cross_entropy, brier";

impl Metric {
    /// Every metric, discontinuous first.
    pub const ALL: [Metric; 6] = [
        Metric::ExactMatch,
        Metric::TokenAccuracy,
        Metric::EditDistance,
        Metric::LogProb,
        Metric::CrossEntropy,
        Metric::Brier,
    ];

    /// The metrics a scalelab task evaluation records (cross-entropy per token is its
    /// log-probability over the answer length, so it is not stored twice).
    pub const RECORDED: [Metric; 5] = [
        Metric::ExactMatch,
        Metric::TokenAccuracy,
        Metric::EditDistance,
        Metric::LogProb,
        Metric::Brier,
    ];

    /// The metric of a name (`exact_match`, `token_accuracy`, `edit_distance`, `log_prob`,
    /// `cross_entropy`, `brier`).
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ExactMatch => "exact_match",
            Metric::TokenAccuracy => "token_accuracy",
            Metric::EditDistance => "edit_distance",
            Metric::LogProb => "log_prob",
            Metric::CrossEntropy => "cross_entropy",
            Metric::Brier => "brier",
        }
    }

    /// The space the test measures the metric in, in words.
    pub fn space(self) -> &'static str {
        match self {
            Metric::ExactMatch => "the share itself, as emergence is claimed",
            Metric::TokenAccuracy => "logit, clamped to [1/2n, 1 - 1/2n]",
            Metric::LogProb => "-ln(-log_prob)",
            Metric::CrossEntropy => "-ln(cross_entropy)",
            Metric::EditDistance => "-ln(edit_distance), floored at 1/2n",
            Metric::Brier => "-ln(brier)",
        }
    }

    /// `value` in the space the test measures it in, oriented so that up is better: for a
    /// continuous metric the space where a power law in scale is a straight line; for exact
    /// match the share itself, the scale on which an emergent ability is claimed (Wei et al.
    /// 2022) and whose jump the mirage test then explains or not. `n_test` (trials, for an
    /// accuracy) sets the resolution floor, and [`ASSUMED_N_TEST`] stands in when it is
    /// unknown. Finite for every valid value.
    pub fn scored(self, value: f64, n_test: Option<u64>) -> f64 {
        let half = 0.5 / n_test.unwrap_or(ASSUMED_N_TEST).max(1) as f64;
        match self {
            Metric::ExactMatch => value,
            Metric::TokenAccuracy => {
                let a = value.clamp(half, 1.0 - half);
                (a / (1.0 - a)).ln()
            }
            Metric::LogProb => -(-value).max(TINY).ln(),
            Metric::CrossEntropy | Metric::Brier => -value.max(TINY).ln(),
            Metric::EditDistance => -value.max(half).ln(),
        }
    }

    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::ExactMatch | Metric::TokenAccuracy | Metric::LogProb
        )
    }

    /// Whether an accuracy lies within its resolution `[1/n, 1 − 1/n]` (n from the point, or
    /// [`ASSUMED_N_TEST`]); every value of any other metric is resolved.
    pub fn is_resolved(self, p: &MetricPoint) -> bool {
        if !self.is_accuracy() {
            return true;
        }
        let r = 1.0 / p.n_test.unwrap_or(ASSUMED_N_TEST).max(1) as f64;
        p.value >= r && p.value <= 1.0 - r
    }

    /// Whether the metric jumps from wrong to right with no partial credit.
    pub fn is_discontinuous(self) -> bool {
        self == Metric::ExactMatch
    }

    /// Whether the metric is a share of successes, with a binomial error.
    pub fn is_accuracy(self) -> bool {
        matches!(self, Metric::ExactMatch | Metric::TokenAccuracy)
    }

    /// The range of valid values, and how to say it.
    fn valid(self, v: f64) -> Result<(), &'static str> {
        let ok = v.is_finite()
            && match self {
                Metric::ExactMatch | Metric::TokenAccuracy => (0.0..=1.0).contains(&v),
                Metric::EditDistance | Metric::CrossEntropy => v >= 0.0,
                Metric::LogProb => v <= 0.0,
                Metric::Brier => (0.0..=2.0).contains(&v),
            };
        if ok {
            return Ok(());
        }
        Err(match self {
            Metric::ExactMatch | Metric::TokenAccuracy => "a share in [0, 1]",
            Metric::EditDistance => "a distance >= 0",
            Metric::CrossEntropy => "a cross-entropy >= 0 (nats per token)",
            Metric::LogProb => "a log-probability <= 0",
            Metric::Brier => "a Brier score in [0, 2]",
        })
    }
}

/// One measurement of a metric at one scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    /// Parameters, FLOPs or training tokens (> 0).
    pub scale: f64,
    /// The metric's value.
    pub value: f64,
    /// Examples in the test set, when known.
    pub n_test: Option<u64>,
}

/// Thresholds of the verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmergenceOptions {
    /// Least sharpness (share of the change within one decade) of an emergent jump.
    pub min_sharpness: f64,
    /// Least extrapolation error (in units of the observed range) of an emergent jump.
    pub min_extrapolation_error: f64,
    /// Coverage of intervals.
    pub level: f64,
    /// Bootstrap replicates: binomial resampling of accuracies for the transition interval,
    /// residual resampling of the per-token fit for the mirage test's band.
    pub bootstrap: usize,
    /// Seed of the bootstraps.
    pub seed: u64,
    /// The per-token quantity the mirage test fits.
    pub per_token: PerToken,
    /// Tokens in every task's answer, overriding the rows' `answer_tokens`.
    pub answer_tokens: Option<f64>,
}

impl Default for EmergenceOptions {
    fn default() -> Self {
        Self {
            min_sharpness: 0.25,
            min_extrapolation_error: 0.2,
            level: 0.95,
            bootstrap: 200,
            seed: 0,
            per_token: PerToken::Auto,
            answer_tokens: None,
        }
    }
}

/// Fewest distinct scales the test accepts: two to fit the smaller scales, two to predict.
pub const MIN_SCALES: usize = 4;

/// The verdict on one metric over one scale axis.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEmergence {
    /// The metric.
    pub metric: Metric,
    /// Distinct scales measured.
    pub points: usize,
    /// Whether the metric is emergent: sharp, and beyond what the smaller scales predict.
    pub emergent: bool,
    /// Scale at the middle of the steepest rise.
    pub transition_scale: f64,
    /// Interval of the transition scale.
    pub transition_interval: Interval,
    /// Share of the observed improvement (in the linearised space) within the steepest
    /// decade, in [0, 1].
    pub sharpness: f64,
    /// Mean (observed − trend) over the larger scales, oriented, in units of the linearised
    /// range; positive: better than the smaller scales foretold.
    pub extrapolation_error: f64,
    /// Points the smooth trend was fitted to.
    pub trend_points: usize,
    /// The largest scale the trend was fitted to: where the steepest decade starts.
    pub trend_up_to: f64,
    /// Observed range of the metric itself (largest minus smallest value).
    pub range: f64,
    /// Accuracies below the resolution 1/n of their test set (0 where n is unknown).
    pub unresolved_points: usize,
    /// The finest resolution 1/n over the points, when test-set sizes are known.
    pub resolution: Option<f64>,
    /// Why, in a sentence.
    pub reason: String,
}

impl MetricEmergence {
    /// Whether this metric is sharp and its transition interval meets `other`'s: "jumps with
    /// it" (each interval is the bracket of measured scales around its transition, widened
    /// by the bootstrap, so two transitions between the same or adjacent scales meet).
    pub fn jumps_with(&self, other: &MetricEmergence) -> bool {
        self.emergent
            && self.transition_interval.lo <= other.transition_interval.hi
            && other.transition_interval.lo <= self.transition_interval.hi
    }
}

/// Checks `points` of `metric` and merges repeated scales (seeds are averaged, test sets
/// pooled); sorted by scale. `what` names the series in errors.
pub(crate) fn merged_points(
    what: &str,
    metric: Metric,
    points: &[MetricPoint],
) -> Result<Vec<MetricPoint>, AnalysisError> {
    let mut pts: Vec<MetricPoint> = points.to_vec();
    for (index, p) in pts.iter().enumerate() {
        if !(p.scale.is_finite() && p.scale > 0.0) {
            return Err(AnalysisError::NotPositive {
                what: what.to_string(),
                column: "scale",
                index,
                value: p.scale,
            });
        }
        if let Err(hint) = metric.valid(p.value) {
            return Err(AnalysisError::OutOfRange {
                what: what.to_string(),
                metric: metric.name(),
                index,
                value: p.value,
                hint,
            });
        }
        if p.n_test == Some(0) {
            return Err(AnalysisError::Degenerate {
                what: what.to_string(),
                hint: format!("n_test = 0 at point {index}: a test set has at least one example"),
            });
        }
    }
    pts.sort_by(|a, b| a.scale.total_cmp(&b.scale));
    let mut merged: Vec<MetricPoint> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for p in pts {
        match merged.last_mut() {
            Some(last) if last.scale == p.scale => {
                let k = counts.last_mut().map_or(1, |c| {
                    *c += 1;
                    *c
                });
                last.value += (p.value - last.value) / k as f64;
                last.n_test = match (last.n_test, p.n_test) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    _ => None,
                };
            }
            _ => {
                merged.push(p);
                counts.push(1);
            }
        }
    }
    Ok(merged)
}

/// Tests whether `metric`, measured at `points`, is emergent. `what` names the series in
/// errors (task and metric).
pub fn metric_emergence(
    what: &str,
    metric: Metric,
    points: &[MetricPoint],
    options: &EmergenceOptions,
) -> Result<MetricEmergence, AnalysisError> {
    check_options(options)?;
    let merged = merged_points(what, metric, points)?;
    if merged.len() < MIN_SCALES {
        return Err(AnalysisError::TooFewPoints {
            what: format!("{what}: emergence needs distinct scales"),
            need: MIN_SCALES,
            got: merged.len(),
        });
    }

    // A per-token accuracy outside [1/n, 1 − 1/n] is censored: its logit is not known, and
    // clamping would draw a flat floor that looks like the start of a jump. It is left out
    // of the shape while enough resolved points remain. (Exact match keeps its zeros: being
    // absent at small scale is part of the claim the test checks.)
    let resolved: Vec<MetricPoint> = merged
        .iter()
        .filter(|p| metric != Metric::TokenAccuracy || metric.is_resolved(p))
        .copied()
        .collect();
    let shaped = if resolved.len() >= MIN_SCALES {
        &resolved
    } else {
        &merged
    };
    let xs: Vec<f64> = shaped.iter().map(|p| p.scale.log10()).collect();
    let scores: Vec<f64> = shaped
        .iter()
        .map(|p| metric.scored(p.value, p.n_test))
        .collect();
    let shape = Shape::of(&xs, &scores);
    let lo = merged.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
    let hi = merged
        .iter()
        .map(|p| p.value)
        .fold(f64::NEG_INFINITY, f64::max);
    let range = hi - lo;

    let unresolved_points = if metric.is_accuracy() {
        merged
            .iter()
            .filter(|p| p.n_test.is_some_and(|n| p.value < 1.0 / n as f64))
            .count()
    } else {
        0
    };
    let resolution = merged
        .iter()
        .filter_map(|p| p.n_test)
        .max()
        .filter(|_| metric.is_accuracy())
        .map(|n| 1.0 / n as f64);

    // Binomial noise: a change within twice the largest standard error is not a jump.
    let noise = if metric.is_accuracy() {
        merged
            .iter()
            .filter_map(|p| {
                p.n_test.map(|n| {
                    (p.value * (1.0 - p.value) / n as f64)
                        .sqrt()
                        .max(0.5 / n as f64)
                })
            })
            .fold(0.0, f64::max)
    } else {
        0.0
    };

    let interval = transition_interval(&xs, shaped, metric, &shape, options);
    let mut verdict = MetricEmergence {
        metric,
        points: merged.len(),
        emergent: false,
        transition_scale: 10f64.powf(shape.transition_x),
        transition_interval: interval,
        sharpness: shape.sharpness,
        extrapolation_error: shape.extrapolation_error,
        trend_points: shape.trend_points,
        trend_up_to: 10f64.powf(xs[shape.trend_points - 1]),
        range,
        unresolved_points,
        resolution,
        reason: String::new(),
    };
    let decades = xs[xs.len() - 1] - xs[0];
    verdict.reason = if range <= 1e-12 || shape.range <= 1e-12 || range <= 4.0 * noise {
        format!(
            "no resolved change: the metric moves by {range:.3} over {decades:.1} decades{}",
            if noise > 0.0 {
                format!(", within its binomial noise (±{:.3})", 2.0 * noise)
            } else {
                String::new()
            }
        )
    } else if shape.extrapolation_error < options.min_extrapolation_error {
        if shape.extrapolation_error < 0.0 {
            format!(
                "smooth: in its linearised space ({}) the larger scales fall {:.0}% of the \
                 range short of the trend of the smaller ones (improvement slows down)",
                metric.space(),
                -100.0 * shape.extrapolation_error
            )
        } else {
            format!(
                "predictable: in its linearised space ({}) the trend of the {} smaller scales \
                 predicts the larger ones within {:.0}% of the range",
                metric.space(),
                shape.trend_points,
                100.0 * shape.extrapolation_error
            )
        }
    } else if shape.sharpness < options.min_sharpness {
        format!(
            "gradual: it beats the smaller scales' trend by {:.0}% of the range, but only {:.0}% \
             of the change happens within any one decade",
            100.0 * shape.extrapolation_error,
            100.0 * shape.sharpness
        )
    } else {
        verdict.emergent = true;
        format!(
            "sharp: in its linearised space ({}) {:.0}% of the change happens within one decade \
             around {}, and the trend of the {} smaller scales misses the larger ones by {:.0}% \
             of the range",
            metric.space(),
            100.0 * shape.sharpness,
            short(verdict.transition_scale),
            shape.trend_points,
            100.0 * shape.extrapolation_error
        )
    };
    Ok(verdict)
}

pub(crate) fn check_options(options: &EmergenceOptions) -> Result<(), AnalysisError> {
    if !(options.level > 0.0 && options.level < 1.0) {
        return Err(AnalysisError::InvalidArgument {
            name: "level",
            value: options.level.to_string(),
            hint: "a coverage in (0, 1), e.g. 0.95",
        });
    }
    if !(0.0..=1.0).contains(&options.min_sharpness) {
        return Err(AnalysisError::InvalidArgument {
            name: "min_sharpness",
            value: options.min_sharpness.to_string(),
            hint: "a share in [0, 1], e.g. 0.25",
        });
    }
    if !options.min_extrapolation_error.is_finite() {
        return Err(AnalysisError::InvalidArgument {
            name: "min_extrapolation_error",
            value: options.min_extrapolation_error.to_string(),
            hint: "a finite share of the range, e.g. 0.2",
        });
    }
    if let Some(l) = options.answer_tokens
        && !(l.is_finite() && l >= 1.0)
    {
        return Err(AnalysisError::InvalidArgument {
            name: "answer_tokens",
            value: l.to_string(),
            hint: "the number of tokens in an answer, at least 1",
        });
    }
    Ok(())
}

/// A scale in short form: 3.2e5.
pub(crate) fn short(x: f64) -> String {
    format!("{x:.2e}")
}

/// What the test measures of one curve: sharpness, transition and extrapolation error.
#[derive(Debug, Clone, Copy)]
struct Shape {
    sharpness: f64,
    transition_x: f64,
    extrapolation_error: f64,
    trend_points: usize,
    range: f64,
    /// Index of the last measured point at or below the transition.
    bracket: usize,
}

impl Shape {
    /// `xs` increasing (log10 scale), `scores` oriented (up is better).
    fn of(xs: &[f64], scores: &[f64]) -> Shape {
        let n = xs.len();
        let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let range = hi - lo;
        let u: Vec<f64> = if range > 0.0 {
            scores.iter().map(|s| (s - lo) / range).collect()
        } else {
            vec![0.0; n]
        };
        let at = |x: f64| interpolate(xs, &u, x);
        // The steepest one-decade window: its rise is largest with an end at a knot.
        let (first, last) = (xs[0], xs[n - 1]);
        let width = (last - first).min(1.0);
        let mut window = (first, at(first + width) - at(first));
        for &x in xs {
            for a in [x, x - width] {
                if a >= first && a + width <= last + 1e-12 {
                    let rise = at(a + width) - at(a);
                    if rise > window.1 + 1e-12 {
                        window = (a, rise);
                    }
                }
            }
        }
        let (start, rise) = window;
        // Where u is half-way through the window's rise (bisection on the monotone span).
        let target = at(start) + rise / 2.0;
        let transition_x = if rise > 0.0 {
            let (mut a, mut b) = (start, start + width);
            for _ in 0..60 {
                let m = 0.5 * (a + b);
                if at(m) < target { a = m } else { b = m }
            }
            0.5 * (a + b)
        } else {
            start + width / 2.0
        };
        let bracket = xs
            .iter()
            .rposition(|&x| x <= transition_x)
            .unwrap_or(0)
            .min(n - 2);
        // The smooth trend of the smaller scales.
        let trend_points = xs
            .iter()
            .filter(|&&x| x <= start + 1e-12)
            .count()
            .max(2)
            .min(n - 1);
        let (slope, intercept) = line(&xs[..trend_points], &u[..trend_points]);
        // The larger scales: past the transition (at least the last point).
        let first_later = xs
            .iter()
            .position(|&x| x > transition_x)
            .unwrap_or(n - 1)
            .max(trend_points);
        let later = &xs[first_later..];
        let extrapolation_error = later
            .iter()
            .zip(&u[first_later..])
            .map(|(&x, &observed)| observed - (intercept + slope * x))
            .sum::<f64>()
            / later.len() as f64;
        Shape {
            sharpness: rise.max(0.0),
            transition_x,
            extrapolation_error: if range > 0.0 {
                extrapolation_error
            } else {
                0.0
            },
            trend_points,
            range,
            bracket,
        }
    }
}

/// Piecewise-linear interpolation of `(xs, ys)` at `x`, constant outside.
fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    if x <= xs[0] {
        return ys[0];
    }
    for i in 1..xs.len() {
        if x <= xs[i] {
            let t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
            return ys[i - 1] + t * (ys[i] - ys[i - 1]);
        }
    }
    ys[ys.len() - 1]
}

/// Least-squares line `y = intercept + slope·x` (slope 0 if the xs do not vary).
fn line(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, my - slope * mx)
}

/// The scales bracketing the transition, widened by a binomial parametric bootstrap when
/// every point of an accuracy metric has a test-set size.
fn transition_interval(
    xs: &[f64],
    points: &[MetricPoint],
    metric: Metric,
    shape: &Shape,
    options: &EmergenceOptions,
) -> Interval {
    let (mut lo, mut hi) = (xs[shape.bracket], xs[shape.bracket + 1]);
    let sizes: Option<Vec<u64>> = points.iter().map(|p| p.n_test).collect();
    if let (true, Some(sizes)) = (metric.is_accuracy(), sizes) {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut samples = Vec::with_capacity(options.bootstrap);
        for _ in 0..options.bootstrap {
            let scores: Vec<f64> = points
                .iter()
                .zip(&sizes)
                .map(|(p, &n)| {
                    let k = Binomial::new(n, p.value.clamp(0.0, 1.0))
                        .map_or(p.value * n as f64, |b| b.sample(&mut rng) as f64);
                    metric.scored(k / n as f64, Some(n))
                })
                .collect();
            samples.push(Shape::of(xs, &scores).transition_x);
        }
        if let Some(i) = percentile_interval(&samples, options.level) {
            lo = lo.min(i.lo);
            hi = hi.max(i.hi);
        }
    }
    Interval {
        lo: 10f64.powf(lo),
        hi: 10f64.powf(hi),
        level: options.level,
    }
}

/// The Wilson score interval of `successes` in `n` trials at coverage `level` (Wilson 1927):
/// unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n.
pub fn wilson_interval(successes: f64, n: u64, level: f64) -> Interval {
    let z = Normal::standard().inverse_cdf(0.5 + level / 2.0);
    let n_f = n.max(1) as f64;
    let p = (successes / n_f).clamp(0.0, 1.0);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n_f)) / (1.0 + z2 / n_f);
    let half = z / (1.0 + z2 / n_f) * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    Interval {
        lo: if p == 0.0 {
            0.0
        } else {
            (centre - half).max(0.0)
        },
        hi: if p == 1.0 {
            1.0
        } else {
            (centre + half).min(1.0)
        },
        level,
    }
}
