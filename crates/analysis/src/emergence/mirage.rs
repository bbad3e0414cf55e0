//! The mirage test: is a task's jump in exact match explained by smooth improvement of the
//! per-token quantity it is made of (Schaeffer et al. 2023)?
//!
//! Schaeffer et al. §2 build the mirage: the per-token probability of the right token grows
//! smoothly with scale, `p(N) = exp(−(c/N)^α)`, so the per-token cross-entropy `ℓ = −ln p` is
//! a power law; exact match of an L-token answer is `p^L = exp(−L·ℓ)`, which sits at zero for
//! decades and then shoots up. The test asks that question directly:
//!
//! 1. Fit the per-token quantity — cross-entropy, or the answer's log-probability over its
//!    length, or else `−ln` of per-token accuracy — as `ℓ(s) = E + A·s^(−α)` (a power law with
//!    an irreducible term, fitted on log ℓ; [`fit_power`]) to the scales *below* exact match's
//!    transition only, with a residual bootstrap.
//! 2. Predict exact match at every larger scale as `exp(−L·ℓ(s))`, with the band of the
//!    bootstrap widened by the fit's residual scatter (a prediction interval), and compare it
//!    with the measured exact match and its Wilson interval. Both intervals are Bonferroni
//!    adjusted for the number of larger scales, so that the family of comparisons keeps the
//!    chosen coverage.
//! 3. Compare also the exact match the *measured* per-token quantity implies,
//!    `exp(−L·ℓ_measured)`, with the same band: this tells whether the per-token quantity
//!    itself left its smooth trend (a real phase change), on the scale of exact match and
//!    with its binomial resolution.
//!
//! Verdicts: `mirage` when every larger scale lies within the band; `real` when exact match
//! or the per-token quantity beats the prediction beyond noise; `no_emergence` when exact
//! match is not emergent; `undetermined` (with the reason) when the data cannot decide.

use statrs::distribution::{ContinuousCDF, Normal};

use super::{
    ASSUMED_N_TEST, EmergenceOptions, Metric, MetricEmergence, MetricPoint, check_options,
    merged_points, metric_emergence, short, wilson_interval,
};
use crate::law::{FitOptions, Resampling, fit_power};
use crate::{AnalysisError, Interval};

/// Fewest scales below the transition the per-token fit takes: three constants and one
/// degree of freedom.
pub const MIN_FIT_SCALES: usize = 4;

/// A band of predicted exact match wider than this at the transition says nothing.
pub const MAX_BAND_WIDTH: f64 = 0.5;

/// Which per-token quantity the mirage test fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerToken {
    /// The first present of cross-entropy, log-probability and per-token accuracy.
    #[default]
    Auto,
    /// Per-token cross-entropy: `ℓ` as given.
    CrossEntropy,
    /// The answer's log-probability: `ℓ = −log_prob / L`.
    LogProb,
    /// Per-token accuracy through its log: `ℓ = −ln(token_accuracy)`. The right predictor
    /// of an exact match scored by greedy decoding (every argmax right), as scalelab's is.
    TokenAccuracy,
}

impl PerToken {
    /// The choices, for messages.
    pub const NAMES: &'static str = "auto, cross_entropy, log_prob, token_accuracy";

    /// The choice of a name.
    pub fn from_name(name: &str) -> Option<PerToken> {
        [
            PerToken::Auto,
            PerToken::CrossEntropy,
            PerToken::LogProb,
            PerToken::TokenAccuracy,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            PerToken::Auto => "auto",
            PerToken::CrossEntropy => "cross_entropy",
            PerToken::LogProb => "log_prob",
            PerToken::TokenAccuracy => "token_accuracy",
        }
    }

    /// The metrics it may use, in order of preference.
    fn candidates(self) -> &'static [Metric] {
        match self {
            PerToken::Auto => &[Metric::CrossEntropy, Metric::LogProb, Metric::TokenAccuracy],
            PerToken::CrossEntropy => &[Metric::CrossEntropy],
            PerToken::LogProb => &[Metric::LogProb],
            PerToken::TokenAccuracy => &[Metric::TokenAccuracy],
        }
    }
}

/// What the metrics of one task say together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirageKind {
    /// Exact match jumps, and smooth per-token improvement fitted to the smaller scales
    /// predicts the jump: an artefact of the all-or-nothing metric.
    Mirage,
    /// Exact match, or the per-token quantity itself, beats the smooth prediction beyond
    /// noise: the ability changes faster than smooth improvement explains.
    Real,
    /// Exact match does not jump: nothing to explain.
    NoEmergence,
    /// The data cannot decide; the explanation says why.
    Undetermined,
}

