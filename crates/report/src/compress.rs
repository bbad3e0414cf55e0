//! The report of a compression study: loss against non-zero parameters, bytes and inference
//! FLOPs for every method with the dense frontier drawn through the dense models, the table of
//! each compressed model's place against that frontier with its verdict, a headline of where
//! each method beats it, and the precision penalty against tokens per parameter.

use std::fmt::Write as _;

use scalelab_analysis::compress_study::{AXES, CompressionAnalysis, Verdict};

use crate::ReportError;
use crate::page::{esc, figure, heading, interval_text, page_start, sig, summary_table, table_row};
use crate::plot::{Figure, Series, Style, short};

/// What the report shows besides the analysis.
#[derive(Debug, Clone, Default)]
pub struct CompressionStudyReport {
    /// Study name.
    pub name: String,
    /// One line.
    pub description: String,
    /// The command that regenerates the page.
    pub command: String,
    /// The corpus, in words.
    pub corpus: String,
    /// What N means.
    pub convention: String,
    /// Training tokens of every dense model.
    pub tokens: u64,
    /// Runs recorded, and planned.
    pub runs: (usize, usize),
    /// One-shot compressions made, and planned.
    pub one_shot: (usize, usize),
    /// Training FLOPs of the recorded runs.
    pub flops: f64,
    /// Their wall seconds.
    pub wall_secs: f64,
    /// The penalty's quantisation, if the study has one.
    pub penalty_method: Option<String>,
}

fn level_text(level: Option<f64>) -> String {
    level.map_or(String::new(), |l| format!(" {:.0}%", 100.0 * l))
}

/// Renders the study's page.
pub fn render_compression_report(
    report: &CompressionStudyReport,
    analysis: &CompressionAnalysis,
) -> Result<String, ReportError> {
    let mut out = String::new();
    page_start(
        &mut out,
        &format!("{} — scalelab compression study", report.name),
    );
    let _ = writeln!(
        out,
        "<h1>Compression study: {}</h1><p>{}</p><p class=\"lead\">Is a compressed large model better than a dense small model trained from scratch at the same cost? Every size is trained from scratch on {} tokens (the <b>dense frontier</b>); the compressed sizes are then pruned or quantised one-shot, trained again with gradual pruning, or teach smaller students, and each result is set against the dense model of the same non-zero parameters, bytes or inference FLOPs. <i>Δ</i> is its loss less the frontier's at its cost (negative: it beats the frontier); the <i>effective size ratio</i> is the cost at which the frontier reaches its loss, over its own cost (above 1: compression kept more than shrinking would have). Losses are validation losses in nats per token on each run's own validation sample.</p>",
        esc(&report.name),
        esc(&report.description),
        report.tokens,
    );
    summary_table(
        &mut out,
        &[
            (
                "runs",
                format!("{} recorded of {} planned", report.runs.0, report.runs.1),
            ),
            (
                "one-shot compressions",
                format!("{} made of {} planned", report.one_shot.0, report.one_shot.1),
            ),
            ("corpus", esc(&report.corpus)),
            (
                "training compute",
                format!(
                    "{:.3e} FLOPs (6·N_matmul + 12·L·T·d per token; a student's teacher forward passes are not counted)",
                    report.flops
                ),
            ),
            ("wall time", format!("{:.0} s of run time", report.wall_secs)),
            ("N means", esc(&report.convention)),
            (
                "costs",
                "non-zero parameters in the convention above; bytes: float32 weights, a pruned matrix as its non-zero values plus a one-bit mask, a quantised one at its bits plus a float32 scale per group (simulated: the CPU computes on the dequantised floats); inference FLOPs: the forward pass per token, 2 per non-zero weight plus attention".into(),
            ),
            ("regenerate", format!("<code>{}</code>", esc(&report.command))),
        ],
    );
    let mut section = 0;
    if analysis.dense.len() < 2 {
        out.push_str("<p>Fewer than two dense sizes are recorded yet, so there is no frontier: run the study (the same command resumes it).</p></body></html>\n");
        return Ok(out);
    }
    heading(&mut out, &mut section, "Verdict");
    headline(&mut out, analysis);
    heading(&mut out, &mut section, "Against the dense frontier");
    let mut methods: Vec<&str> = Vec::new();
    for c in &analysis.compressed {
        if !methods.contains(&c.method.as_str()) {
            methods.push(&c.method);
        }
    }
    for (a, &axis) in AXES.iter().enumerate() {
        let mut series = vec![Series {
            label: "dense from scratch".into(),
            points: analysis.dense.iter().map(|d| (d.2[a], d.1)).collect(),
            color: 7,
            style: Style::LineMarkers,
        }];
        for (i, method) in methods.iter().enumerate() {
            let mut points: Vec<(f64, f64)> = (analysis.compressed.iter())
                .filter(|c| c.method == *method)
                .map(|c| (c.costs[a], c.loss))
                .collect();
            points.sort_by(|p, q| p.0.total_cmp(&q.0));
            series.push(Series {
                label: (*method).to_string(),
                points,
                color: i,
                style: Style::Markers,
            });
        }
        figure(
            &mut out,
            &Figure {
                title: format!("loss against {}", axis.name()),
                x_label: axis.name().into(),
                y_label: "validation loss (nats/token)".into(),
                x_log: true,
                y_log: false,
                series,
                bands: Vec::new(),
            },
            &format!(
                "The dense models (black line) and every compressed model (one colour a method). A marker below the black line at the same {} beats the frontier there.",
                axis.name()
            ),
        )?;
    }
    out.push_str("<table><tr><th>size</th><th>loss</th><th>N non-zero</th><th>bytes</th><th>inference FLOPs/token</th></tr>\n");
    for d in &analysis.dense {
        table_row(
            &mut out,
            [
                format!("{} (dense)", esc(&d.0)),
                sig(d.1),
                short(d.2[0]),
                short(d.2[1]),
                short(d.2[2]),
            ],
        );
    }
    out.push_str("</table>\n");
    placements_table(&mut out, analysis);
    penalty_section(&mut out, &mut section, report, analysis)?;
    out.push_str("</body></html>\n");
    Ok(out)
}

