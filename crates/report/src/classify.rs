//! The report of a classification study: test error against model size and against training
//! examples, the train–test gap (overfitting) across size × data × regulariser, and the fits
//! the analysis crate made of error against N and D.

use std::fmt::Write as _;

use scalelab_analysis::LawFit;
use scalelab_analysis::summary::mean_by;
use scalelab_spec::{ClassifyRecord, StudyCell};

use crate::ReportError;
use crate::page::{constants_table, esc, figure, page_start, summary_table};
use crate::plot::{Figure, Series, Style};

/// One run of a classification study, where it sits and what it recorded.
#[derive(Debug, Clone)]
pub struct ClassifyRun {
    /// Its cell of the grid.
    pub cell: StudyCell,
    /// Its record.
    pub record: ClassifyRecord,
}

/// What the report shows besides the runs.
#[derive(Debug, Clone, Default)]
pub struct ClassifyStudyReport {
    /// Study name.
    pub name: String,
    /// One line.
    pub description: String,
    /// The command that regenerates the page.
    pub command: String,
    /// Test error against parameters at the largest training fraction, first regulariser.
    pub fit_n: Option<LawFit>,
    /// Test error against training examples for the largest model, first regulariser.
    pub fit_d: Option<LawFit>,
    /// Why a fit is missing.
    pub fit_notes: Vec<String>,
}

fn series(groups: Vec<(String, Vec<(f64, f64)>)>) -> Vec<Series> {
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (label, points))| Series {
            label,
            points,
            color: i,
            style: Style::LineMarkers,
        })
        .collect()
}

/// What would pin a poorly constrained classification law down.
const CLASSIFY_REMEDY: &str =
    "More training fractions or model sizes, or more seeds per cell, would pin it down.";

/// A figure of `rows` (line, x, y) averaged over seeds (and folds) into one line each, on a
/// log x axis and a log or linear y axis, with `caption`.
fn seed_mean_figure(
    out: &mut String,
    title: String,
    [x_label, y_label]: [&str; 2],
    y_log: bool,
    rows: &[(String, f64, f64)],
    caption: &str,
) -> Result<(), ReportError> {
    figure(
        out,
        &Figure {
            title,
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log: true,
            y_log,
            series: series(mean_by(rows)),
            bands: Vec::new(),
        },
        caption,
    )
}

fn law_table(out: &mut String, fit: &LawFit, what: &str) {
    let _ = writeln!(
        out,
        "<p>{what}: test error fitted as {} with X = {}, to {} points (Huber loss on log error, as the language-model laws).</p>",
        esc(fit.law.formula()),
        esc(&fit.axis),
        fit.points
    );
    constants_table(out, fit, 0.95, CLASSIFY_REMEDY);
}