impl MirageKind {
    /// Its name in JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            MirageKind::Mirage => "mirage",
            MirageKind::Real => "real",
            MirageKind::NoEmergence => "no_emergence",
            MirageKind::Undetermined => "undetermined",
        }
    }
}

/// Predicted against measured exact match at one of the larger scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactMatchPrediction {
    /// The scale.
    pub scale: f64,
    /// Measured exact match.
    pub measured: f64,
    /// Its Wilson interval (Bonferroni-adjusted coverage).
    pub measured_interval: Interval,
    /// `exp(−L·ℓ̂(s))` from the fit to the smaller scales.
    pub predicted: f64,
    /// The prediction band (bootstrap, widened by the residual scatter).
    pub band: Interval,
    /// `exp(−L·ℓ)` from the per-token quantity measured at this scale.
    pub implied: f64,
    /// Its interval at exact match's binomial resolution.
    pub implied_interval: Interval,
}

/// The fit behind the mirage test and its predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct PerTokenFit {
    /// The metric the per-token quantity was derived from.
    pub quantity: Metric,
    /// Tokens per answer, when known (a log-probability is predicted without it).
    pub answer_tokens: Option<f64>,
    /// Scales fitted (those below exact match's transition).
    pub fit_points: usize,
    /// The largest scale fitted.
    pub fit_up_to: f64,
    /// Irreducible term of `ℓ(s) = E + A·s^(−α)`.
    pub e: f64,
    /// Its scale constant.
    pub a: f64,
    /// Its exponent.
    pub alpha: f64,
    /// Standard deviation of the fit's residuals in ln ℓ.
    pub residual_sd: f64,
    /// Coverage of each comparison (the chosen level, Bonferroni-adjusted).
    pub level: f64,
    /// When the prediction used per-example scores: the scale their relative losses were
    /// taken at, and how many examples.
    pub examples: Option<(f64, usize)>,
    /// Every larger scale, in order; the first is the one nearest the transition.
    pub larger: Vec<ExactMatchPrediction>,
}

/// The mirage test of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct MirageVerdict {
    /// The verdict.
    pub kind: MirageKind,
    /// The evidence, in sentences.
    pub explanation: String,
    /// The fit and its predictions, when the test got that far.
    pub evidence: Option<PerTokenFit>,
}

/// One row of a table of task results (`scale,task,metric,value[,n_test][,answer_tokens]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The task's name.
    pub task: String,
    /// The metric.
    pub metric: Metric,
    /// The measurement.
    pub point: MetricPoint,
    /// Tokens in the task's answer (mean over examples), when known.
    pub answer_tokens: Option<f64>,
}

impl TaskRow {
    /// The row of `task`'s `metric` measured as `value` at `scale` over `n_test` examples.
    pub fn new(
        task: &str,
        metric: Metric,
        scale: f64,
        value: f64,
        n_test: Option<u64>,
        answer_tokens: Option<f64>,
    ) -> Self {
        Self {
            task: task.to_string(),
            metric,
            point: MetricPoint {
                scale,
                value,
                n_test,
            },
            answer_tokens,
        }
    }
}

/// One test example's log-probability of its right answer at one scale: the distribution the
/// mirage test uses, when given, instead of the mean alone.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleRow {
    /// The task's name.
    pub task: String,
    /// The scale it was measured at.
    pub scale: f64,
    /// Log-probability (nats) of the example's whole right answer, ≤ 0.
    pub log_prob: f64,
}

/// The emergence test of every metric of one task, and its mirage test.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEmergence {
    /// The task's name.
    pub task: String,
    /// One verdict per metric, in [`Metric::ALL`] order.
    pub metrics: Vec<MetricEmergence>,
    /// The mirage test, when the task has exact match.
    pub mirage: Option<MirageVerdict>,
}

