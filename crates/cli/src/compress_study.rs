//! `scalelab study plan|run|report` for a compression study (a file with `[compress]`): the
//! plan and the runner are the sweep crate's, the one-shot compressions the train crate's
//! (`scalelab compress`'s own code), the analysis the analysis crate's, the page the report
//! crate's; this module joins the stored runs and the compressed models to their roles.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use scalelab_analysis::compress_study::{
    AXES, CompressPoint, CompressionAnalysis, analyse_compression,
};
use scalelab_report::{CompressionStudyReport, render_compression_report};
use scalelab_spec::{CompressionStudySpec, Method, Named, ParamConvention, RunRecord, RunStatus};
use scalelab_sweep::{
    CompressRole, CompressionPlan, RunState, Store, plan_compression_study, run_dir,
};
use scalelab_train::compress::{COMPRESSION_FILE, CompressionRecord, compress_run, pruned_bytes};
use serde_json::json;

use crate::args::{StudyFileArgs, StudyRunArgs};
use crate::study::{StudyKind, default_jobs, rate_estimate, run_exit, run_planned, study_name};
use crate::{human, write_text};

/// The study file, read and checked, its text, and its directory.
pub(crate) fn load(file: &Path, dir: Option<&Path>) -> Result<(CompressionPlan, String, PathBuf)> {
    let (spec, text, dir) =
        crate::study::read_study::<CompressionStudySpec>(file, dir, |s| &s.name)?;
    let plan = plan_compression_study(&spec, &dir, file)?;
    Ok((plan, text, dir))
}