/// One sentence per axis: the model that beats the frontier there with the largest effective
/// size ratio, else that none does.
fn headline(out: &mut String, analysis: &CompressionAnalysis) {
    let mut lines = Vec::new();
    for &axis in &AXES {
        let best = (analysis.compressed.iter())
            .filter_map(|c| {
                let p = c.placements.iter().find(|p| p.axis == axis)?;
                (p.verdict == Verdict::Beats).then_some((c, p))
            })
            .max_by(|a, b| {
                let ratio =
                    |p: &&scalelab_analysis::compress_study::Placement| p.ratio.unwrap_or(0.0);
                ratio(&a.1).total_cmp(&ratio(&b.1))
            });
        lines.push(match best {
            Some((c, p)) => format!(
                "<li>At equal <b>{}</b>, the best is <b>{}{}</b> of {}: worth a dense model {}× its cost ({} nats below the dense frontier{}{}).</li>",
                axis.name(),
                esc(&c.method),
                level_text(c.level),
                esc(&c.size),
                p.ratio.map_or("—".into(), |r| format!("{r:.2}")),
                sig(-p.delta),
                if p.extrapolated { ", extrapolated beyond the dense sizes" } else { "" },
                if c.seeds < 2 { "; one seed, so no interval" } else { "" },
            ),
            None => format!(
                "<li>At equal <b>{}</b>, no compressed model beats the dense frontier.</li>",
                axis.name()
            ),
        });
    }
    let _ = writeln!(out, "<ul>{}</ul>", lines.join(""));
}

