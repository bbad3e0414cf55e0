//! The report of a transfer study: the fine-tuned and from-scratch losses against the amount
//! of fine-tuning data (Hernandez et al. 2021's Figure 1), the effective data transferred
//! and its multiplier per cell, where training from scratch catches up ("ossification"),
//! the fitted laws of each method with their intervals, and the methods' costs side by side.

use std::fmt::Write as _;

use scalelab_analysis::Interval;
use scalelab_analysis::transfer::MultiplicativeLaw;
use scalelab_analysis::transfer_study::{MethodLaws, TransferAnalysis};

use crate::ReportError;
use crate::page::{esc, figure, heading, interval_text, page_start, sig, summary_table, table_row};
use crate::plot::{Figure, Series, Style};

/// A pre-training run, as the report lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainRow {
    /// Size name.
    pub size: String,
    /// N, in the study's convention.
    pub n: f64,
    /// Tokens of the pre-training corpus.
    pub tokens: u64,
    /// Its final validation loss on the pre-training corpus.
    pub loss: Option<f64>,
}

/// What the report shows besides the analysis.
#[derive(Debug, Clone, Default)]
pub struct TransferStudyReport {
    /// Study name.
    pub name: String,
    /// One line.
    pub description: String,
    /// The command that regenerates the page.
    pub command: String,
    /// The pre-training corpus, in words.
    pub pretrain_corpus: String,
    /// The target corpus, in words.
    pub finetune_corpus: String,
    /// What N means.
    pub convention: String,
    /// Runs recorded, and planned.
    pub runs: (usize, usize),
    /// Training FLOPs of the recorded runs.
    pub flops: f64,
    /// Their wall seconds.
    pub wall_secs: f64,
    /// The pre-training runs (seeds averaged).
    pub pretrain: Vec<PretrainRow>,
    /// Coverage of the intervals.
    pub level: f64,
}

/// Bytes in words.
fn bytes(b: Option<u64>) -> String {
    b.map_or("—".into(), |b| {
        let b = b as f64;
        if b >= 1e6 {
            format!("{:.2} MB", b / 1e6)
        } else {
            format!("{:.1} kB", b / 1e3)
        }
    })
}

fn value_with(v: f64, i: Option<Interval>) -> String {
    format!("{} {}", sig(v), interval_text(i))
}

