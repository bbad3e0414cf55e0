//! The study report: one self-contained HTML page (inline SVG, inline CSS, no scripts) that
//! someone who has never seen scalelab can read: what was trained, how loss fell with model
//! size and compute, the fitted laws with their intervals, and whether the laws predicted
//! the largest runs.

use std::fmt::Write;

use scalelab_analysis::compute_optimal::ComputeOptimal;
use scalelab_analysis::{Constant, LawFit};
use scalelab_spec::{RunState, StoredCurvePoint, StoredRun};

use crate::AbilityAnalysis;
use crate::abilities::render_abilities;
use crate::{ReportError, StudyAnalysis};
/// What would pin a poorly constrained language-model law down.
const LM_REMEDY: &str = "More sizes, more budgets per size (approach 3 needs at least three) or more seeds would pin it down.";

use crate::page::{
    constants_table, esc, figure, heading, interval_text, page_start, sig, summary_table,
};
use crate::plot::{Band, Figure, Series, Style, short};

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// Study name.
    pub name: String,
    /// Study description.
    pub description: String,
    /// The study file as written.
    pub spec_toml: String,
    /// The command that regenerates the page.
    pub command: String,
    /// Every run.
    pub runs: Vec<StoredRun>,
    /// Each run's curve, in the order of `runs`.
    pub curves: Vec<Vec<StoredCurvePoint>>,
    /// The fits.
    pub analysis: StudyAnalysis,
    /// The FLOP convention, in words.
    pub flops_convention: String,
    /// Task evaluations and emergence verdicts, for studies with a task.
    pub abilities: Option<AbilityAnalysis>,
}

/// The dashed line of a fitted `L = E + A·X^-α` over `range` (log-spaced), and its bootstrap
/// band when the fit has replicates; `colors` are the line's and the band's.
fn power_law_curve(
    fit: &LawFit,
    axis: &str,
    range: (f64, f64),
    level: f64,
    colors: (usize, usize),
) -> (Series, Option<Band>) {
    let grid = log_grid(range.0, range.1, 60);
    let line = Series {
        label: format!(
            "fit: L = {} + {}·{axis}^-{}",
            sig(fit.get("E").unwrap_or(f64::NAN)),
            sig(fit.get("A").unwrap_or(f64::NAN)),
            sig(fit.get("alpha").unwrap_or(f64::NAN))
        ),
        points: grid.iter().map(|&x| (x, fit.predict(x, 0.0))).collect(),
        color: colors.0,
        style: Style::Dashed,
    };
    let rows: Vec<(f64, f64, f64)> = grid
        .iter()
        .filter_map(|&x| fit.band(x, 0.0, level).map(|i| (x, i.lo, i.hi)))
        .collect();
    let band = (!rows.is_empty()).then(|| Band {
        label: format!("{:.0}% band", level * 100.0),
        rows,
        color: colors.1,
    });
    (line, band)
}

fn log_grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (n - 1) as f64).exp())
        .collect()
}

/// Size labels in order of N, so each size keeps one colour across figures.
fn size_index(runs: &[StoredRun]) -> Vec<(String, f64)> {
    let mut sizes: Vec<(String, f64)> = Vec::new();
    for r in runs {
        if !sizes.iter().any(|s| s.0 == r.size) {
            sizes.push((r.size.clone(), r.n));
        }
    }
    sizes.sort_by(|a, b| a.1.total_cmp(&b.1));
    sizes
}