/// `scalelab study plan` of a compression study.
pub(crate) fn study_plan(args: &StudyFileArgs) -> Result<ExitCode> {
    let (plan, _, dir) = load(&args.file, args.dir.as_deref())?;
    crate::study::write_plan(&plan.spec.name, &dir, &plan)?;
    let (rate, source) = rate_estimate(&dir);
    let jobs = default_jobs();
    let serial: f64 = plan.runs.iter().map(|r| r.run.flops / rate).sum();
    let one_shot: Vec<serde_json::Value> = (plan.one_shot().iter())
        .map(|(id, m)| json!({ "run_id": id, "method": m.tag() }))
        .collect();
    if args.json {
        let runs: Vec<serde_json::Value> = (plan.runs.iter())
            .map(|r| {
                json!({
                    "run_id": r.run.run_id, "size": r.run.size, "seed": r.run.seed,
                    "role": r.role.name(), "after": r.after(), "params": r.run.params,
                    "N": r.run.n, "tokens": r.run.tokens, "flops": r.run.flops,
                    "estimated_secs": r.run.flops / rate,
                })
            })
            .collect();
        let value = json!({
            "study": plan.spec.name, "kind": "compression", "dir": dir,
            "param_convention": plan.spec.param_convention.name(), "runs": runs,
            "one_shot": one_shot, "total_flops": plan.total_flops(),
            "flops_per_sec_per_run": rate, "rate_source": source, "jobs": jobs,
            "estimated_wall_secs": serial / jobs as f64,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "compression study {} ({} runs, {} one-shot compressions) -> {}",
        plan.spec.name,
        plan.runs.len(),
        one_shot.len(),
        dir.display()
    );
    println!(
        "{:<16} {:<12} {:<12} {:>4} {:>10} {:>10} {:>10} {:>8}",
        "run", "size", "role", "seed", "N", "tokens", "FLOPs", "est. s"
    );
    for r in &plan.runs {
        println!(
            "{:<16} {:<12} {:<12} {:>4} {:>10} {:>10} {:>10.3e} {:>8.0}",
            r.run.run_id,
            r.run.size,
            r.role.name(),
            r.run.seed,
            human(r.run.n),
            human(r.run.tokens as f64),
            r.run.flops,
            r.run.flops / rate,
        );
    }
    let methods: Vec<String> = plan.methods.iter().map(Method::tag).collect();
    println!(
        "one-shot, on {} once trained: {}",
        plan.compressed.join(", "),
        if methods.is_empty() {
            "none".into()
        } else {
            methods.join(", ")
        }
    );
    println!(
        "total {:.3e} FLOPs; about {:.0} s on {jobs} parallel runs at {} FLOP/s each ({source}); students start once their teacher is trained",
        plan.total_flops(),
        serial / jobs as f64,
        human(rate)
    );
    Ok(ExitCode::SUCCESS)
}

/// `scalelab study run` of a compression study: its runs, then its one-shot compressions,
/// then its report.
pub(crate) fn study_run(args: &StudyRunArgs) -> Result<ExitCode> {
    let (plan, text, dir) = load(&args.file, args.dir.as_deref())?;
    let context = (plan.spec.name.as_str(), text.as_str(), dir.as_path());
    let (summary, store) = run_planned(
        args,
        StudyKind::Compression,
        &plan,
        plan.runs.len(),
        context,
    )?;
    if store.is_some() && !summary.stopped {
        let device = args.device.unwrap_or_default();
        apply_one_shot(&plan, &dir, device)?;
        if !args.no_report {
            let path = study_report(&dir, None, false)?;
            println!("{}", path.display());
        }
    }
    Ok(run_exit(&summary))
}

/// Where the one-shot compression of run `run_id` by `method` is kept.
fn compressed_dir(dir: &Path, run_id: &str, method: &Method) -> PathBuf {
    run_dir(dir, run_id).join("compressed").join(method.tag())
}

/// Applies every one-shot compression of `plan` whose parent is recorded and which is not
/// made yet (each kept in its parent's `compressed/TAG/`, record last, so an interrupted pass
/// resumes where it stopped). How many it made.
fn apply_one_shot(
    plan: &CompressionPlan,
    dir: &Path,
    device: scalelab_spec::TrainDevice,
) -> Result<usize> {
    let todo: Vec<(String, Method)> = (plan.one_shot().into_iter())
        .filter(|(id, m)| {
            run_dir(dir, id).join("record.json").is_file()
                && !compressed_dir(dir, id, m).join(COMPRESSION_FILE).is_file()
        })
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let (device, _) = crate::device::open(device)?;
    let started = std::time::Instant::now();
    for (i, (id, method)) in todo.iter().enumerate() {
        let run = run_dir(dir, id);
        let model = compress_run(&run, method, None, &device)
            .with_context(|| format!("compressing run {id} by {}", method.tag()))?;
        scalelab_train::compress::write_compressed(&compressed_dir(dir, id, method), &run, &model)?;
        eprintln!(
            "[{}/{}] {id} {}: {:.4} -> {:.4}",
            i + 1,
            todo.len(),
            method.tag(),
            model.record.scores.val_loss_before,
            model.record.scores.val_loss_after
        );
    }
    eprintln!(
        "{} one-shot compressions in {:.0} s",
        todo.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(todo.len())
}

/// The plan of the study stored in `dir` (from the study file its store keeps).
fn stored_plan(store: &Store, dir: &Path) -> Result<CompressionPlan> {
    let spec: CompressionStudySpec = crate::study::stored_spec(store, dir)?;
    Ok(plan_compression_study(&spec, dir, &dir.join("study.toml"))?)
}

/// The analysis of the compression study in `dir`, with what the report shows besides it.
fn analyse(
    store: &Store,
    plan: &CompressionPlan,
    dir: &Path,
) -> Result<(CompressionAnalysis, CompressionStudyReport)> {
    let one_shot = plan.one_shot();
    let spec = &plan.spec;
    let convention = spec.param_convention;
    let n_of = |p: scalelab_spec::ParamCounts| convention.count(p);
    let mut points: Vec<CompressPoint> = Vec::new();
    let mut penalties: Vec<(String, f64, f64, u64, f64)> = Vec::new();
    let stored = store.runs()?;
    let completed = |id: &str| -> Result<Option<RunRecord>> {
        if !(stored.iter()).any(|s| s.run_id == id && s.status == RunState::Completed) {
            return Ok(None);
        }
        Ok(store
            .run_record(id)?
            .filter(|r| r.status == RunStatus::Completed))
    };
    for planned in &plan.runs {
        let Some(record) = completed(&planned.run.run_id)? else {
            continue;
        };
        let Some(loss) = record.result.final_val_loss else {
            continue;
        };
        let main = planned.run.tokens_budget() == Some(spec.dense.tokens);
        let model = &record.config.model;
        let dense_point = |method: &str| CompressPoint {
            method: method.into(),
            level: None,
            size: planned.run.size.clone(),
            seed: planned.run.seed,
            loss,
            nonzero: n_of(record.params),
            bytes: 4.0 * record.params.total as f64,
            inference_flops: model.inference_flops_per_token(0),
        };
        match &planned.role {
            CompressRole::Dense if main => points.push(dense_point("dense")),
            CompressRole::Dense => {}
            CompressRole::Student { .. } => points.push(dense_point("distilled")),
            // One block's parameters (N counts them), the FLOPs of every layer.
            CompressRole::Shared => points.push(dense_point("shared")),
            CompressRole::Gradual { sparsity } => {
                let Some(s) = &record.result.sparsity else {
                    continue;
                };
                let pruned = record.params.total - s.nonzero.total;
                let layer_params: u64 = s.layers.iter().map(|l| l.params).sum();
                let bytes: u64 = (s.layers.iter())
                    .map(|l| pruned_bytes(l.params, l.params - l.zeros))
                    .sum::<u64>()
                    + 4 * (record.params.total - layer_params);
                points.push(CompressPoint {
                    method: "gradual".into(),
                    level: Some(*sparsity),
                    nonzero: n_of(s.nonzero),
                    bytes: bytes as f64,
                    inference_flops: model.inference_flops_per_token(pruned),
                    ..dense_point("gradual")
                });
            }
        }
        if planned.role != CompressRole::Dense {
            continue;
        }
        for &(ref id, method) in &one_shot {
            if id != &planned.run.run_id {
                continue;
            }
            let path = compressed_dir(dir, id, &method).join(COMPRESSION_FILE);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let c: CompressionRecord = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is damaged; delete it and run the study again",
                    path.display()
                )
            })?;
            if Some(method) == plan.penalty {
                penalties.push((
                    planned.run.size.clone(),
                    planned.run.n,
                    planned.run.tokens as f64,
                    planned.run.seed,
                    c.scores.val_loss_after - c.scores.val_loss_before,
                ));
            }
            if main && plan.methods.contains(&method) {
                // A quantised model stores and multiplies every weight, the zeros its rounding
                // made included: it is placed at its parent's count and FLOPs.
                let (nonzero, pruned) = match method {
                    Method::Quantize { .. } => (c.params, 0),
                    _ => (c.nonzero, c.params.total - c.nonzero.total),
                };
                points.push(CompressPoint {
                    method: method.family_name(),
                    level: method.sparsity(),
                    size: planned.run.size.clone(),
                    seed: planned.run.seed,
                    loss: c.scores.val_loss_after,
                    nonzero: n_of(nonzero),
                    bytes: c.bytes as f64,
                    inference_flops: model.inference_flops_per_token(pruned),
                });
            }
        }
    }
    let analysis = analyse_compression(&points, &penalties);
    let recorded: Vec<_> = (stored.iter())
        .filter(|s| s.status.is_recorded() && plan.get(&s.run_id).is_some())
        .collect();
    let made = (one_shot.iter())
        .filter(|(id, m)| compressed_dir(dir, id, m).join(COMPRESSION_FILE).is_file())
        .count();
    let report = CompressionStudyReport {
        name: study_name(store, dir)?,
        description: spec.description.clone(),
        command: format!("scalelab study report {}", dir.display()),
        corpus: match &spec.data.path {
            Some(path) => format!("{} ({})", path, spec.data.corpus.name()),
            None => format!("the {} corpus", spec.data.corpus.name()),
        },
        convention: match convention {
            ParamConvention::NonEmbedding => {
                "non-embedding parameters (Kaplan et al.'s and Frantar et al.'s convention)"
            }
            ParamConvention::Total => "every parameter, embeddings included",
        }
        .into(),
        tokens: spec.dense.tokens,
        runs: (recorded.len(), plan.runs.len()),
        one_shot: (made, one_shot.len()),
        flops: recorded.iter().map(|s| s.train_flops).sum(),
        wall_secs: recorded.iter().map(|s| s.wall_secs).sum(),
        penalty_method: plan.penalty.map(|m| m.tag()),
    };
    Ok((analysis, report))
}

