//! The report's pages on abilities: for a study whose runs are evaluated on a task, the
//! metrics over training time (train against test: grokking), the weight norm, the metrics
//! against model size with their resolution floor, and the emergence verdicts with their
//! evidence.

use std::fmt::Write;

use scalelab_analysis::abilities::{
    AbilityAnalysis, TaskPoint, accuracy_interval, finals_by_size, metric_value,
};
use scalelab_analysis::emergence::{Metric, TaskEmergence};
use scalelab_spec::TaskMetrics;

use crate::ReportError;
use crate::page::{esc, figure, heading, table_row};
use crate::plot::{Band, Figure, Series, Style, short};

fn label(metric: Metric) -> &'static str {
    match metric {
        Metric::ExactMatch => "exact match",
        Metric::TokenAccuracy => "per-token accuracy",
        Metric::EditDistance => "edit distance (tokens)",
        Metric::LogProb => "log-probability of the answer (nats)",
        Metric::CrossEntropy => "per-token cross-entropy (nats)",
        Metric::Brier => "Brier score",
    }
}

/// Writes the abilities sections.
pub(crate) fn render_abilities(
    out: &mut String,
    section: &mut usize,
    a: &AbilityAnalysis,
    color_of: &dyn Fn(&str) -> usize,
) -> Result<(), ReportError> {
    if a.runs.is_empty() {
        return Ok(());
    }
    heading(out, section, "Abilities over training");
    let examples = a.runs[0].points.first().map_or(0, |p| p.test.examples);
    let _ = writeln!(
        out,
        "<p>Task: {}. Every evaluation scores the model on the {examples} held-out test examples and on as many training examples, with five metrics from the same outputs: <b>exact match</b> (the whole answer right; all or nothing), <b>per-token accuracy</b> (teacher-forced), <b>edit distance</b> of the greedy answer, <b>log-probability</b> of the right answer, and the <b>Brier score</b>. An accuracy of 0 on {examples} examples only says the true accuracy is below about 1/{examples} (the resolution of the test set).</p>",
        esc(&a.task),
    );
    for note in &a.notes {
        let _ = writeln!(out, "<p class=\"note\">Note: {}</p>", esc(note));
    }
    // Exact match over training: train dashed, test solid.
    let mut series = Vec::new();
    let mut bands = Vec::new();
    for run in &a.runs {
        let c = color_of(&run.size);
        let pts = |f: &dyn Fn(&TaskPoint) -> Option<f64>| -> Vec<(f64, f64)> {
            run.points
                .iter()
                .filter(|p| p.tokens > 0.0)
                .filter_map(|p| f(p).map(|v| (p.tokens, v)))
                .collect()
        };
        series.push(Series {
            label: format!("{}: test", run.label),
            points: pts(&|p| Some(p.test.exact_match)),
            color: c,
            style: Style::LineMarkers,
        });
        series.push(Series {
            label: format!("{}: train", run.label),
            points: pts(&|p| p.train.as_ref().map(|t| t.exact_match)),
            color: c,
            style: Style::Dashed,
        });
        bands.push(Band {
            label: String::new(),
            rows: run
                .points
                .iter()
                .filter(|p| p.tokens > 0.0)
                .map(|p| {
                    let i = accuracy_interval(&p.test, Metric::ExactMatch);
                    (p.tokens, i.lo, i.hi)
                })
                .collect(),
            color: c,
        });
    }
    figure(
        out,
        &Figure {
            title: "exact match on training (dashed) and test (solid) examples".into(),
            x_label: "training tokens".into(),
            y_label: "exact match".into(),
            x_log: true,
            y_log: false,
            series,
            bands,
        },
        "Shaded: 95% Wilson intervals of the test accuracy. A model that memorises first and generalises later (grokking, Power et al. 2022) shows the dashed curve reaching 1 long before the solid one.",
    )?;
    if !a.delays.is_empty() {
        let _ = writeln!(
            out,
            "<table><tr><th>run</th><th>train exact match ≥ {0}</th><th>test exact match ≥ {0}</th><th>delay</th></tr>",
            a.delays[0].threshold
        );
        for d in &a.delays {
            let tokens =
                |t: Option<f64>| t.map_or("not reached".into(), |t| format!("{} tokens", short(t)));
            let delay = match (d.train_tokens, d.test_tokens) {
                (Some(a), Some(b)) => format!("{:.1}× the tokens", b / a),
                _ => "—".into(),
            };
            table_row(
                out,
                [
                    esc(&d.label),
                    tokens(d.train_tokens),
                    tokens(d.test_tokens),
                    delay,
                ],
            );
        }
        let _ = writeln!(out, "</table>");
    }
    // The continuous metrics and the weight norm over training.
    for (metric, title) in [
        (
            Metric::LogProb,
            "log-probability of the right answer on test examples",
        ),
        (Metric::TokenAccuracy, "per-token accuracy on test examples"),
    ] {
        over_training(
            out,
            a,
            color_of,
            [title, label(metric)],
            |p| Some(metric_value(&p.test, metric)),
            "The same evaluations as above, scored with a continuous metric.",
        )?;
    }
    over_training(
        out,
        a,
        color_of,
        ["weight norm over training", "L2 norm of all parameters"],
        |p| p.weight_norm,
        "Weight decay pulls the norm down while the loss pulls it up; Nanda et al. 2023 tie generalisation to the decay winning over memorisation.",
    )?;

    // Metrics against model size.
    let finals: Vec<(f64, &TaskMetrics)> = finals_by_size(&a.runs)
        .into_iter()
        .map(|(_, n, p)| (n, &p.test))
        .collect();
    if finals.len() >= 2 {
        heading(out, section, "Abilities against model size");
        let _ = writeln!(
            out,
            "<p>The last evaluation of each size at its largest budget, every metric side by side. The dotted line on the accuracy plots is the resolution floor 1/n of the test set: values below it are indistinguishable from zero.</p>"
        );
        for metric in Metric::RECORDED {
            let points: Vec<(f64, f64)> = finals
                .iter()
                .map(|(n, m)| (*n, metric_value(m, metric)))
                .collect();
            let mut series = vec![Series {
                label: label(metric).into(),
                points: points.clone(),
                color: 0,
                style: Style::LineMarkers,
            }];
            let mut bands = Vec::new();
            if metric.is_accuracy() {
                let floor = 1.0 / finals.first().map_or(1, |f| f.1.examples.max(1)) as f64;
                let (lo, hi) = (
                    points.first().map_or(1.0, |p| p.0),
                    points.last().map_or(1.0, |p| p.0),
                );
                series.push(Series {
                    label: "resolution 1/n".into(),
                    points: vec![(lo, floor), (hi, floor)],
                    color: 6,
                    style: Style::Dashed,
                });
                bands.push(Band {
                    label: "95% Wilson interval".into(),
                    rows: finals
                        .iter()
                        .map(|(n, m)| {
                            let i = accuracy_interval(m, metric);
                            (*n, i.lo, i.hi)
                        })
                        .collect(),
                    color: 0,
                });
            }
            figure(
                out,
                &Figure {
                    title: format!("{} against N", label(metric)),
                    x_label: "N (parameters)".into(),
                    y_label: label(metric).into(),
                    x_log: true,
                    y_log: false,
                    series,
                    bands,
                },
                "",
            )?;
        }
    }

    // The verdicts.
    if a.over_n.is_some() || !a.over_tokens.is_empty() {
        heading(out, section, "Emergence verdicts");
        let _ = writeln!(
            out,
            "<p>Each metric is measured in the space where a smooth power law in scale is a straight line: the logit of per-token accuracy (values below the resolution 1/n left out), −ln of the distance to the floor for log-probability, edit distance and Brier score; exact match as the share it is, the scale on which emergence is claimed. A metric is <b>sharp</b> (marked emergent) when at least a quarter of its observed change in that space happens within one decade of scale and a straight line through the smaller scales under-predicts the larger ones by at least 20% of the range. <i>Sharpness</i> is that share; the <i>extrapolation error</i> is the mean miss; the <i>transition</i> is the middle of the steepest decade, with the measured scales that bracket it (widened by a binomial bootstrap for accuracies); two metrics jump together when their transition intervals meet.</p><p>The <b>mirage test</b> (Schaeffer et al. 2023) asks whether exact match's jump is explained by smooth per-token improvement: it fits ℓ = −ln(per-token accuracy) as E + A·s<sup>−α</sup> to the scales before the jump and predicts exact match as exp(−L·ℓ) at every larger scale (scalelab scores exact match by greedy decoding, every argmax right, so per-token argmax accuracy is the quantity whose L-th power predicts it). <b>mirage</b>: every measured exact match lies within the prediction band; <b>real</b>: exact match, or the per-token accuracy itself, beats the prediction beyond binomial noise; <b>no emergence</b>: exact match has no sharp jump; <b>undetermined</b>: the data cannot decide, and the explanation says why.</p>"
        );
        if let Some(t) = &a.over_n {
            verdict_table(out, "over model size N", t)?;
        }
        for (run, t) in &a.over_tokens {
            verdict_table(out, &format!("over training tokens, {run}"), t)?;
        }
    }
    Ok(())
}