/// Renders the report page.
pub fn render_html(input: &ReportInput) -> Result<String, ReportError> {
    let a = &input.analysis;
    let level = if a.level > 0.0 { a.level } else { 0.95 };
    let mut out = String::new();
    let mut section = 0;
    page_start(&mut out, &format!("{} — scalelab study", input.name));
    let done: Vec<&StoredRun> = input
        .runs
        .iter()
        .filter(|r| r.status == RunState::Completed)
        .collect();
    let count = |s: RunState| input.runs.iter().filter(|r| r.status == s).count();
    let total_flops: f64 = done.iter().map(|r| r.train_flops).sum();
    let wall: f64 = input.runs.iter().map(|r| r.wall_secs).sum();
    let convention = input
        .runs
        .first()
        .map_or("total".to_string(), |r| r.param_convention.clone());
    let _ = writeln!(
        out,
        "<h1>Scaling study: {}</h1><p>{}</p>",
        esc(&input.name),
        esc(&input.description)
    );
    let _ = writeln!(
        out,
        "<p class=\"lead\">This page shows how the validation loss of a family of language models falls as the models get bigger (more parameters, <i>N</i>) and as they are trained with more compute (<i>C</i>, training FLOPs). Loss is cross-entropy on held-out text in nats per token (a token is one byte with the byte tokenizer; the runs table also gives bits per byte); lower is better. A <i>scaling law</i> is a formula fitted to these points, such as L = E + A·N<sup>−α</sup>: E is the loss no model size removes, α how fast loss falls with size. Shaded bands and bracketed ranges are {:.0}% bootstrap intervals: refitting on resampled runs moves the law within them.</p>",
        level * 100.0
    );
    if let Some(abilities) = &input.abilities {
        let _ = writeln!(
            out,
            "<p class=\"note\">This study trains on a task ({}). Where it trains on the task alone, the \"validation loss\" below is the cross-entropy of the answer tokens of the task's held-out examples, not of text; the sections on abilities show what the models can do.</p>",
            esc(&abilities.task)
        );
    }
    let runs = format!(
        "{} completed, {} diverged, {} failed, {} not yet run",
        count(RunState::Completed),
        count(RunState::Diverged),
        count(RunState::Failed),
        count(RunState::Planned) + count(RunState::Interrupted),
    );
    summary_table(
        &mut out,
        &[
            ("runs", runs),
            (
                "training compute",
                format!("{total_flops:.3e} FLOPs ({})", esc(&input.flops_convention)),
            ),
            ("wall time", format!("{wall:.0} s of run time in total")),
            ("N means", format!("{} parameters", esc(&convention))),
            (
                "regenerate",
                format!("<code>{}</code>", esc(&input.command)),
            ),
        ],
    );
    for note in &a.notes {
        let _ = writeln!(out, "<p class=\"note\">Note: {}</p>", esc(note));
    }

    let sizes = size_index(&input.runs);
    let color_of = |size: &str| sizes.iter().position(|s| s.0 == size).unwrap_or(0);

    // 1. Loss against tokens, every run.
    let series = loss_curves(
        input,
        |p| p.tokens as f64,
        |run| format!("{} (N = {})", run.size, short(run.n)),
        &color_of,
        Style::LineMarkers,
    );
    if !series.is_empty() {
        heading(&mut out, &mut section, "Learning curves");
        figure(
            &mut out,
            &Figure {
                title: "validation loss against training tokens".into(),
                x_label: "training tokens D".into(),
                y_label: "validation loss (nats/token)".into(),
                x_log: true,
                y_log: false,
                series,
                bands: vec![],
            },
            "Every run's validation loss as it trained, one colour per model size. Bigger models learn more from the same tokens when the lines separate downwards.",
        )?;
    }

    // Abilities on the study's task, when it has one.
    if let Some(abilities) = &input.abilities {
        render_abilities(&mut out, &mut section, abilities, &color_of)?;
    }

    // 2. Loss against N.
    if !a.loss_vs_n_points.is_empty() {
        heading(&mut out, &mut section, "Loss against model size");
        let mut series = vec![Series {
            label: "final loss of each run".into(),
            points: a.loss_vs_n_points.clone(),
            color: 0,
            style: Style::Markers,
        }];
        let mut bands = vec![];
        if let Some(fit) = &a.loss_vs_n {
            let lo = a
                .loss_vs_n_points
                .iter()
                .map(|p| p.0)
                .fold(f64::INFINITY, f64::min);
            let hi = a.loss_vs_n_points.iter().map(|p| p.0).fold(0.0, f64::max);
            let (line, band) = power_law_curve(fit, "N", (lo / 1.5, hi * 3.0), level, (1, 1));
            series.push(line);
            bands.extend(band);
        }
        figure(
            &mut out,
            &Figure {
                title: "final validation loss against parameters".into(),
                x_label: format!("parameters N ({convention})"),
                y_label: "validation loss (nats/token)".into(),
                x_log: true,
                y_log: true,
                series,
                bands,
            },
            "Each point is one finished run (the largest budget of each size). The dashed line is the fitted power law with an irreducible term, extended to three times the largest model; the band shows how uncertain it is. A straight-ish line on these log axes is a power law.",
        )?;
        if let Some(fit) = &a.loss_vs_n {
            fitted_law(&mut out, "Fitted law", "N", fit, level);
        }
    }

    // 3. Loss against compute, with the frontier.
    if let Some(f) = &a.frontier {
        heading(&mut out, &mut section, "Loss against compute");
        let mut series = loss_curves(
            input,
            |p| p.flops,
            |run| run.size.clone(),
            &color_of,
            Style::Line,
        );
        let front = &f.frontier;
        series.push(Series {
            label: "compute-efficient frontier".into(),
            points: front.iter().map(|p| (p.flops, p.loss)).collect(),
            color: 7,
            style: Style::Markers,
        });
        let mut bands = vec![];
        if let Some(fit) = &f.loss_fit {
            let lo = front.iter().map(|p| p.flops).fold(f64::INFINITY, f64::min);
            let hi = front.iter().map(|p| p.flops).fold(0.0, f64::max);
            let (line, band) = power_law_curve(fit, "C", (lo, hi * 3.0), level, (7, 6));
            series.push(line);
            bands.extend(band);
        }
        figure(
            &mut out,
            &Figure {
                title: "validation loss against training compute".into(),
                x_label: "training FLOPs C".into(),
                y_label: "validation loss (nats/token)".into(),
                x_log: true,
                y_log: true,
                series,
                bands,
            },
            "Each line is one run's loss as its compute grew. The black points form the compute-efficient frontier: the lowest loss any run reached for that much compute. Where a bigger model's line crosses below a smaller one's, spending compute on size starts to pay (Chinchilla approach 1). Points in the middle of a run sit above what a run of that length would reach, because its learning rate had not yet decayed.",
        )?;
        if let Some(fit) = &f.loss_fit {
            fitted_law(&mut out, "Frontier law", "C", fit, level);
        }
        // An IsoFLOP study's approach 1 is in the three-ways section, between its budgets.
        if let (Some(n), Some(d), true) = (&f.n_opt, &f.d_opt, a.compute_optimal.is_empty()) {
            let _ = writeln!(
                out,
                "<p>Approach 1 (best run at {} log-spaced budgets): N<sub>opt</sub> ∝ C<sup>{}</sup>, D<sub>opt</sub> ∝ C<sup>{}</sup>. Chinchilla found about 0.5 for both. With few sizes the best run changes in steps, so treat these exponents as rough.</p>",
                f.samples.len(),
                sig(n.slope),
                sig(d.slope)
            );
        }
    }

    // 4. IsoFLOP profiles and the compute-optimal answer.
    if let Some(co) = a.compute_optimal.first() {
        compute_optimal_sections(&mut out, &mut section, co, &a.compute_optimal, level)?;
    } else {
        let _ = writeln!(
            out,
            "<p class=\"small\">No IsoFLOP profiles (Chinchilla approach 2): they need runs trained to fixed FLOP budgets, which a study asks for with <code>budget.flops</code> (see examples/quickstart.toml).</p>"
        );
    }

    // 5. The parametric law and compute-optimal allocation.
    if let Some(fit) = &a.chinchilla {
        section += 1;
        let _ = writeln!(
            out,
            "<h2>{}. Parametric law L(N, D)</h2><p><code>{}</code>, fitted as Hoffmann et al. 2022 (approach 3): Huber loss on log-loss, L-BFGS from a grid of starts. a = β/(α+β) and b = α/(α+β) are the exponents of N<sub>opt</sub> and D<sub>opt</sub> in C when C = 6ND{}. Chinchilla: E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28.</p>",
            section,
            esc(fit.law.formula()),
            if a.compute_optimal.is_empty() {
                ""
            } else {
                " (this study's runs spend C = κ·N<sup>γ</sup>·D, and its exponents along that line are those of approach 3 above; D here is the data-constrained D′ where runs repeated data)"
            }
        );
        constants_table(&mut out, fit, level, LM_REMEDY);
    }
    if !a.allocations.is_empty() {
        let shaky = a
            .chinchilla
            .as_ref()
            .is_some_and(|f| !f.cautions().is_empty());
        let _ = writeln!(
            out,
            "<h3>Compute-optimal allocation</h3>{}",
            if shaky {
                "<p class=\"caution\">These allocations come from the poorly constrained fit above: do not plan a run with them.</p>"
            } else {
                ""
            }
        );
        if let Some(m) = &a.flop_model {
            let _ = writeln!(
                out,
                "<p>Along the study's own FLOP line C = {}·N<sup>{}</sup>·D (fitted to its sizes; Hoffmann et al. use 6·N·D), with {:.0}% bootstrap intervals. Reproduce: <code>scalelab plan --study DIR --flops C</code>.</p>",
                sig(m.kappa),
                sig(m.gamma),
                level * 100.0
            );
        }
        let _ = writeln!(
            out,
            "<table><tr><th>budget C (FLOPs)</th><th>N<sub>opt</sub></th><th>D<sub>opt</sub> (tokens)</th><th>tokens per parameter</th><th>predicted loss</th></tr>"
        );
        for p in &a.allocations {
            let x = &p.best;
            let beyond = a.unique_tokens.is_some_and(|u| x.d_opt > u);
            let _ = writeln!(
                out,
                "<tr><td>{:.1e}</td><td>{} {}</td><td>{} {}{}</td><td>{} {}</td><td>{} {}</td></tr>",
                x.flops,
                sig(x.n_opt),
                interval_text(p.n_opt),
                sig(x.d_opt),
                interval_text(p.d_opt),
                if beyond {
                    " (more than the corpus holds)"
                } else {
                    ""
                },
                sig(x.tokens_per_param),
                interval_text(p.tokens_per_param),
                sig(x.loss),
                interval_text(p.loss)
            );
        }
        let _ = writeln!(out, "</table>");
    }

    // 6. Extrapolation.
    if let Some(x) = &a.extrapolation {
        heading(
            &mut out,
            &mut section,
            "Does the law predict the largest runs?",
        );
        let pts: Vec<(f64, f64)> = x
            .predictions
            .iter()
            .map(|p| (p.actual, p.predicted))
            .collect();
        let lo = pts
            .iter()
            .flat_map(|p| [p.0, p.1])
            .fold(f64::INFINITY, f64::min);
        let hi = pts.iter().flat_map(|p| [p.0, p.1]).fold(0.0, f64::max);
        figure(
            &mut out,
            &Figure {
                title: "predicted against measured loss of held-out runs".into(),
                x_label: "measured loss".into(),
                y_label: "predicted loss".into(),
                x_log: false,
                y_log: false,
                series: vec![
                    Series {
                        label: "perfect prediction".into(),
                        points: vec![(lo * 0.98, lo * 0.98), (hi * 1.02, hi * 1.02)],
                        color: 6,
                        style: Style::Dashed,
                    },
                    Series {
                        label: "held-out runs".into(),
                        points: pts,
                        color: 1,
                        style: Style::Markers,
                    },
                ],
                bands: vec![],
            },
            &format!(
                "The law was refitted without the largest {} size(s) (N = {}) and asked to predict them. Points on the dashed line are perfect predictions. Mean absolute error {:.2}%, worst {:.2}%.",
                x.held_out_sizes.len(),
                x.held_out_sizes
                    .iter()
                    .map(|n| short(*n))
                    .collect::<Vec<_>>()
                    .join(", "),
                100.0 * x.mean_abs_rel_error,
                100.0 * x.max_abs_rel_error
            ),
        )?;
    }

    // 7. Runs.
    let _ = writeln!(
        out,
        "<h2>Runs</h2><table><tr><th>run</th><th>size</th><th>layers × width</th><th>N total</th><th>N non-emb.</th><th>tokens</th><th>FLOPs</th><th>seed</th><th>status</th><th>final loss</th><th>bits/byte</th><th>wall s</th></tr>"
    );
    for r in &input.runs {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{} × {}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2e}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
            esc(&r.run_id),
            esc(&r.size),
            r.n_layers,
            r.d_model,
            r.params_total,
            r.params_non_embedding,
            r.tokens_seen.max(r.planned_tokens),
            r.train_flops.max(r.planned_flops),
            r.seed,
            r.status.name(),
            r.final_val_loss.map_or("—".into(), |v| format!("{v:.4}")),
            r.final_val_bpb.map_or("—".into(), |v| format!("{v:.4}")),
            r.wall_secs
        );
    }
    let _ = writeln!(
        out,
        "</table><h2>Study file</h2><pre>{}</pre><p class=\"small\">Written by scalelab. Every number on this page comes from the study's SQLite store; export it with <code>scalelab study export</code>.</p></body></html>",
        esc(&input.spec_toml)
    );
    Ok(out)
}

