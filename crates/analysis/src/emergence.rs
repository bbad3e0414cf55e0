//! Emergence: is a jump in an ability across scale real, or an artefact of the metric?
//!
//! Wei et al. 2022 call an ability emergent when it is absent at small scale, present at large
//! scale, and not predictable by extrapolating the small scales. Schaeffer et al. 2023 showed
//! that a discontinuous metric (exact match of a several-token answer) turns smooth per-token
//! improvement into such a jump, and that small test sets cannot tell a small accuracy from
//! zero. This module measures one metric over one scale axis (parameters, FLOPs or training
//! tokens) and then compares the metrics of one task.
//!
//! For one metric, with `x = log10(scale)` and the value oriented so that up is better and
//! normalised by its observed range R to `u ∈ [0, 1]`:
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
//!   over those larger scales, oriented and in
//!   units of R. Positive means the larger models beat the smooth trend. Emergent requires at
//!   least `min_extrapolation_error` (0.2): a jump the smaller scales did not foretell. A
//!   metric that improves fastest at the smallest scales and then saturates (a power law in
//!   scale) has a negative error and is never emergent;
//! - **resolution**: for accuracies with a known test-set size n, a value below 1/n cannot be
//!   told from zero (Schaeffer et al. 2023 §3); such points are counted, and a change of the
//!   metric smaller than its binomial noise is not called a jump.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::{AnalysisError, Interval, bootstrap::percentile_interval};

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
    /// Mean multi-class Brier score, in [0, 2] (lower is better).
    Brier,
}

/// Names of the metrics, for messages.
pub const METRIC_NAMES: &str = "exact_match, token_accuracy, edit_distance, log_prob, brier";

impl Metric {
    /// Every metric, discontinuous first.
    pub const ALL: [Metric; 5] = [
        Metric::ExactMatch,
        Metric::TokenAccuracy,
        Metric::EditDistance,
        Metric::LogProb,
        Metric::Brier,
    ];

    /// The metric of a name (`exact_match`, `token_accuracy`, `edit_distance`, `log_prob`,
    /// `brier`).
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
            Metric::Brier => "brier",
        }
    }

    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::ExactMatch | Metric::TokenAccuracy | Metric::LogProb
        )
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
                Metric::EditDistance => v >= 0.0,
                Metric::LogProb => v <= 0.0,
                Metric::Brier => (0.0..=2.0).contains(&v),
            };
        if ok {
            return Ok(());
        }
        Err(match self {
            Metric::ExactMatch | Metric::TokenAccuracy => "a share in [0, 1]",
            Metric::EditDistance => "a distance >= 0",
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

/// Thresholds of the verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmergenceOptions {
    /// Least sharpness (share of the change within one decade) of an emergent jump.
    pub min_sharpness: f64,
    /// Least extrapolation error (in units of the observed range) of an emergent jump.
    pub min_extrapolation_error: f64,
    /// Coverage of intervals.
    pub level: f64,
    /// Parametric bootstrap replicates (when test-set sizes are known).
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for EmergenceOptions {
    fn default() -> Self {
        Self {
            min_sharpness: 0.25,
            min_extrapolation_error: 0.2,
            level: 0.95,
            bootstrap: 200,
            seed: 0,
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
    /// Share of the observed improvement within the steepest decade, in [0, 1].
    pub sharpness: f64,
    /// Mean (observed − trend) over the larger scales, oriented, in units of the range;
    /// positive: better than the smaller scales foretold.
    pub extrapolation_error: f64,
    /// Points the smooth trend was fitted to.
    pub trend_points: usize,
    /// Observed range of the metric (largest minus smallest value).
    pub range: f64,
    /// Accuracies below the resolution 1/n of their test set (0 where n is unknown).
    pub unresolved_points: usize,
    /// The finest resolution 1/n over the points, when test-set sizes are known.
    pub resolution: Option<f64>,
    /// Why, in a sentence.
    pub reason: String,
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
    // Repeated scales (seeds) are averaged.
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
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
            }
            _ => {
                merged.push(p);
                counts.push(1);
            }
        }
    }
    if merged.len() < MIN_SCALES {
        return Err(AnalysisError::TooFewPoints {
            what: format!("{what}: emergence needs distinct scales"),
            need: MIN_SCALES,
            got: merged.len(),
        });
    }

    let xs: Vec<f64> = merged.iter().map(|p| p.scale.log10()).collect();
    let sign = if metric.higher_is_better() { 1.0 } else { -1.0 };
    let scores: Vec<f64> = merged.iter().map(|p| sign * p.value).collect();
    let shape = Shape::of(&xs, &scores);

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

    let interval = transition_interval(&xs, &merged, metric, sign, &shape, options);
    let mut verdict = MetricEmergence {
        metric,
        points: merged.len(),
        emergent: false,
        transition_scale: 10f64.powf(shape.transition_x),
        transition_interval: interval,
        sharpness: shape.sharpness,
        extrapolation_error: shape.extrapolation_error,
        trend_points: shape.trend_points,
        range: shape.range,
        unresolved_points,
        resolution,
        reason: String::new(),
    };
    let decades = xs[xs.len() - 1] - xs[0];
    verdict.reason = if shape.range <= 1e-12 || shape.range <= 4.0 * noise {
        format!(
            "no resolved change: the metric moves by {:.3} over {decades:.1} decades{}",
            shape.range,
            if noise > 0.0 {
                format!(", within its binomial noise (±{:.3})", 2.0 * noise)
            } else {
                String::new()
            }
        )
    } else if shape.extrapolation_error < options.min_extrapolation_error {
        if shape.extrapolation_error < 0.0 {
            format!(
                "smooth: the larger scales fall {:.0}% of the range short of the trend of the \
                 smaller ones (improvement slows down, as a power law does)",
                -100.0 * shape.extrapolation_error
            )
        } else {
            format!(
                "predictable: the trend of the {} smaller scales predicts the larger ones \
                 within {:.0}% of the range",
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
            "emergent: {:.0}% of the change happens within one decade around {}, and the trend \
             of the {} smaller scales misses the larger ones by {:.0}% of the range",
            100.0 * shape.sharpness,
            short(verdict.transition_scale),
            shape.trend_points,
            100.0 * shape.extrapolation_error
        )
    };
    Ok(verdict)
}

fn check_options(options: &EmergenceOptions) -> Result<(), AnalysisError> {
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
    Ok(())
}

/// A scale in short form: 3.2e5.
fn short(x: f64) -> String {
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
    sign: f64,
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
                    sign * k / n as f64
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

/// What the metrics of one task say together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirageKind {
    /// The discontinuous metric jumps while every continuous one improves smoothly: the
    /// jump is an artefact of the metric.
    Mirage,
    /// The discontinuous metric jumps and so does a continuous one: the ability itself
    /// changes abruptly.
    Real,
    /// The discontinuous metric does not jump: nothing to explain.
    NoEmergence,
}

impl MirageKind {
    /// Its name in JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            MirageKind::Mirage => "mirage",
            MirageKind::Real => "real",
            MirageKind::NoEmergence => "no_emergence",
        }
    }
}