/// Renders the study's page.
pub fn render_transfer_report(
    report: &TransferStudyReport,
    analysis: &TransferAnalysis,
) -> Result<String, ReportError> {
    let mut out = String::new();
    page_start(
        &mut out,
        &format!("{} — scalelab transfer study", report.name),
    );
    let _ = writeln!(
        out,
        "<h1>Transfer study: {}</h1><p>{}</p><p class=\"lead\">How much pre-training on {} is worth to a model that is then trained on {}: every size is pre-trained once, then fine-tuned on <i>D<sub>F</sub></i> tokens of the target corpus by each method, and also trained from scratch on it. The <b>effective data transferred</b> <i>D<sub>T</sub></i> is the from-scratch data of the same size that would have reached the fine-tuned loss, less <i>D<sub>F</sub></i> (Hernandez et al. 2021, \"Scaling Laws for Transfer\"). Losses are validation losses on held-out text of the target corpus, in nats per token; points with several seeds show their mean.</p>",
        esc(&report.name),
        esc(&report.description),
        esc(&report.pretrain_corpus),
        esc(&report.finetune_corpus),
    );
    summary_table(
        &mut out,
        &[
            (
                "runs",
                format!("{} recorded of {} planned", report.runs.0, report.runs.1),
            ),
            ("pre-training corpus", esc(&report.pretrain_corpus)),
            ("target corpus", esc(&report.finetune_corpus)),
            (
                "training compute",
                format!(
                    "{:.3e} FLOPs (exact count of the model's multiply-adds, × 3 for the backward pass)",
                    report.flops
                ),
            ),
            (
                "wall time",
                format!("{:.0} s of run time", report.wall_secs),
            ),
            ("N means", esc(&report.convention)),
            (
                "regenerate",
                format!("<code>{}</code>", esc(&report.command)),
            ),
        ],
    );
    let mut section = 0;
    if !report.pretrain.is_empty() {
        heading(&mut out, &mut section, "Pre-training");
        out.push_str("<table><tr><th>size</th><th>N</th><th>tokens</th><th>validation loss on the pre-training corpus</th></tr>\n");
        for p in &report.pretrain {
            table_row(
                &mut out,
                [
                    esc(&p.size),
                    sig(p.n),
                    p.tokens.to_string(),
                    p.loss.map_or("not yet".into(), sig),
                ],
            );
        }
        out.push_str("</table>\n");
    }
    let methods: Vec<&str> = analysis.laws.iter().map(|l| l.method.as_str()).collect();
    if !methods.is_empty() {
        heading(&mut out, &mut section, "Fine-tuned against from scratch");
        for method in &methods {
            let mut series = Vec::new();
            for (i, curve) in analysis.scratch.iter().enumerate() {
                if !curve.points.is_empty() {
                    series.push(Series {
                        label: format!("N = {} from scratch", crate::plot::short(curve.n)),
                        points: curve.points.clone(),
                        color: i,
                        style: Style::Dashed,
                    });
                }
                if let Some(s) =
                    (analysis.methods.iter()).find(|s| s.method == *method && s.size == curve.size)
                {
                    series.push(Series {
                        label: format!("N = {} {method}", crate::plot::short(curve.n)),
                        points: s.losses.clone(),
                        color: i,
                        style: Style::LineMarkers,
                    });
                }
            }
            figure(
                &mut out,
                &Figure {
                    title: format!("{method}: loss against target-corpus data"),
                    x_label: "tokens of the target corpus (D_F, or D from scratch)".into(),
                    y_label: "validation loss (nats/token)".into(),
                    x_log: true,
                    y_log: false,
                    series,
                    bands: Vec::new(),
                },
                &format!(
                    "Fine-tuned by <b>{}</b> (solid, markers) and trained from scratch (dashed), one colour a size. Where the dashed line lies above the solid one, pre-training helped; the horizontal distance between them at the fine-tuned loss is what D<sub>T</sub> measures.",
                    esc(method)
                ),
            )?;
        }
        effective_data_table(&mut out, &mut section, analysis);
        laws_section(&mut out, &mut section, analysis, report.level);
        methods_table(&mut out, &mut section, analysis);
    } else {
        out.push_str("<p>No fine-tuned run is recorded yet: run the study (the same command resumes it).</p>");
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

fn effective_data_table(out: &mut String, section: &mut usize, analysis: &TransferAnalysis) {
    heading(out, section, "Effective data transferred");
    out.push_str("<p>D<sub>E</sub> is read off the size's from-scratch curve (made monotone, interpolated in log space); the multiplier is (D<sub>F</sub> + D<sub>T</sub>)/D<sub>F</sub>. <i>extrapolated</i>: the fine-tuned loss lies outside the from-scratch losses measured, so D<sub>E</sub> is extended from the nearest segment and is a guess. <i>overtaken</i>: training from scratch on the same D<sub>F</sub> did at least as well.</p>\n");
    out.push_str("<table><tr><th>method</th><th>size</th><th>N</th><th>D<sub>F</sub></th><th>fine-tuned loss</th><th>from scratch on D<sub>F</sub></th><th>D<sub>E</sub></th><th>D<sub>T</sub></th><th>multiplier</th><th>notes</th></tr>\n");
    for c in &analysis.cells {
        let (d_e, d_t, m, mut notes) = match (&c.transferred, &c.no_transfer) {
            (Some(t), _) => (
                sig(t.d_e),
                sig(t.d_t),
                format!("{:.2}×", t.multiplier),
                if t.extrapolated {
                    vec!["extrapolated"]
                } else {
                    vec![]
                },
            ),
            (None, why) => (
                "—".into(),
                "—".into(),
                "—".into(),
                vec![why.as_deref().unwrap_or("")],
            ),
        };
        if c.overtaken {
            notes.push("overtaken");
        }
        table_row(
            out,
            [
                esc(&c.method),
                esc(&c.size),
                sig(c.n),
                sig(c.d_f),
                sig(c.loss),
                c.scratch_loss.map_or("—".into(), sig),
                d_e,
                d_t,
                m,
                esc(&notes.join("; ")),
            ],
        );
    }
    out.push_str("</table>\n");
}

fn laws_section(out: &mut String, section: &mut usize, analysis: &TransferAnalysis, level: f64) {
    heading(out, section, "The laws of transfer");
    let _ = writeln!(
        out,
        "<p><b>D<sub>T</sub> = k·D<sub>F</sub><sup>α</sup>·N<sup>β</sup></b>, fitted by least squares in log space to the cells with D<sub>T</sub> &gt; 0 (Hernandez et al. 2021 found α ≈ 0.18, β ≈ 0.38, k ≈ 1.9e4 for English text → Python with N counted without embeddings); and Zhang et al. 2024's <b>L = A·N<sup>−α</sup>·D<sub>F</sub><sup>−β</sup> + E</b> to the fine-tuned losses. Intervals: {:.0}% percentile bootstrap, cells resampled.</p>",
        level * 100.0
    );
    out.push_str(
        "<table><tr><th>method</th><th>law</th><th>constants [interval]</th><th>fit</th></tr>\n",
    );
    for MethodLaws {
        method,
        transfer,
        transfer_missing,
        multiplicative,
        multiplicative_missing,
    } in &analysis.laws
    {
        let t = match transfer {
            Some(l) => {
                let i = l.intervals;
                let beta = l
                    .beta
                    .map_or("— (one size)".into(), |b| value_with(b, i.beta));
                [
                    format!(
                        "k = {}, α = {}, β = {}",
                        value_with(l.k, i.k),
                        value_with(l.alpha, i.alpha),
                        beta
                    ),
                    format!(
                        "{} cells ({} with D<sub>T</sub> ≤ 0 left out), R² = {:.3}",
                        l.points, l.dropped, l.r2
                    ),
                ]
            }
            None => missing_fit(transfer_missing),
        };
        law_row(
            out,
            method,
            "D<sub>T</sub> = k·D<sub>F</sub><sup>α</sup>·N<sup>β</sup>",
            t,
        );
        let m = multiplicative_cells(multiplicative, multiplicative_missing, "one size");
        law_row(
            out,
            method,
            "L = A·N<sup>−α</sup>·D<sub>F</sub><sup>−β</sup> + E",
            m,
        );
    }
    for law in &analysis.rank_laws {
        let ranks: Vec<String> = law.ranks.iter().map(usize::to_string).collect();
        law_row(
            out,
            &format!("lora, N = {} (r = {})", sig(law.n), ranks.join(", ")),
            "L = A·r<sup>−α</sup>·D<sub>F</sub><sup>−β</sup> + E",
            multiplicative_cells(&law.law, &law.missing, "one rank"),
        );
    }
    out.push_str("</table>\n");
}

/// The constants and fit of Zhang et al.'s law (X a size or a rank; `one` says why α is
/// missing), or a dash and why it was not fitted.
fn multiplicative_cells(
    law: &Option<MultiplicativeLaw>,
    missing: &Option<String>,
    one: &str,
) -> [String; 2] {
    let Some(l) = law else {
        return missing_fit(missing);
    };
    let i = l.intervals;
    let alpha = l
        .alpha
        .map_or(format!("— ({one})"), |a| value_with(a, i.alpha));
    [
        format!(
            "A = {}, α = {}, β = {}, E = {}",
            value_with(l.a, i.a),
            alpha,
            value_with(l.beta, i.beta),
            value_with(l.e, i.e)
        ),
        format!(
            "{} cells, rms residual of ln L {:.4}{}",
            l.points,
            l.rms_log_residual,
            if l.e <= 1e-9 {
                "; E is at its bound of zero: these losses show no floor, so the \
                 law is a pure power law and A, α and β absorb what a floor would hold"
            } else {
                ""
            }
        ),
    ]
}

/// The cells of a law that was not fitted: a dash and why.
fn missing_fit(why: &Option<String>) -> [String; 2] {
    ["—".into(), esc(why.as_deref().unwrap_or("not fitted"))]
}

/// One row of the laws table: the method, the law (HTML), its constants and its fit.
fn law_row(out: &mut String, method: &str, law: &str, [constants, fit]: [String; 2]) {
    table_row(out, [esc(method), law.into(), constants, fit]);
}

fn methods_table(out: &mut String, section: &mut usize, analysis: &TransferAnalysis) {
    heading(out, section, "Methods compared");
    let mut d_fs: Vec<f64> = analysis.cells.iter().map(|c| c.d_f).collect();
    d_fs.sort_by(f64::total_cmp);
    d_fs.dedup();
    out.push_str("<p>Quality, what trains and what must be kept per adapted model, as PEFT's comparisons tabulate them: loss on the target corpus at each D<sub>F</sub>, parameters that trained, bytes kept per fine-tuned model (LoRA's adapters alone; the other methods keep every weight), the peak resident memory of the training process, and the least D<sub>F</sub> at which training from scratch did as well.</p>\n<table><tr><th>size</th><th>method</th>");
    for d in &d_fs {
        let _ = write!(out, "<th>loss at D<sub>F</sub> = {}</th>", sig(*d));
    }
    out.push_str(
        "<th>trains</th><th>keeps</th><th>peak memory</th><th>scratch catches up at</th></tr>\n",
    );
    let mut sizes: Vec<(&str, f64)> = (analysis.methods.iter())
        .map(|s| (s.size.as_str(), s.n))
        .collect();
    sizes.sort_by(|a, b| a.1.total_cmp(&b.1));
    sizes.dedup();
    for (size, _) in sizes {
        if let Some(curve) = analysis.scratch.iter().find(|c| c.size == size) {
            let _ = write!(out, "<tr><td>{}</td><td>from scratch</td>", esc(size));
            for d in &d_fs {
                let l = curve.points.iter().find(|p| p.0 == *d).map(|p| p.1);
                let _ = write!(out, "<td>{}</td>", l.map_or("—".into(), sig));
            }
            out.push_str("<td></td><td></td><td></td><td></td></tr>\n");
        }
        for s in analysis.methods.iter().filter(|s| s.size == size) {
            let best = |d: f64| {
                (analysis.methods.iter())
                    .filter(|o| o.size == size)
                    .filter_map(|o| o.losses.iter().find(|p| p.0 == d).map(|p| p.1))
                    .fold(f64::INFINITY, f64::min)
            };
            let _ = write!(out, "<tr><td>{}</td><td>{}</td>", esc(size), esc(&s.method));
            for d in &d_fs {
                let cell = match s.losses.iter().find(|p| p.0 == *d) {
                    Some(&(_, l)) if l == best(*d) => format!("<b>{}</b>", sig(l)),
                    Some(&(_, l)) => sig(l),
                    None => "—".into(),
                };
                let _ = write!(out, "<td>{cell}</td>");
            }
            let _ = writeln!(
                out,
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.trainable_params.map_or("—".into(), |p| p.to_string()),
                bytes(s.kept_bytes),
                bytes(s.peak_rss_bytes),
                s.overtaken_at
                    .map_or("not within the D<sub>F</sub> trained".into(), sig),
            );
        }
    }
    out.push_str("</table>\n");
}