fn approach_row(out: &mut String, name: &str, a: &Constant, b: &Constant, cautions: &[String]) {
    let _ = writeln!(
        out,
        "<tr><td>{name}</td><td>{} {}</td><td>{} {}</td><td>{}</td></tr>",
        sig(a.value),
        interval_text(a.interval),
        sig(b.value),
        interval_text(b.interval),
        if cautions.is_empty() {
            "none".to_string()
        } else {
            cautions
                .iter()
                .map(|c| esc(c))
                .collect::<Vec<_>>()
                .join("<br>")
        }
    );
}

/// The IsoFLOP profiles, the three approaches side by side, the held-out budget, and the
/// exponents with N counted both ways.
fn compute_optimal_sections(
    out: &mut String,
    section: &mut usize,
    co: &ComputeOptimal,
    all: &[ComputeOptimal],
    level: f64,
) -> Result<(), ReportError> {
    let convention = &co.param_convention;
    if let Some(a2) = &co.approach2 {
        heading(out, section, "IsoFLOP profiles");
        let mut series = Vec::new();
        for (k, c) in a2.detail.curves.iter().enumerate() {
            let pts = c.points.clone();
            if pts.is_empty() {
                continue;
            }
            let held = co.held_out.as_ref().is_some_and(|h| h.budget == c.flops);
            series.push(Series {
                label: format!(
                    "C = {:.1e}{}",
                    c.flops,
                    if held { " (held out)" } else { "" }
                ),
                points: pts,
                color: k,
                style: Style::Markers,
            });
            if let Some(q) = c.coeffs {
                series.push(Series {
                    label: String::new(),
                    points: log_grid(c.n_range.0, c.n_range.1, 40)
                        .into_iter()
                        .map(|n| (n, q[0] + q[1] * n.ln() + q[2] * n.ln().powi(2)))
                        .collect(),
                    color: k,
                    style: Style::Dashed,
                });
            }
        }
        if !series.is_empty() {
            figure(
                out,
                &Figure {
                    title: "final loss against N at fixed compute".into(),
                    x_label: format!("parameters N ({convention})"),
                    y_label: "validation loss (nats/token)".into(),
                    x_log: true,
                    y_log: false,
                    series,
                    bands: vec![],
                },
                "Each colour is one compute budget: every model there was trained on exactly that many FLOPs, so small models saw many tokens and large ones few. The dashed parabola's lowest point is the compute-optimal size for that budget (Chinchilla approach 2).",
            )?;
        }
        let _ = writeln!(
            out,
            "<table><tr><th>budget C</th><th>sizes</th><th>N<sub>opt</sub> [{:.0}%]</th><th>D<sub>opt</sub></th><th>loss at optimum</th><th>parabola rms residual</th><th>note</th></tr>",
            level * 100.0
        );
        for c in &a2.detail.curves {
            let sizes = c.points.len();
            let _ = writeln!(
                out,
                "<tr><td>{:.2e}</td><td>{sizes}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.flops,
                c.n_opt.map_or("—".into(), sig),
                interval_text(c.n_opt_interval),
                c.d_opt.map_or("—".into(), sig),
                c.loss_opt.map_or("—".into(), sig),
                sig(c.rms_residual),
                esc(&c.note.clone().unwrap_or_else(|| {
                    if c.inside {
                        String::new()
                    } else {
                        "optimum outside the sizes trained (extrapolated)".into()
                    }
                }))
            );
        }
        let _ = writeln!(out, "</table>");
    }

    heading(out, section, "The compute-optimal answer, three ways");
    let _ = writeln!(
        out,
        "<p>N<sub>opt</sub> ∝ C<sup>a</sup> and D<sub>opt</sub> ∝ C<sup>b</sup> from the three approaches of Hoffmann et al. 2022 (their values: a ≈ 0.50, 0.49, 0.46; b ≈ 0.50, 0.51, 0.54), N counted as <b>{}</b>, {:.0}% bootstrap intervals from {} replicates. Approach 3's exponents are taken along the study's FLOP line C = {}·N<sup>{}</sup>·D: a = β/(α+γβ), b = α/(α+γβ), which are β/(α+β) and α/(α+β) when γ = 1.</p>",
        esc(convention),
        level * 100.0,
        co.bootstrap,
        sig(co.flop_model.kappa),
        sig(co.flop_model.gamma)
    );
    let _ = writeln!(
        out,
        "<table><tr><th>approach</th><th>a</th><th>b</th><th>cautions</th></tr>"
    );
    if let Some(x) = &co.approach1 {
        approach_row(
            out,
            "1: frontier of every run's curve",
            &x.a,
            &x.b,
            &x.cautions,
        );
    }
    if let Some(x) = &co.approach2 {
        approach_row(out, "2: IsoFLOP parabolas", &x.a, &x.b, &x.cautions);
    }
    if let Some(x) = &co.approach3 {
        approach_row(
            out,
            "3: L(N, D) = E + A/N^α + B/D^β",
            &x.a,
            &x.b,
            &x.cautions,
        );
    }
    let _ = writeln!(out, "</table>");
    let _ = writeln!(
        out,
        "<p><b>Consistency.</b> {}</p>",
        esc(&co.consistency.summary)
    );
    let _ = writeln!(
        out,
        "<p class=\"small\">Bootstrap schemes: {}.</p>",
        co.bootstrap_schemes
            .iter()
            .map(|(k, s)| format!("approach {k}: {}", esc(s)))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if let (Some(u), Some(e)) = (co.unique_tokens, co.max_epochs) {
        let constrained = co.approach3.as_ref().is_some_and(|x| x.data_constrained);
        let _ = writeln!(
            out,
            "<p>Data: the corpus's training split holds {} distinct tokens; the most any run saw is {:.2} passes over it. {}</p>",
            sig(u),
            e,
            if constrained {
                "Some runs repeated data, so approach 3 is fitted to the data-constrained effective tokens D′ = U + U·R*·(1 − e<sup>−R/R*</sup>) (Muennighoff et al. 2023, R* = 15.4) rather than to D."
            } else {
                "No run repeated data."
            }
        );
    }
    for n in &co.notes {
        let _ = writeln!(out, "<p class=\"small\">{}</p>", esc(n));
    }

    if let Some(h) = &co.held_out {
        heading(out, section, "A prediction to check: the held-out budget");
        let _ = writeln!(
            out,
            "<p>Approaches 2 and 3 were fitted again without the {} runs at the largest budget, C = {:.2e}, and predicted its optimum.</p>",
            h.runs, h.budget
        );
        let _ = writeln!(
            out,
            "<table><tr><th></th><th>predicted</th><th>measured</th></tr>\
             <tr><td>N<sub>opt</sub> (approach 3)</td><td>{} {}</td><td rowspan=\"2\">{} (the held-out profile's own parabola); best run N = {}</td></tr>\
             <tr><td>N<sub>opt</sub> (approach 2)</td><td>{} {}</td></tr>\
             <tr><td>loss at the optimum (approach 3)</td><td>{} {}</td><td>{} (best run)</td></tr></table>",
            h.predicted_n_opt.map_or("—".into(), sig),
            interval_text(h.predicted_n_opt_interval),
            h.measured_n_opt.map_or("—".into(), sig),
            sig(h.measured_best_n),
            h.predicted_n_opt_approach2.map_or("—".into(), sig),
            interval_text(h.predicted_n_opt_approach2_interval),
            h.predicted_loss.map_or("—".into(), sig),
            interval_text(h.predicted_loss_interval),
            sig(h.measured_loss)
        );
        if let Some(e) = h.relative_error {
            let _ = writeln!(
                out,
                "<p>The predicted loss is {:.2}% {} the best measured one.</p>",
                100.0 * e.abs(),
                if e < 0.0 { "below" } else { "above" }
            );
        }
    }

    if all.len() > 1 {
        heading(out, section, "Kaplan or Chinchilla? N counted two ways");
        let _ = writeln!(
            out,
            "<p>Kaplan et al. 2020 counted N without embeddings and found N<sub>opt</sub> ∝ C<sup>0.73</sup>; Hoffmann et al. 2022 counted every parameter and found about 0.5. Pearce &amp; Song 2024 and Porian et al. 2024 trace most of the gap to that choice and to small-scale settings: at small N the embeddings are a large share of the parameters but cost almost no FLOPs. The same runs, analysed both ways:</p>"
        );
        let _ = writeln!(
            out,
            "<table><tr><th>N counted as</th><th>FLOPs per token ∝ N<sup>γ</sup></th><th>approach 1 a</th><th>approach 2 a</th><th>approach 3 a</th></tr>"
        );
        for c in all {
            let cell = |x: Option<&Constant>| {
                x.map_or("—".into(), |x| {
                    format!("{} {}", sig(x.value), interval_text(x.interval))
                })
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>γ = {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.param_convention),
                sig(c.flop_model.gamma),
                cell(c.approach1.as_ref().map(|x| &x.a)),
                cell(c.approach2.as_ref().map(|x| &x.a)),
                cell(c.approach3.as_ref().map(|x| &x.a)),
            );
        }
        let _ = writeln!(out, "</table>");
    }
    Ok(())
}

/// A language-model law `fit` against `x`, named `what`, and its constants with their
/// intervals at `level`.
fn fitted_law(out: &mut String, what: &str, x: &str, fit: &LawFit, level: f64) {
    let _ = writeln!(
        out,
        "<p>{what}: <code>{}</code> with X = {x}.</p>",
        esc(fit.law.formula())
    );
    constants_table(out, fit, level, LM_REMEDY);
}

/// A line per run of its validation loss against `x` at every evaluation with `x > 0`, the
/// first run of each size named in the legend by `name`.
fn loss_curves(
    input: &ReportInput,
    x: impl Fn(&StoredCurvePoint) -> f64,
    name: impl Fn(&StoredRun) -> String,
    color_of: &dyn Fn(&str) -> usize,
    style: Style,
) -> Vec<Series> {
    let mut series = Vec::new();
    let mut labelled = Vec::new();
    for (run, curve) in input.runs.iter().zip(&input.curves) {
        let points: Vec<(f64, f64)> = curve
            .iter()
            .map(|p| (x(p), p.val_loss))
            .filter(|&(x, _)| x > 0.0)
            .collect();
        if points.is_empty() {
            continue;
        }
        let label = if labelled.contains(&run.size) {
            String::new()
        } else {
            labelled.push(run.size.clone());
            name(run)
        };
        series.push(Series {
            label,
            points,
            color: color_of(&run.size),
            style,
        });
    }
    series
}
