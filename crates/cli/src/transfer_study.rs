//! `scalelab study plan|run|report` for a transfer study (a file with `[pretrain]` and
//! `[finetune]`): the plan and the runner are the sweep crate's, the analysis the analysis
//! crate's, the page the report crate's; this module joins the stored runs to their roles.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use scalelab_analysis::summary::mean_by;
use scalelab_analysis::transfer_study::{TransferAnalysis, TransferRow, analyse_transfer};
use scalelab_report::{PretrainRow, TransferStudyReport, render_transfer_report};
use scalelab_spec::{DataSpec, Named, RunStatus, TransferMethod, TransferStudySpec};
use scalelab_sweep::{RunState, Store, TransferPlan, TransferRole, plan_transfer_study};
use serde_json::json;

use crate::args::{StudyFileArgs, StudyRunArgs};
use crate::study::{StudyKind, default_jobs, rate_estimate, run_exit, run_planned, study_name};
use crate::{human, write_text};

/// The study file, read and checked, its text, and its directory.
pub(crate) fn load(file: &Path, dir: Option<&Path>) -> Result<(TransferPlan, String, PathBuf)> {
    let (spec, text, dir) = crate::study::read_study::<TransferStudySpec>(file, dir, |s| &s.name)?;
    let plan = plan_transfer_study(&spec, &dir, file)?;
    Ok((plan, text, dir))
}