/// Runs the test on every (task, metric) series of `rows`, tasks in order of first appearance.
///
/// `examples` (possibly empty) are per-example log-probabilities: with them, a prediction from
/// a log-probability or cross-entropy is the mean over the examples of their answer's
/// probability rather than the probability of the mean (which Jensen's inequality puts below
/// it when examples differ in difficulty).
pub fn analyse_tasks(
    rows: &[TaskRow],
    examples: &[ExampleRow],
    options: &EmergenceOptions,
) -> Result<Vec<TaskEmergence>, AnalysisError> {
    check_options(options)?;
    for (index, e) in examples.iter().enumerate() {
        if !(e.log_prob.is_finite() && e.log_prob <= 0.0) {
            return Err(AnalysisError::OutOfRange {
                what: format!("task `{}`, per-example scores", e.task),
                metric: "log_prob",
                index,
                value: e.log_prob,
                hint: "a log-probability <= 0",
            });
        }
    }
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
            let mut series = Vec::new();
            for metric in Metric::ALL {
                let points: Vec<MetricPoint> = rows
                    .iter()
                    .filter(|r| r.task == task && r.metric == metric)
                    .map(|r| r.point)
                    .collect();
                if !points.is_empty() {
                    let what = format!("task `{task}`, metric `{}`", metric.name());
                    metrics.push(metric_emergence(&what, metric, &points, options)?);
                    series.push((metric, merged_points(&what, metric, &points)?));
                }
            }
            let lengths: Vec<f64> = rows
                .iter()
                .filter(|r| r.task == task)
                .filter_map(|r| r.answer_tokens)
                .collect();
            if let Some(&bad) = lengths.iter().find(|l| !(l.is_finite() && **l >= 1.0)) {
                return Err(AnalysisError::InvalidArgument {
                    name: "answer_tokens",
                    value: bad.to_string(),
                    hint: "the number of tokens in an answer, at least 1",
                });
            }
            let answer_tokens = options.answer_tokens.or_else(|| {
                (!lengths.is_empty()).then(|| lengths.iter().sum::<f64>() / lengths.len() as f64)
            });
            let examples: Vec<&ExampleRow> = examples.iter().filter(|e| e.task == task).collect();
            let mirage = mirage_test(&series, &metrics, answer_tokens, &examples, options);
            Ok(TaskEmergence {
                task: task.to_string(),
                metrics,
                mirage,
            })
        })
        .collect()
}

/// Each metric's transition against exact match's interval, in a sentence.
fn transitions(verdicts: &[MetricEmergence], exact: &MetricEmergence) -> String {
    let mut parts = vec![format!(
        "exact_match {} {} [{}, {}]",
        if exact.emergent {
            "sharp at"
        } else {
            "steepest at"
        },
        short(exact.transition_scale),
        short(exact.transition_interval.lo),
        short(exact.transition_interval.hi)
    )];
    for v in verdicts.iter().filter(|v| v.metric != Metric::ExactMatch) {
        parts.push(if !v.emergent {
            format!("{} no sharp transition", v.metric.name())
        } else if v.jumps_with(exact) {
            format!(
                "{} sharp at {}, its interval meeting exact match's",
                v.metric.name(),
                short(v.transition_scale)
            )
        } else {
            format!(
                "{} sharp at {}, apart from exact match's interval ({:.2} decades away)",
                v.metric.name(),
                short(v.transition_scale),
                (v.transition_scale / exact.transition_scale).log10().abs()
            )
        });
    }
    format!("Transitions: {}.", parts.join("; "))
}

/// Whether a per-token accuracy lies below its resolution 1/n: it says only that ℓ is large.
fn censored(metric: Metric, p: &MetricPoint) -> bool {
    metric == Metric::TokenAccuracy
        && p.value < 1.0 / p.n_test.unwrap_or(ASSUMED_N_TEST).max(1) as f64
}

/// The per-token loss ℓ of `metric`'s value, for answers of `length` tokens (1 for an
/// answer-level log-probability).
fn per_token_loss(metric: Metric, p: &MetricPoint, length: f64) -> f64 {
    let loss = match metric {
        Metric::CrossEntropy => p.value,
        Metric::LogProb => -p.value / length,
        _ => {
            let half = 0.5 / p.n_test.unwrap_or(ASSUMED_N_TEST).max(1) as f64;
            -p.value.clamp(half, 1.0).ln()
        }
    };
    loss.max(1e-12)
}

/// An answer length: whole numbers without decimals.
fn tokens(l: f64) -> String {
    if l.fract() == 0.0 {
        format!("{l:.0}")
    } else {
        format!("{l:.2}")
    }
}

fn describe_quantity(metric: Metric, length: Option<f64>) -> String {
    match (metric, length) {
        (Metric::CrossEntropy, _) => "the per-token cross-entropy ℓ".into(),
        (Metric::LogProb, Some(l)) => format!("the per-token loss ℓ = −log_prob/{}", tokens(l)),
        (Metric::LogProb, None) => {
            "the answer's loss ℓ = −log_prob (answer length unknown; exact match predicted as exp(−ℓ))"
                .into()
        }
        _ => "ℓ = −ln(per-token accuracy)".into(),
    }
}