fn placements_table(out: &mut String, analysis: &CompressionAnalysis) {
    out.push_str("<p>Each compressed model against the frontier on each axis: Δ (nats; negative beats) with its 95% interval over seeds, the effective size ratio, and the verdict (<i>within noise</i>: the interval includes 0; <i>extr.</i>: cost or loss outside the dense sizes', read off the nearest segment).</p>\n");
    let _ = writeln!(
        out,
        "<table><tr><th>method</th><th>from</th><th>loss</th><th>seeds</th>{}</tr>",
        AXES.iter()
            .map(|a| format!("<th>{}: Δ, ratio, verdict</th>", a.name()))
            .collect::<String>()
    );
    for c in &analysis.compressed {
        out.push_str("<tr>");
        let _ = write!(
            out,
            "<td>{}{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&c.method),
            level_text(c.level),
            esc(&c.size),
            sig(c.loss),
            c.seeds
        );
        for &axis in &AXES {
            let cell = match c.placements.iter().find(|p| p.axis == axis) {
                Some(p) => format!(
                    "{:+.4} {} · {}× · {}{}",
                    p.delta,
                    if p.interval.is_some() {
                        interval_text(p.interval)
                    } else {
                        String::new()
                    },
                    p.ratio.map_or("—".into(), |r| format!("{r:.2}")),
                    p.verdict.name(),
                    if p.extrapolated { " (extr.)" } else { "" }
                ),
                None => "—".into(),
            };
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn penalty_section(
    out: &mut String,
    section: &mut usize,
    report: &CompressionStudyReport,
    analysis: &CompressionAnalysis,
) -> Result<(), ReportError> {
    let Some(method) = &report.penalty_method else {
        return Ok(());
    };
    heading(
        out,
        section,
        "Precision penalty against tokens per parameter",
    );
    let _ = writeln!(
        out,
        "<p>The loss each dense model loses to post-training <b>{}</b> quantisation, against the tokens it was trained on per (non-zero) parameter. Kumar et al. 2024 (\"Scaling Laws for Precision\") found this degradation grows with D/N: more data makes a model's weights harder to quantise.</p>",
        esc(method)
    );
    if analysis.penalty.is_empty() {
        out.push_str("<p>No quantised model yet.</p>\n");
        return Ok(());
    }
    let mut sizes: Vec<&str> = Vec::new();
    for p in &analysis.penalty {
        if !sizes.contains(&p.size.as_str()) {
            sizes.push(&p.size);
        }
    }
    let series = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| Series {
            label: (*size).to_string(),
            points: (analysis.penalty.iter())
                .filter(|p| p.size == *size)
                .map(|p| (p.tokens / p.n, p.penalty))
                .collect(),
            color: i,
            style: Style::LineMarkers,
        })
        .collect();
    figure(
        out,
        &Figure {
            title: format!("{method}: loss increase against D/N"),
            x_label: "training tokens per parameter (D/N)".into(),
            y_label: "loss increase (nats/token)".into(),
            x_log: true,
            y_log: false,
            series,
            bands: Vec::new(),
        },
        "One line a size: the same N at several D (where the study trains the compressed sizes at further budgets) shows the growth with data at fixed size; across sizes D/N and N change together.",
    )?;
    out.push_str("<table><tr><th>size</th><th>N</th><th>D</th><th>D/N</th><th>loss increase</th><th>seeds</th></tr>\n");
    for p in &analysis.penalty {
        table_row(
            out,
            [
                esc(&p.size),
                short(p.n),
                short(p.tokens),
                sig(p.tokens / p.n),
                format!("{:+.4}", p.penalty),
                p.seeds.to_string(),
            ],
        );
    }
    out.push_str("</table>\n");
    match &analysis.penalty_trend {
        Some(t) => {
            let _ = writeln!(
                out,
                "<p>At the fixed size {}, through its {} budgets, the penalty grows as D<sup>{:.2}</sup> (R² = {:.2}; a line in log-log through one size's budgets, not a fitted law with intervals).</p>",
                esc(&t.size), t.points, t.exponent, t.r2
            );
        }
        None => out.push_str(
            "<p>No size has three or more budgets with a positive penalty, so no growth with D is drawn (across sizes D/N and N change together).</p>\n",
        ),
    }
    Ok(())
}