/// The mirage check of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct MirageVerdict {
    /// The verdict.
    pub kind: MirageKind,
    /// The evidence, in sentences.
    pub explanation: String,
}

/// Compares a task's discontinuous metric (exact match) with its continuous ones (token
/// accuracy, edit distance, log-probability, Brier score). `None` when the task lacks exact
/// match or every continuous metric.
pub fn mirage_check(verdicts: &[MetricEmergence]) -> Option<MirageVerdict> {
    let exact = verdicts.iter().find(|v| v.metric.is_discontinuous())?;
    let continuous: Vec<&MetricEmergence> = verdicts
        .iter()
        .filter(|v| !v.metric.is_discontinuous())
        .collect();
    if continuous.is_empty() {
        return None;
    }
    let list = |vs: &[&MetricEmergence]| {
        vs.iter()
            .map(|v| format!("{} ({:+.2})", v.metric.name(), v.extrapolation_error))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let resolution_note = if exact.unresolved_points > 0 {
        format!(
            " At {} of the {} scales exact match is below the test set's resolution ({}): \
             there it cannot be told from zero.",
            exact.unresolved_points,
            exact.points,
            exact
                .resolution
                .map_or("1/n".into(), |r| format!("{r:.1e}"))
        )
    } else {
        String::new()
    };
    if !exact.emergent {
        return Some(MirageVerdict {
            kind: MirageKind::NoEmergence,
            explanation: format!(
                "Exact match is not emergent on this scale grid ({}).{resolution_note}",
                exact.reason
            ),
        });
    }
    let jumping: Vec<&MetricEmergence> =
        continuous.iter().copied().filter(|v| v.emergent).collect();
    if jumping.is_empty() {
        Some(MirageVerdict {
            kind: MirageKind::Mirage,
            explanation: format!(
                "Exact match jumps near {} (sharpness {:.2}; the smaller scales' trend misses \
                 by {:+.2} of the range), while {} improve smoothly (their extrapolation errors \
                 in brackets: none beats its trend by enough to be a jump). The per-token \
                 ability grows steadily; requiring every token of the answer to be right turns \
                 that into a jump (Schaeffer et al. 2023).{resolution_note}",
                short(exact.transition_scale),
                exact.sharpness,
                exact.extrapolation_error,
                list(&continuous),
            ),
        })
    } else {
        Some(MirageVerdict {
            kind: MirageKind::Real,
            explanation: format!(
                "Exact match jumps near {} and so do {}: the continuous metrics beat the \
                 smaller scales' trend too, so the ability itself changes abruptly, not only \
                 its all-or-nothing score.{resolution_note}",
                short(exact.transition_scale),
                list(&jumping),
            ),
        })
    }
}

/// One row of a table of task results (`scale,task,metric,value[,n_test]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The task's name.
    pub task: String,
    /// The metric.
    pub metric: Metric,
    /// The measurement.
    pub point: MetricPoint,
}

/// The emergence test of every metric of one task, and its mirage check.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEmergence {
    /// The task's name.
    pub task: String,
    /// One verdict per metric, in [`Metric::ALL`] order.
    pub metrics: Vec<MetricEmergence>,
    /// The mirage check, when the task has exact match and a continuous metric.
    pub mirage: Option<MirageVerdict>,
}

/// Runs the test on every (task, metric) series of `rows`, tasks in order of first appearance.
pub fn analyse_tasks(
    rows: &[TaskRow],
    options: &EmergenceOptions,
) -> Result<Vec<TaskEmergence>, AnalysisError> {
    let mut tasks: Vec<&str> = Vec::new();
    for row in rows {
        if !tasks.contains(&row.task.as_str()) {
            tasks.push(&row.task);
        }
    }
    tasks
        .into_iter()
        .map(|task| {
            let mut metrics = Vec::new();
            for metric in Metric::ALL {
                let points: Vec<MetricPoint> = rows
                    .iter()
                    .filter(|r| r.task == task && r.metric == metric)
                    .map(|r| r.point)
                    .collect();
                if !points.is_empty() {
                    let what = format!("task `{task}`, metric `{}`", metric.name());
                    metrics.push(metric_emergence(&what, metric, &points, options)?);
                }
            }
            let mirage = mirage_check(&metrics);
            Ok(TaskEmergence {
                task: task.to_string(),
                metrics,
                mirage,
            })
        })
        .collect()
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