/// Renders the study's page.
pub fn render_classify_report(
    report: &ClassifyStudyReport,
    runs: &[ClassifyRun],
) -> Result<String, ReportError> {
    let mut out = String::new();
    page_start(
        &mut out,
        &format!("{} — scalelab classification study", report.name),
    );
    let _ = writeln!(
        out,
        "<h1>Classification study: {}</h1><p>{}</p><p class=\"lead\">How the test error of supervised classifiers falls with model size (<i>N</i>, parameters) and with training examples (<i>D</i>), and how far the training accuracy runs ahead of the test accuracy (the train–test gap: overfitting) for each size, amount of data and regulariser. Errors are 1 − accuracy on the data set's test images; points with several seeds show their mean.</p>",
        esc(&report.name),
        esc(&report.description)
    );
    let wall: f64 = runs.iter().map(|r| r.record.wall_secs).sum();
    let flops: f64 = runs.iter().map(|r| r.record.result.train_flops).sum();
    let dataset = runs.first().map_or("?".into(), |r| {
        format!("{:?}", r.record.config.dataset).to_lowercase()
    });
    summary_table(
        &mut out,
        &[
            ("runs", runs.len().to_string()),
            ("data set", esc(&dataset)),
            (
                "training compute",
                format!("{flops:.3e} FLOPs (6 × forward multiply-adds a sample)"),
            ),
            ("wall time", format!("{wall:.0} s of run time")),
            (
                "N means",
                "all trainable parameters, embeddings of the text families included".into(),
            ),
            (
                "regenerate",
                format!("<code>{}</code>", esc(&report.command)),
            ),
        ],
    );

    let first_reg = runs.first().map(|r| r.cell.regulariser.clone());
    let max_fraction = runs
        .iter()
        .map(|r| r.cell.train_fraction)
        .fold(0.0, f64::max);
    let test_error = |r: &ClassifyRun| 1.0 - r.record.result.test.accuracy;
    let gap = |r: &ClassifyRun| r.record.result.train.accuracy - r.record.result.test.accuracy;
    let fraction_label = |r: &ClassifyRun| {
        format!(
            "D = {} ({:.0}%)",
            r.record.result.train_examples,
            100.0 * r.cell.train_fraction
        )
    };
    let base: Vec<&ClassifyRun> = runs
        .iter()
        .filter(|r| Some(&r.cell.regulariser) == first_reg.as_ref())
        .collect();
    let reg_name = first_reg.clone().unwrap_or_default();
    // The base runs as `(line, x, y)` points of a figure.
    let points = |point: &dyn Fn(&ClassifyRun) -> (String, f64, f64)| -> Vec<_> {
        base.iter().map(|r| point(r)).collect()
    };
    let size = |r: &ClassifyRun| r.record.params.total as f64;
    let examples = |r: &ClassifyRun| r.record.result.train_examples as f64;

    // 1. Error against N, a line per training fraction.
    let rows = points(&|r| (fraction_label(r), size(r), test_error(r)));
    let _ = writeln!(out, "<h2>1. Test error against model size</h2>");
    seed_mean_figure(
        &mut out,
        format!("test error vs N (regulariser: {reg_name})"),
        ["N (parameters)", "test error"],
        true,
        &rows,
        "One line per amount of training data. Bigger models help while the data can feed them; with little data the lines flatten or turn up as the larger models overfit.",
    )?;
    if let Some(fit) = &report.fit_n {
        law_table(
            &mut out,
            fit,
            &format!("At {:.0}% of the training images", 100.0 * max_fraction),
        );
    }

    // 2. Error against D, a line per model.
    let rows = points(&|r| (r.cell.model.clone(), examples(r), test_error(r)));
    let _ = writeln!(out, "<h2>2. Test error against training examples</h2>");
    seed_mean_figure(
        &mut out,
        format!("test error vs D (regulariser: {reg_name})"),
        ["D (training images)", "test error"],
        true,
        &rows,
        "One line per model. More data lowers the error of every model; the bigger models gain the most.",
    )?;
    if let Some(fit) = &report.fit_d {
        law_table(&mut out, fit, "For the largest model");
    }
    for note in &report.fit_notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(note));
    }

    // 3. The gap.
    let rows = points(&|r| (fraction_label(r), size(r), gap(r)));
    let _ = writeln!(out, "<h2>3. Overfitting: the train–test gap</h2>");
    seed_mean_figure(
        &mut out,
        format!("train accuracy − test accuracy vs N (regulariser: {reg_name})"),
        ["N (parameters)", "gap"],
        false,
        &rows,
        "The classic picture: the gap grows with model size on small data and closes as the data grows.",
    )?;
    let regs: Vec<String> = runs.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.cell.regulariser) {
            v.push(r.cell.regulariser.clone());
        }
        v
    });
    if regs.len() > 1 {
        let rows: Vec<(String, f64, f64)> = runs
            .iter()
            .filter(|r| {
                r.cell.train_fraction
                    == runs
                        .iter()
                        .map(|r| r.cell.train_fraction)
                        .fold(f64::INFINITY, f64::min)
            })
            .map(|r| {
                (
                    r.cell.regulariser.clone(),
                    r.record.params.total as f64,
                    gap(r),
                )
            })
            .collect();
        figure(
            &mut out,
            &Figure {
                title: "gap vs N at the smallest training fraction, per regulariser".into(),
                x_label: "N (parameters)".into(),
                y_label: "gap".into(),
                x_log: true,
                y_log: false,
                series: series(mean_by(&rows)),
                bands: Vec::new(),
            },
            "What each regulariser buys where overfitting is worst.",
        )?;
    }

    // 4. Every run.
    let _ = writeln!(
        out,
        "<h2>4. Runs</h2><table><tr><th>model</th><th>N</th><th>D</th><th>regulariser</th><th>seed</th><th>samples</th><th>train acc.</th><th>test acc. [95% CI]</th><th>gap</th><th>macro F1</th><th>ECE</th><th>s</th></tr>"
    );
    for r in runs {
        let rec = &r.record;
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{:.4}</td><td>{:.4} [{:.4}, {:.4}]</td><td>{:+.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.1}</td></tr>",
            esc(&r.cell.model),
            rec.params.total,
            rec.result.train_examples,
            esc(&r.cell.regulariser),
            r.cell.seed,
            rec.result.kept_samples,
            if rec.result.stopped_early {
                " (early stop)"
            } else {
                ""
            },
            rec.result.train.accuracy,
            rec.result.test.accuracy,
            rec.result.test.accuracy_interval[0],
            rec.result.test.accuracy_interval[1],
            gap(r),
            rec.result.test.macro_f1,
            rec.result.test.ece,
            rec.wall_secs
        );
    }
    let _ = writeln!(out, "</table></body></html>");
    Ok(out)
}