fn verdict_table(out: &mut String, axis: &str, t: &TaskEmergence) -> Result<(), ReportError> {
    let _ = writeln!(
        out,
        "<h3>{}</h3><table><tr><th>metric</th><th>measured as</th><th>sharp</th><th>transition</th><th>interval</th><th>sharpness</th><th>extrapolation error</th><th>why</th></tr>",
        esc(axis)
    );
    for m in &t.metrics {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"small\">{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{:.2}</td><td>{:+.2}</td><td class=\"small\">{}</td></tr>",
            m.metric.name(),
            esc(m.metric.space()),
            if m.emergent { "<b>yes</b>" } else { "no" },
            short(m.transition_scale),
            short(m.transition_interval.lo),
            short(m.transition_interval.hi),
            m.sharpness,
            m.extrapolation_error,
            esc(&m.reason)
        );
    }
    let _ = writeln!(out, "</table>");
    let Some(v) = &t.mirage else {
        return Ok(());
    };
    let _ = writeln!(
        out,
        "<p><b>Mirage test: {}.</b> {}</p>",
        v.kind.name().replace('_', " "),
        esc(&v.explanation)
    );
    let Some(e) = &v.evidence else {
        return Ok(());
    };
    let _ = writeln!(
        out,
        "<table><tr><th>scale</th><th>measured exact match</th><th>predicted from the smaller scales</th><th>implied by the measured {}</th></tr>",
        e.quantity.name()
    );
    for p in &e.larger {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{:.3} [{:.3}, {:.3}]</td><td>{:.3} [{:.3}, {:.3}]</td><td>{:.3}</td></tr>",
            short(p.scale),
            p.measured,
            p.measured_interval.lo,
            p.measured_interval.hi,
            p.predicted,
            p.band.lo,
            p.band.hi,
            p.implied
        );
    }
    let _ = writeln!(out, "</table>");
    figure(
        out,
        &Figure {
            title: format!("exact match {axis}: measured against the smooth per-token prediction"),
            x_label: "scale".into(),
            y_label: "exact match".into(),
            x_log: true,
            y_log: false,
            series: vec![
                Series {
                    label: "measured".into(),
                    points: e.larger.iter().map(|p| (p.scale, p.measured)).collect(),
                    color: 0,
                    style: Style::LineMarkers,
                },
                Series {
                    label: format!("predicted from {} before the jump", e.quantity.name()),
                    points: e.larger.iter().map(|p| (p.scale, p.predicted)).collect(),
                    color: 1,
                    style: Style::Dashed,
                },
            ],
            bands: vec![Band {
                label: format!("{:.1}% prediction band", 100.0 * e.level),
                rows: e
                    .larger
                    .iter()
                    .map(|p| (p.scale, p.band.lo, p.band.hi))
                    .collect(),
                color: 1,
            }],
        },
        "The larger scales only: the per-token fit was made on the scales before the jump.",
    )
}

/// A figure of `value` at every evaluation after the first of every run, against training
/// tokens, a line per run: `[title, y_label]`, with `caption`.
fn over_training(
    out: &mut String,
    a: &AbilityAnalysis,
    color_of: &dyn Fn(&str) -> usize,
    [title, y_label]: [&str; 2],
    value: impl Fn(&TaskPoint) -> Option<f64>,
    caption: &str,
) -> Result<(), ReportError> {
    let series = a
        .runs
        .iter()
        .map(|run| Series {
            label: run.label.clone(),
            points: run
                .points
                .iter()
                .filter(|p| p.tokens > 0.0)
                .filter_map(|p| value(p).map(|v| (p.tokens, v)))
                .collect(),
            color: color_of(&run.size),
            style: Style::LineMarkers,
        })
        .collect();
    figure(
        out,
        &Figure {
            title: title.into(),
            x_label: "training tokens".into(),
            y_label: y_label.into(),
            x_log: true,
            y_log: false,
            series,
            bands: Vec::new(),
        },
        caption,
    )
}