/// `scalelab study plan` of a transfer study.
pub(crate) fn study_plan(args: &StudyFileArgs) -> Result<ExitCode> {
    let (plan, _, dir) = load(&args.file, args.dir.as_deref())?;
    crate::study::write_plan(&plan.spec.name, &dir, &plan)?;
    let (rate, source) = rate_estimate(&dir);
    let jobs = default_jobs();
    let serial: f64 = plan.runs.iter().map(|r| r.run.flops / rate).sum();
    if args.json {
        let runs: Vec<serde_json::Value> = (plan.runs.iter())
            .map(|r| {
                json!({
                    "run_id": r.run.run_id, "size": r.run.size, "seed": r.run.seed,
                    "role": r.role.name(), "parent": r.parent, "params": r.run.params,
                    "N": r.run.n, "tokens": r.run.tokens, "flops": r.run.flops,
                    "estimated_secs": r.run.flops / rate,
                })
            })
            .collect();
        let value = json!({
            "study": plan.spec.name, "kind": "transfer", "dir": dir,
            "param_convention": plan.spec.param_convention.name(), "runs": runs,
            "total_flops": plan.total_flops(), "flops_per_sec_per_run": rate,
            "rate_source": source, "jobs": jobs,
            "estimated_wall_secs": serial / jobs as f64,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "transfer study {} ({} runs) -> {}",
        plan.spec.name,
        plan.runs.len(),
        dir.display()
    );
    println!(
        "{:<16} {:<12} {:<9} {:>4} {:>10} {:>10} {:>10} {:>8} {:<16}",
        "run", "size", "role", "seed", "N", "tokens", "FLOPs", "est. s", "starts from"
    );
    for r in &plan.runs {
        println!(
            "{:<16} {:<12} {:<9} {:>4} {:>10} {:>10} {:>10.3e} {:>8.0} {:<16}",
            r.run.run_id,
            r.run.size,
            r.role.name(),
            r.run.seed,
            human(r.run.n),
            human(r.run.tokens as f64),
            r.run.flops,
            r.run.flops / rate,
            r.parent.as_deref().unwrap_or("")
        );
    }
    println!(
        "total {:.3e} FLOPs; about {:.0} s on {jobs} parallel runs at {} FLOP/s each ({source}); fine-tuning runs start once their parent is trained",
        plan.total_flops(),
        serial / jobs as f64,
        human(rate)
    );
    Ok(ExitCode::SUCCESS)
}

/// `scalelab study run` of a transfer study.
pub(crate) fn study_run(args: &StudyRunArgs) -> Result<ExitCode> {
    let (plan, text, dir) = load(&args.file, args.dir.as_deref())?;
    // A missing target corpus would fail every run after the pre-training: say so first.
    for (key, data) in [
        ("pretrain.data", &plan.spec.pretrain.data),
        ("finetune.data", &plan.spec.finetune.data),
    ] {
        if let Some(path) = &data.path
            && !Path::new(path).exists()
        {
            anyhow::bail!(
                "{}: {key}.path = {path:?} does not exist\nhint: fetch it first (e.g. `scripts/fetch-data.sh python` for data/python), or point {key}.path at a directory of text files",
                args.file.display()
            );
        }
    }
    let context = (plan.spec.name.as_str(), text.as_str(), dir.as_path());
    let (summary, store) = run_planned(args, StudyKind::Transfer, &plan, plan.runs.len(), context)?;
    if !args.no_report && store.is_some() {
        let path = study_report(&dir, None, false)?;
        println!("{}", path.display());
    }
    Ok(run_exit(&summary))
}

/// The plan of the study stored in `dir` (from the study file its store keeps).
fn stored_plan(store: &Store, dir: &Path) -> Result<TransferPlan> {
    let spec: TransferStudySpec = crate::study::stored_spec(store, dir)?;
    Ok(plan_transfer_study(&spec, dir, &dir.join("study.toml"))?)
}

/// The analysis of the transfer study in `dir`, with what the report shows besides it.
fn analyse(dir: &Path) -> Result<(TransferAnalysis, TransferStudyReport)> {
    let store = Store::open(dir)?;
    let plan = stored_plan(&store, dir)?;
    let spec = &plan.spec;
    let stored = store.runs()?;
    // With several LoRA ranks each is a method of its own.
    let several_ranks = spec.lora_ranks().len() > 1;
    let mut rows = Vec::new();
    // Pre-training losses as (size, N, loss), averaged over seeds below.
    let mut pretrain_losses: Vec<(String, f64, f64)> = Vec::new();
    for s in &stored {
        let Some(planned) = plan.get(&s.run_id) else {
            continue;
        };
        let loss = s.final_val_loss.filter(|l| l.is_finite() && *l > 0.0);
        if planned.role == TransferRole::Pretrain {
            if let Some(loss) = loss {
                pretrain_losses.push((planned.run.size.clone(), planned.run.n, loss));
            }
            continue;
        }
        let (Some(loss), RunState::Completed) = (loss, s.status) else {
            continue;
        };
        let adaptation = match store.run_record(&s.run_id)? {
            Some(record) if record.status == RunStatus::Completed => record.adaptation,
            _ => None,
        };
        let method = match planned.role {
            TransferRole::Finetune(m) => Some(m),
            _ => None,
        };
        let lora_rank =
            (method == Some(TransferMethod::Lora)).then_some(planned.run.spec.init.lora_rank);
        rows.push(TransferRow {
            size: planned.run.size.clone(),
            n: planned.run.n,
            method: method.map(|m| match lora_rank {
                Some(r) if several_ranks => format!("{m} r={r}"),
                _ => m.name().to_string(),
            }),
            lora_rank,
            tokens: planned.run.tokens as f64,
            loss,
            trainable_params: adaptation.as_ref().map(|a| a.trainable_params),
            kept_bytes: adaptation.as_ref().map(|a| match method {
                Some(TransferMethod::Lora) => a.adapter_bytes.unwrap_or(a.weights_bytes),
                _ => a.weights_bytes,
            }),
            peak_rss_bytes: adaptation.as_ref().map(|a| a.peak_rss_bytes),
        });
    }
    let means = mean_by(&pretrain_losses);
    let mut pretrain: Vec<PretrainRow> = Vec::new();
    for r in plan
        .runs
        .iter()
        .filter(|r| r.role == TransferRole::Pretrain)
    {
        if !pretrain.iter().any(|p| p.size == r.run.size) {
            pretrain.push(PretrainRow {
                size: r.run.size.clone(),
                n: r.run.n,
                tokens: r.run.tokens,
                loss: (means.iter())
                    .find(|(size, _)| *size == r.run.size)
                    .and_then(|(_, points)| points.first().map(|p| p.1)),
            });
        }
    }
    pretrain.sort_by(|a, b| a.n.total_cmp(&b.n));
    let a = &spec.analysis;
    let analysis = analyse_transfer(&rows, a.bootstrap, 0.95, a.seed);
    let recorded: Vec<_> = (stored.iter())
        .filter(|s| s.status.is_recorded() && plan.get(&s.run_id).is_some())
        .collect();
    let report = TransferStudyReport {
        name: study_name(&store, dir)?,
        description: spec.description.clone(),
        command: format!("scalelab study report {}", dir.display()),
        pretrain_corpus: corpus_words(&spec.pretrain.data),
        finetune_corpus: corpus_words(&spec.finetune.data),
        convention: match spec.param_convention {
            scalelab_spec::ParamConvention::NonEmbedding => {
                "non-embedding parameters (Kaplan et al.'s and Hernandez et al.'s convention)"
            }
            scalelab_spec::ParamConvention::Total => "every parameter, embeddings included",
        }
        .into(),
        runs: (recorded.len(), plan.runs.len()),
        flops: recorded.iter().map(|s| s.train_flops).sum(),
        wall_secs: recorded.iter().map(|s| s.wall_secs).sum(),
        pretrain,
        level: 0.95,
    };
    Ok((analysis, report))
}

/// A corpus in words.
fn corpus_words(data: &DataSpec) -> String {
    match &data.path {
        Some(path) => format!("{} ({})", path, data.corpus.name()),
        None => format!("the {} corpus", data.corpus.name()),
    }
}

/// Writes the report of the transfer study in `dir` (to `out`, default `DIR/report.html`)
/// and its cells (`DIR/transfer.csv`); with `json`, prints the analysis.
pub(crate) fn study_report(dir: &Path, out: Option<&Path>, json: bool) -> Result<PathBuf> {
    let (analysis, report) = analyse(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    }
    write_text(&dir.join("transfer.csv"), &cells_csv(&analysis)?)?;
    let path = out.map_or_else(|| dir.join("report.html"), Path::to_path_buf);
    write_text(&path, &render_transfer_report(&report, &analysis)?)?;
    eprintln!(
        "cells in {} (scalelab fit --law transfer --input it), report in {}",
        dir.join("transfer.csv").display(),
        path.display()
    );
    Ok(path)
}

/// Writes the transfer study's cells to `path`.
pub(crate) fn write_cells(dir: &Path, path: &Path) -> Result<()> {
    let (analysis, _) = analyse(dir)?;
    write_text(path, &cells_csv(&analysis)?)
}

/// The cells as CSV: the columns `scalelab fit --law transfer` reads (`N`, `D_F`, `D_T`)
/// and what they come from. Cells without a `D_T` are left out.
fn cells_csv(analysis: &TransferAnalysis) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "method",
        "size",
        "N",
        "D_F",
        "D_T",
        "D_E",
        "multiplier",
        "extrapolated",
        "loss",
        "scratch_loss",
        "overtaken",
        "seeds",
    ])?;
    for c in &analysis.cells {
        let Some(t) = c.transferred else { continue };
        w.write_record([
            c.method.clone(),
            c.size.clone(),
            c.n.to_string(),
            c.d_f.to_string(),
            t.d_t.to_string(),
            t.d_e.to_string(),
            t.multiplier.to_string(),
            t.extrapolated.to_string(),
            c.loss.to_string(),
            c.scratch_loss.map_or(String::new(), |l| l.to_string()),
            c.overtaken.to_string(),
            c.seeds.to_string(),
        ])?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}