/// The mirage test of one task from its merged series and per-metric verdicts; `None` when
/// the task has no exact match.
fn mirage_test(
    series: &[(Metric, Vec<MetricPoint>)],
    verdicts: &[MetricEmergence],
    answer_tokens: Option<f64>,
    examples: &[&ExampleRow],
    options: &EmergenceOptions,
) -> Option<MirageVerdict> {
    let exact = verdicts.iter().find(|v| v.metric == Metric::ExactMatch)?;
    let em = &series.iter().find(|(m, _)| *m == Metric::ExactMatch)?.1;
    let when = transitions(verdicts, exact);
    let mut notes = String::new();
    if exact.unresolved_points > 0 {
        notes.push_str(&format!(
            " At {} of the {} scales exact match is below the test set's resolution ({}): \
             there it cannot be told from zero.",
            exact.unresolved_points,
            exact.points,
            exact
                .resolution
                .map_or("1/n".into(), |r| format!("{r:.1e}"))
        ));
    }
    if em.iter().any(|p| p.n_test.is_none()) {
        notes.push_str(&format!(
            " n_test not given: exact match's intervals are those of {ASSUMED_N_TEST} examples."
        ));
    }
    let verdict = |kind: MirageKind, why: String, evidence: Option<PerTokenFit>| MirageVerdict {
        kind,
        explanation: format!("{why} {when}{notes}"),
        evidence,
    };
    let undetermined = |why: String| verdict(MirageKind::Undetermined, why, None);
    if exact.unresolved_points == exact.points {
        return Some(undetermined(
            "Every exact-match value is below its test set's resolution 1/n: there is no jump \
             to explain yet, and nothing to compare a prediction with."
                .into(),
        ));
    }
    if !exact.emergent {
        return Some(verdict(
            MirageKind::NoEmergence,
            format!(
                "Exact match is not emergent on this scale grid ({}).",
                exact.reason
            ),
            None,
        ));
    }
    let Some((quantity, source)) = options
        .per_token
        .candidates()
        .iter()
        .find_map(|m| series.iter().find(|(s, _)| s == m))
    else {
        return Some(undetermined(format!(
            "No per-token quantity ({}) to predict exact match from.",
            options
                .per_token
                .candidates()
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let quantity = *quantity;
    // exp(−factor·ℓ) is the prediction of exact match.
    let factor = match (quantity, answer_tokens) {
        (_, Some(l)) => l,
        (Metric::LogProb, None) => 1.0,
        (_, None) => {
            return Some(undetermined(format!(
                "The answer length is unknown: predicting exact match = p^L from {} needs L \
                 (a CSV column answer_tokens, or --answer-tokens).",
                quantity.name()
            )));
        }
    };
    let length = if quantity == Metric::LogProb {
        answer_tokens.unwrap_or(1.0)
    } else {
        1.0
    };
    // Scales where both exact match and the per-token quantity were measured.
    // A per-token accuracy below its resolution says only that ℓ is large: such scales are
    // censored, and left out of the fit.
    let joined: Vec<(MetricPoint, f64)> = em
        .iter()
        .filter_map(|e| {
            source
                .iter()
                .find(|s| s.scale == e.scale && !censored(quantity, s))
                .map(|s| (*e, per_token_loss(quantity, s, length)))
        })
        .collect();
    // The smaller scales: those exact match's own trend is drawn through (up to where its
    // steepest decade starts, before the jump), and below the per-token quantity's
    // transition when that is sharp (a smooth trend is fitted where it is smooth).
    let below = |scale: f64| {
        scale <= exact.trend_up_to
            && verdicts
                .iter()
                .find(|v| v.metric == quantity && v.emergent)
                .is_none_or(|v| scale < v.transition_scale)
    };
    let (smaller, larger): (Vec<_>, Vec<_>) = joined.iter().partition(|(e, _)| below(e.scale));
    let cut = smaller.last().map_or(exact.trend_up_to, |(e, _)| e.scale);
    if smaller.len() < MIN_FIT_SCALES || larger.is_empty() {
        return Some(undetermined(format!(
            "{} scales with both exact match and {} lie before the jump (up to {}) and {} \
             after it: the smooth per-token fit needs {MIN_FIT_SCALES} before and one after to \
             predict.",
            smaller.len(),
            quantity.name(),
            short(cut),
            larger.len()
        )));
    }
    let fit_options = FitOptions {
        bootstrap: options.bootstrap,
        level: options.level,
        seed: options.seed,
        resampling: Resampling::Residuals,
        grid_starts: Some(16),
        bootstrap_starts: 4,
        ..FitOptions::default()
    };
    let xs: Vec<f64> = smaller.iter().map(|(e, _)| e.scale).collect();
    let ys: Vec<f64> = smaller.iter().map(|(_, l)| *l).collect();
    let fit = match fit_power("scale", &xs, &ys, &fit_options) {
        Ok(fit) => fit,
        Err(e) => {
            return Some(undetermined(format!(
                "The smooth fit of {} failed: {e}.",
                describe_quantity(quantity, answer_tokens)
            )));
        }
    };
    let dof = (smaller.len() - 3).max(1) as f64;
    let residual_sd = (xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| (y.ln() - fit.predict(x, 1.0).ln()).powi(2))
        .sum::<f64>()
        / dof)
        .sqrt();
    let level = 1.0 - (1.0 - options.level) / larger.len() as f64;
    let z = Normal::standard().inverse_cdf(0.5 + level / 2.0);
    // With per-example log-probabilities, each example keeps its answer loss relative to the
    // mean at the largest fitted scale that has them, w = λ/λ̄, and exact match is predicted
    // as the mean of exp(−w·L·ℓ) over the examples.
    let at = |scale: f64| -> Vec<f64> {
        examples
            .iter()
            .filter(|e| e.scale == scale)
            .map(|e| -e.log_prob)
            .collect()
    };
    let weights: Option<(f64, Vec<f64>)> =
        if matches!(quantity, Metric::LogProb | Metric::CrossEntropy) {
            xs.iter().rev().find_map(|&scale| {
                let losses = at(scale);
                let mean = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
                (!losses.is_empty() && mean > 0.0)
                    .then(|| (scale, losses.iter().map(|l| l / mean).collect()))
            })
        } else {
            None
        };
    let to_exact = |loss: f64| match &weights {
        Some((_, w)) => w.iter().map(|w| (-w * factor * loss).exp()).sum::<f64>() / w.len() as f64,
        None => (-factor * loss).exp(),
    };
    let predictions: Vec<ExactMatchPrediction> = larger
        .iter()
        .map(|(e, loss)| {
            let predicted_loss = fit.predict(e.scale, 1.0);
            let band = fit.band(e.scale, 1.0, level).unwrap_or(Interval {
                lo: predicted_loss,
                hi: predicted_loss,
                level,
            });
            let spread = (z * residual_sd).exp();
            let n = e.n_test.unwrap_or(ASSUMED_N_TEST);
            let own = at(e.scale);
            let implied = if weights.is_some() && !own.is_empty() {
                own.iter().map(|l| (-l).exp()).sum::<f64>() / own.len() as f64
            } else {
                (-factor * loss).exp()
            };
            ExactMatchPrediction {
                scale: e.scale,
                measured: e.value,
                measured_interval: wilson_interval(e.value * n as f64, n, level),
                predicted: to_exact(predicted_loss),
                band: Interval {
                    lo: to_exact(band.hi.max(predicted_loss) * spread),
                    hi: to_exact(band.lo.min(predicted_loss) / spread),
                    level,
                },
                implied,
                implied_interval: wilson_interval(implied * n as f64, n, level),
            }
        })
        .collect();
    let evidence = PerTokenFit {
        quantity,
        answer_tokens,
        fit_points: smaller.len(),
        fit_up_to: xs[xs.len() - 1],
        e: fit.get("E").unwrap_or(0.0),
        a: fit.get("A").unwrap_or(0.0),
        alpha: fit.get("alpha").unwrap_or(0.0),
        residual_sd,
        level,
        examples: weights.as_ref().map(|(scale, w)| (*scale, w.len())),
        larger: predictions,
    };
    Some(judge(evidence, verdict))
}

/// The verdict from the predictions.
fn judge(
    evidence: PerTokenFit,
    verdict: impl Fn(MirageKind, String, Option<PerTokenFit>) -> MirageVerdict,
) -> MirageVerdict {
    let p = &evidence.larger;
    let first = p[0];
    let fitted = format!(
        "Fitted {} = E + A·s^-α to the {} scales before the jump (up to {}; \
         E = {:.3e}, A = {:.3e}, α = {:.3}, residual sd {:.3} in ln ℓ) and predicted exact \
         match as {}. At {}, the first larger scale, predicted {:.3} \
         [{:.3}, {:.3}], measured {:.3} [{:.3}, {:.3}] ({:.1}% intervals, Bonferroni over the \
         {} larger scales).",
        describe_quantity(evidence.quantity, evidence.answer_tokens),
        evidence.fit_points,
        short(evidence.fit_up_to),
        evidence.e,
        evidence.a,
        evidence.alpha,
        evidence.residual_sd,
        {
            let l = match (evidence.quantity, evidence.answer_tokens) {
                (Metric::LogProb, None) => "1".to_string(),
                (_, l) => tokens(l.unwrap_or(1.0)),
            };
            match evidence.examples {
                Some((scale, n)) => format!(
                    "the mean over {n} examples of exp(−w·{l}·ℓ), w each example's answer loss \
                     relative to the mean at {}",
                    short(scale)
                ),
                None => format!("exp(−{l}·ℓ)"),
            }
        },
        short(first.scale),
        first.predicted,
        first.band.lo,
        first.band.hi,
        first.measured,
        first.measured_interval.lo,
        first.measured_interval.hi,
        100.0 * evidence.level,
        p.len()
    );
    // The clearest departure of each kind: the largest gap between the intervals.
    let clearest = |gap: &dyn Fn(&ExactMatchPrediction) -> f64| {
        p.iter()
            .filter(|q| gap(q) > 0.0)
            .max_by(|a, b| gap(a).total_cmp(&gap(b)))
            .copied()
    };
    let above = clearest(&|q| q.measured_interval.lo - q.band.hi);
    let itself = clearest(&|q| q.implied_interval.lo - q.band.hi);
    let below = p
        .iter()
        .find(|q| q.measured_interval.hi < q.band.lo || q.implied_interval.hi < q.band.lo)
        .copied();
    if above.is_some() || itself.is_some() {
        let mut why = Vec::new();
        if let Some(q) = itself {
            why.push(format!(
                "the per-token quantity itself leaves its smooth trend: at {} it implies exact \
                 match {:.3} [{:.3}, {:.3}] where the smaller scales predict at most {:.3}",
                short(q.scale),
                q.implied,
                q.implied_interval.lo,
                q.implied_interval.hi,
                q.band.hi
            ));
        }
        if let Some(q) = above {
            why.push(format!(
                "exact match at {} ({:.3} [{:.3}, {:.3}]) beats the smooth prediction's band \
                 (at most {:.3})",
                short(q.scale),
                q.measured,
                q.measured_interval.lo,
                q.measured_interval.hi,
                q.band.hi
            ));
        }
        return verdict(
            MirageKind::Real,
            format!(
                "Real: {}. {fitted} The ability improves faster than smooth per-token \
                 improvement at the smaller scales explains.",
                why.join("; and ")
            ),
            Some(evidence),
        );
    }
    if let Some(q) = below {
        return verdict(
            MirageKind::Undetermined,
            format!(
                "Undetermined: at {} exact match ({:.3}) or the exact match its per-token \
                 quantity implies ({:.3}) falls short of the smooth prediction's band [{:.3}, \
                 {:.3}]: the smaller scales' trend overshoots, or the errors within an answer \
                 are not independent, so p^L does not describe this task. {fitted}",
                short(q.scale),
                q.measured,
                q.implied,
                q.band.lo,
                q.band.hi
            ),
            Some(evidence),
        );
    }
    if first.band.hi - first.band.lo > MAX_BAND_WIDTH {
        return verdict(
            MirageKind::Undetermined,
            format!(
                "Undetermined: the smaller scales pin the per-token trend down too loosely: at \
                 the transition the predicted exact match spans [{:.3}, {:.3}], wider than \
                 {MAX_BAND_WIDTH}. {fitted}",
                first.band.lo, first.band.hi
            ),
            Some(evidence),
        );
    }
    let gap = p
        .iter()
        .max_by(|a, b| {
            (a.measured - a.predicted)
                .abs()
                .total_cmp(&(b.measured - b.predicted).abs())
        })
        .copied()
        .unwrap_or(first);
    verdict(
        MirageKind::Mirage,
        format!(
            "Mirage: {fitted} All {} larger scales lie within the band (largest gap {:.3}, at \
             {}). The jump is what requiring every token of the answer to be right makes of \
             smooth per-token improvement (Schaeffer et al. 2023).",
            p.len(),
            (gap.measured - gap.predicted).abs(),
            short(gap.scale)
        ),
        Some(evidence),
    )
}