/// Writes the report of the compression study in `dir` (to `out`, default `DIR/report.html`)
/// and its table (`DIR/compression.csv`), first making any one-shot compression still missing
/// (a study whose runs a cluster trained); with `json`, prints the analysis.
pub(crate) fn study_report(dir: &Path, out: Option<&Path>, json: bool) -> Result<PathBuf> {
    let store = Store::open(dir)?;
    let plan = stored_plan(&store, dir)?;
    apply_one_shot(&plan, dir, Default::default())?;
    let (analysis, report) = analyse(&store, &plan, dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    }
    write_text(&dir.join("compression.csv"), &table_csv(&analysis)?)?;
    let path = out.map_or_else(|| dir.join("report.html"), Path::to_path_buf);
    write_text(&path, &render_compression_report(&report, &analysis)?)?;
    eprintln!(
        "table in {}, report in {}",
        dir.join("compression.csv").display(),
        path.display()
    );
    Ok(path)
}

/// Writes the compression study's table to `path`.
pub(crate) fn write_table(dir: &Path, path: &Path) -> Result<()> {
    let store = Store::open(dir)?;
    let (analysis, _) = analyse(&store, &stored_plan(&store, dir)?, dir)?;
    write_text(path, &table_csv(&analysis)?)
}

/// Every model, dense and compressed, with its costs and (compressed) its place against the
/// frontier on each axis.
fn table_csv(analysis: &CompressionAnalysis) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["method", "level", "size", "seeds", "loss"]
        .map(String::from)
        .to_vec();
    for axis in AXES {
        header.push(axis.key().to_string());
    }
    for axis in AXES {
        for what in ["delta", "ratio", "verdict", "extrapolated"] {
            header.push(format!("{}_{what}", axis.key()));
        }
    }
    w.write_record(&header)?;
    for d in &analysis.dense {
        let mut row = vec![
            "dense".to_string(),
            String::new(),
            d.0.clone(),
            String::new(),
            d.1.to_string(),
        ];
        row.extend(d.2.iter().map(f64::to_string));
        row.extend(std::iter::repeat_n(String::new(), 4 * AXES.len()));
        w.write_record(&row)?;
    }
    for c in &analysis.compressed {
        let mut row = vec![
            c.method.clone(),
            c.level.map_or(String::new(), |l| l.to_string()),
            c.size.clone(),
            c.seeds.to_string(),
            c.loss.to_string(),
        ];
        row.extend(c.costs.iter().map(f64::to_string));
        for axis in AXES {
            match c.placements.iter().find(|p| p.axis == axis) {
                Some(p) => row.extend([
                    p.delta.to_string(),
                    p.ratio.map_or(String::new(), |r| r.to_string()),
                    p.verdict.name().to_string(),
                    p.extrapolated.to_string(),
                ]),
                None => row.extend(std::iter::repeat_n(String::new(), 4)),
            }
        }
        w.write_record(&row)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}
