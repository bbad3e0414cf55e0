//! `scalelab study`: plan, run, status, report and export, over the sweep, analysis and
//! report crates, for a scaling study (the other kinds have their own files); what every kind
//! shares to run is `study/runner.rs`. Runs train in child processes of this same program
//! (`scalelab train`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use scalelab_analysis::LawFit;
use scalelab_analysis::compute_optimal::ComputeOptimal;
use scalelab_analysis::optimal::{FlopModel, PlannedAllocation, plan_allocation};
use scalelab_analysis::study::analyse_study;
use scalelab_report::{
    ReportInput, StudyAnalysis, render_html, write_curves_csv, write_emergence_csv,
    write_emergence_examples_csv, write_runs_csv, write_task_curves_csv,
};
use scalelab_spec::{AnalysisSpec, StudySpec};
use scalelab_sweep::{
    RunState, Store, StoredCurvePoint, StoredRun, StudyPlan, plan_study, study_vocab,
};

use crate::args::{
    StudyCommand, StudyDirArgs, StudyExportArgs, StudyFileArgs, StudyRunArgs, StudySyncArgs,
};
use crate::{human, read_toml};

mod cluster;
mod runner;
/// The runs' order, which array tasks index (`study run-one`, `study submit`), written by
/// every kind's `study plan`.
pub(crate) use cluster::write_plan;
pub(crate) use runner::{
    StudyKind, default_jobs, file_kind, lock_study, rate_estimate, run_exit, run_planned,
    store_kind, study_name, unit,
};

pub fn run(command: StudyCommand) -> Result<ExitCode> {
    match command {
        StudyCommand::Plan(args) => plan(args),
        StudyCommand::Run(args) => run_cmd(args),
        StudyCommand::Status(args) => status(args),
        StudyCommand::Report(args) => report(args).map(|_| ExitCode::SUCCESS),
        StudyCommand::Export(args) => export(args),
        StudyCommand::Sync(args) => sync(args),
        StudyCommand::Repair(args) => repair(&args.dir),
        StudyCommand::RunOne(args) => cluster::run_one(args),
        StudyCommand::Submit(args) => cluster::submit(args),
    }
}

/// `scalelab study repair DIR`: moves the store aside (never deletes it), then enters the
/// study of `DIR/study.toml` into a new store and imports every run's record, as a study run
/// does before it trains, training nothing.
fn repair(dir: &Path) -> Result<ExitCode> {
    let file = dir.join("study.toml");
    if !file.is_file() {
        bail!(
            "{} holds no study.toml, so the study's runs cannot be planned again\nhint: run `scalelab study run FILE --dir {}` with the study's own file: it imports every run's record before it trains",
            dir.display(),
            dir.display()
        );
    }
    let _lock = lock_study(dir)?;
    let store = dir.join(scalelab_sweep::STORE_FILE);
    if store.exists() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let from = PathBuf::from(format!("{}{suffix}", store.display()));
            if from.exists() {
                let to = PathBuf::from(format!("{}.damaged-{secs}{suffix}", store.display()));
                std::fs::rename(&from, &to).with_context(|| {
                    format!("cannot move {} aside to {}", from.display(), to.display())
                })?;
                eprintln!("kept the old store as {}", to.display());
            }
        }
    }
    run_cmd(StudyRunArgs {
        file,
        dir: Some(dir.to_path_buf()),
        jobs: None,
        threads_per_run: None,
        no_report: true,
        claim_timeout: None,
        device: None,
        tensorboard: None,
        mlflow: Default::default(),
        import_only: true,
    })
}

/// The study file, read and checked, and its directory.
fn load(file: &Path, dir: Option<&Path>) -> Result<(StudySpec, String, PathBuf)> {
    let (spec, text, dir) = read_study::<StudySpec>(file, dir, |s| &s.name)?;
    spec.check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok((spec, text, dir))
}

/// A study file of any kind `S`, its text, and its directory: `dir`, or `studies/NAME` (the
/// study's `name`).
pub(crate) fn read_study<S: serde::de::DeserializeOwned>(
    file: &Path,
    dir: Option<&Path>,
    name: impl Fn(&S) -> &str,
) -> Result<(S, String, PathBuf)> {
    let spec: S = read_toml(file)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read study file {}", file.display()))?;
    let dir = dir.map_or_else(
        || PathBuf::from("studies").join(name(&spec)),
        Path::to_path_buf,
    );
    Ok((spec, text, dir))
}

/// The study file of kind `S` that the store of the study in `dir` keeps.
pub(crate) fn stored_spec<S: serde::de::DeserializeOwned>(store: &Store, dir: &Path) -> Result<S> {
    let text = store.meta("spec_toml")?.with_context(|| {
        format!(
            "{} keeps no study file; run the study with `scalelab study run FILE --dir {}`",
            store.path().display(),
            dir.display()
        )
    })?;
    toml::from_str(&text).with_context(|| {
        format!(
            "the study file stored in {} is damaged",
            store.path().display()
        )
    })
}

fn make_plan(spec: &StudySpec, dir: &Path, file: &Path) -> Result<StudyPlan> {
    let (vocab, data) = study_vocab(&spec.data, dir, file)?;
    Ok(plan_study(spec, &data, vocab, file)?)
}

fn plan(args: StudyFileArgs) -> Result<ExitCode> {
    match file_kind(&args.file)? {
        StudyKind::Classify => return crate::classify::study_plan(&args),
        StudyKind::Transfer => return crate::transfer_study::study_plan(&args),
        StudyKind::Compression => return crate::compress_study::study_plan(&args),
        StudyKind::Scaling => {}
    }
    let (spec, _, dir) = load(&args.file, args.dir.as_deref())?;
    let plan = make_plan(&spec, &dir, &args.file)?;
    write_plan(&spec.name, &dir, &plan)?;
    let (rate, source) = rate_estimate(&dir);
    let jobs = default_jobs();
    let serial: f64 = plan.runs.iter().map(|r| r.flops / rate).sum();
    if args.json {
        let runs: Vec<serde_json::Value> = plan
            .runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "run_id": r.run_id, "size": r.size, "seed": r.seed,
                    "n_layers": r.config.model.n_layers, "d_model": r.config.model.d_model,
                    "n_heads": r.config.model.n_heads, "params": r.params, "N": r.n,
                    "tokens": r.tokens, "flops": r.flops, "budget": r.budget,
                    "estimated_secs": r.flops / rate,
                })
            })
            .collect();
        let value = serde_json::json!({
            "study": spec.name, "dir": dir, "param_convention": spec.param_convention.name(),
            "runs": runs, "total_flops": plan.total_flops(),
            "flops_per_sec_per_run": rate, "rate_source": source, "jobs": jobs,
            "estimated_wall_secs": serial / jobs as f64,
            "duplicates_skipped": plan.duplicates,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "study {} ({} runs) -> {}",
        spec.name,
        plan.runs.len(),
        dir.display()
    );
    println!(
        "{:<16} {:<12} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "run", "size", "seed", "shape", "N total", "N non-emb", "tokens", "FLOPs", "est. s"
    );
    for r in &plan.runs {
        println!(
            "{:<16} {:<12} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10.3e} {:>8.0}",
            r.run_id,
            r.size,
            r.seed,
            format!("{}x{}", r.config.model.n_layers, r.config.model.d_model),
            human(r.params.total as f64),
            human(r.params.non_embedding as f64),
            human(r.tokens as f64),
            r.flops,
            r.flops / rate
        );
    }
    println!(
        "total {:.3e} FLOPs; about {:.0} s on {jobs} parallel runs at {} FLOP/s each ({source})",
        plan.total_flops(),
        serial / jobs as f64,
        human(rate)
    );
    if plan.duplicates > 0 {
        println!(
            "{} (size, budget, seed) combinations resolved to runs already listed and were merged",
            plan.duplicates
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_cmd(args: StudyRunArgs) -> Result<ExitCode> {
    match file_kind(&args.file)? {
        StudyKind::Classify => return crate::classify::study_run(&args),
        StudyKind::Transfer => return crate::transfer_study::study_run(&args),
        StudyKind::Compression => return crate::compress_study::study_run(&args),
        StudyKind::Scaling => {}
    }
    let (spec, text, dir) = load(&args.file, args.dir.as_deref())?;
    let plan = make_plan(&spec, &dir, &args.file)?;
    let context = (spec.name.as_str(), text.as_str(), dir.as_path());
    let (summary, store) = run_planned(&args, StudyKind::Scaling, &plan, plan.runs.len(), context)?;
    let Some(store) = store else {
        return Ok(run_exit(&summary));
    };
    let achieved: f64 = store
        .runs()?
        .iter()
        .filter(|r| r.status == RunState::Completed)
        .map(|r| r.train_flops)
        .sum::<f64>();
    if summary.wall_secs > 0.0 && summary.completed > 0 {
        eprintln!(
            "achieved {} FLOP/s over the study's recorded runs (this invocation: {:.0} s)",
            human(achieved / summary.wall_secs.max(1e-9)),
            summary.wall_secs
        );
    }
    if !args.no_report {
        let (path, law) = report(StudyDirArgs {
            study: dir.clone(),
            out: None,
            json: false,
        })?;
        println!("{}", path.display());
        // The study's answer for a budget ten times its largest.
        if let Some(law) = law
            && law.largest_budget > 0.0
        {
            let c = 10.0 * law.largest_budget;
            match plan_allocation(&law.fit, &law.flop_model, c, law.unique_tokens, law.level) {
                Ok(p) => {
                    println!(
                        "compute-optimal plan for 10x the largest budget (scalelab plan --study {} --flops {c:.3e}):",
                        dir.display()
                    );
                    print_plans(&law, &[p]);
                }
                Err(e) => eprintln!("no plan for {c:.3e} FLOPs: {e}"),
            }
        }
    }
    Ok(run_exit(&summary))
}

/// The study directory of `path` (a directory, or a study file whose directory is
/// studies/NAME).
pub(crate) fn study_dir(path: &Path) -> Result<PathBuf> {
    let dir = if path.is_file() {
        let table: toml::Table = read_toml(path)?;
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        PathBuf::from("studies").join(name)
    } else {
        path.to_path_buf()
    };
    if !dir.join(scalelab_sweep::STORE_FILE).is_file() {
        bail!(
            "{} is not a study directory (no {} in it)\nhint: run `scalelab study run FILE` first, or give the directory the study was run in",
            dir.display(),
            scalelab_sweep::STORE_FILE
        );
    }
    // Records written by workers (array tasks) enter the store, unless a running study
    // holds it: that one imports them.
    cluster::import_finished(&dir)?;
    Ok(dir)
}

fn status(args: StudyDirArgs) -> Result<ExitCode> {
    let dir = study_dir(&args.study)?;
    let store = Store::open(&dir)?;
    let runs = store.runs()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let count = |s: RunState| runs.iter().filter(|r| r.status == s).count();
    let interrupted = count(RunState::Interrupted);
    println!(
        "{}: {} runs: {} completed, {} diverged, {} failed, {} to do{}",
        dir.display(),
        runs.len(),
        count(RunState::Completed),
        count(RunState::Diverged),
        count(RunState::Failed),
        count(RunState::Planned) + interrupted,
        if interrupted > 0 {
            format!(" ({interrupted} interrupted at a checkpoint)")
        } else {
            String::new()
        }
    );
    let claims = cluster::claims(&dir, &runs);
    let scheduled = cluster::scheduler_states(&dir);
    let about = |id: &str, list: &[(String, String)]| {
        list.iter()
            .filter(|(run, _)| run == id)
            .map(|(_, what)| format!("  [{what}]"))
            .collect::<String>()
    };
    for r in &runs {
        println!(
            "{:<16} {:<12} seed {:<3} N={:<9} {:>9} {:<7} {:<9} {}{}{}",
            r.run_id,
            r.size,
            r.seed,
            human(r.n),
            human(r.planned_tokens as f64),
            unit(r.kind),
            r.status,
            r.final_val_loss
                .map_or(String::new(), |l| format!("loss {l:.4}")),
            about(&r.run_id, &claims),
            about(&r.run_id, &scheduled),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stored(dir: &Path) -> Result<(Store, Vec<StoredRun>, Vec<Vec<StoredCurvePoint>>)> {
    let store = Store::open(dir)?;
    let runs = store.runs()?;
    let curves = runs
        .iter()
        .map(|r| store.curve(&r.run_id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((store, runs, curves))
}

fn report(args: StudyDirArgs) -> Result<(PathBuf, Option<StudyLaw>)> {
    let dir = study_dir(&args.study)?;
    match store_kind(&Store::open(&dir)?)? {
        StudyKind::Classify => {
            return crate::classify::study_report(&dir, args.out.as_deref()).map(|p| (p, None));
        }
        StudyKind::Transfer => {
            return crate::transfer_study::study_report(&dir, args.out.as_deref(), args.json)
                .map(|p| (p, None));
        }
        StudyKind::Compression => {
            return crate::compress_study::study_report(&dir, args.out.as_deref(), args.json)
                .map(|p| (p, None));
        }
        StudyKind::Scaling => {}
    }
    let a = analysis_of(&dir)?;
    let analysis = a.analysis;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&analysis_json(&dir, &analysis))?
        );
    }
    let law = study_law(&dir, &analysis).ok();
    let abilities = crate::abilities::analyse_abilities(&a.store, &a.runs, a.settings.seed)?;
    let input = ReportInput {
        name: study_name(&a.store, &dir)?,
        description: a
            .spec
            .as_ref()
            .map(|s| s.description.clone())
            .unwrap_or_default(),
        spec_toml: a.spec_toml,
        command: format!("scalelab study report {}", dir.display()),
        runs: a.runs,
        curves: a.curves,
        analysis,
        flops_convention:
            "6·N_matmul + 12·L·T·d per token: matrix weights and attention, forward and backward"
                .into(),
        abilities,
    };
    let html = render_html(&input)?;
    let path = args.out.unwrap_or_else(|| dir.join("report.html"));
    crate::write_text(&path, &html)?;
    eprintln!("report written to {}", path.display());
    Ok((path, law))
}

/// `study report --json`: the compute-optimal analysis (the study's own convention at the
/// top, the other beside it), the law and the planner's allocations.
fn analysis_json(dir: &Path, a: &StudyAnalysis) -> serde_json::Value {
    let block = |co: &ComputeOptimal| {
        serde_json::json!({
            "param_convention": co.param_convention,
            "flop_model": co.flop_model,
            "budgets": co.budgets,
            "runs": co.runs,
            "unique_tokens": co.unique_tokens,
            "max_epochs": co.max_epochs,
            "approach1": co.approach1.as_ref().map(|x| serde_json::json!({
                "a": x.a.value, "b": x.b.value,
                "intervals": { "a": x.a.interval, "b": x.b.interval },
                "cautions": x.cautions,
                "winners": x.detail.samples,
            })),
            "approach2": co.approach2.as_ref().map(|x| serde_json::json!({
                "a": x.a.value, "b": x.b.value,
                "intervals": { "a": x.a.interval, "b": x.b.interval },
                "cautions": x.cautions,
                "budgets": x.detail.curves.iter().map(|c| serde_json::json!({
                    "budget": c.flops, "n_opt": c.n_opt, "n_opt_interval": c.n_opt_interval,
                    "d_opt": c.d_opt, "loss_opt": c.loss_opt, "inside": c.inside,
                    "n_range": c.n_range, "rms_residual": c.rms_residual, "note": c.note,
                })).collect::<Vec<_>>(),
                "bootstrap_used": x.detail.bootstrap_used,
            })),
            "approach3": co.approach3.as_ref().map(|x| {
                let mut intervals = serde_json::Map::new();
                let mut out = serde_json::Map::new();
                for c in &x.fit.constants {
                    if c.name == "a" || c.name == "b" {
                        continue;
                    }
                    out.insert(c.name.clone(), serde_json::json!(c.value));
                    intervals.insert(c.name.clone(), serde_json::json!(c.interval));
                }
                out.insert("a".into(), serde_json::json!(x.a.value));
                out.insert("b".into(), serde_json::json!(x.b.value));
                intervals.insert("a".into(), serde_json::json!(x.a.interval));
                intervals.insert("b".into(), serde_json::json!(x.b.interval));
                out.insert("intervals".into(), serde_json::Value::Object(intervals));
                out.insert("cautions".into(), serde_json::json!(x.cautions));
                out.insert("data_constrained".into(), serde_json::json!(x.data_constrained));
                out.insert("gradient_norm".into(), serde_json::json!(x.fit.gradient_norm));
                out.insert("bootstrap_used".into(), serde_json::json!(x.fit.bootstrap_used));
                serde_json::Value::Object(out)
            }),
            "consistency": co.consistency,
            "held_out": co.held_out,
            "bootstrap": {
                "replicates": co.bootstrap, "level": co.level,
                "schemes": co.bootstrap_schemes.iter().map(|(k, s)| (format!("approach{k}"), s.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            },
            "notes": co.notes,
        })
    };
    let mut value = match a.compute_optimal.first() {
        Some(co) => block(co),
        None => serde_json::json!({}),
    };
    if let Some(obj) = value.as_object_mut() {
        obj.insert("study".into(), serde_json::json!(dir));
        obj.insert(
            "conventions".into(),
            serde_json::json!(a.compute_optimal.iter().map(block).collect::<Vec<_>>()),
        );
        obj.insert("allocations".into(), serde_json::json!(a.allocations));
        obj.insert("notes_study".into(), serde_json::json!(a.notes));
    }
    value
}

/// `scalelab study sync`: every recorded run to MLflow.
fn sync(args: StudySyncArgs) -> Result<ExitCode> {
    let dir = study_dir(&args.study)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(target) = crate::export::MlflowTarget::of(&args.mlflow, name.as_deref())? else {
        bail!(
            "no MLflow server named\nhint: pass --mlflow URI (e.g. http://127.0.0.1:5000) or set MLFLOW_TRACKING_URI"
        );
    };
    let (now, before) = crate::export::mlflow_study(&target, &dir)?;
    println!("{now} runs logged to MLflow now, {before} logged before");
    Ok(ExitCode::SUCCESS)
}

fn export(args: StudyExportArgs) -> Result<ExitCode> {
    let dir = study_dir(&args.study)?;
    if let Some(tensorboard) = &args.tensorboard {
        let n = crate::export::tensorboard_study(&dir, tensorboard)?;
        eprintln!(
            "TensorBoard events of {n} runs written under {}",
            tensorboard.display()
        );
    }
    let (store, runs, curves) = stored(&dir)?;
    let out = args.out.unwrap_or_else(|| dir.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if store_kind(&store)? == StudyKind::Classify {
        let path = out.join("results.csv");
        crate::classify::write_results(&store, &path)?;
        println!("{}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if store_kind(&store)? == StudyKind::Transfer {
        let path = out.join("transfer.csv");
        crate::transfer_study::write_cells(&dir, &path)?;
        println!("{}", path.display());
    }
    if store_kind(&store)? == StudyKind::Compression {
        let path = out.join("compression.csv");
        crate::compress_study::write_table(&dir, &path)?;
        println!("{}", path.display());
    }
    write_runs_csv(&out.join("runs.csv"), &runs)?;
    write_curves_csv(&out.join("curves.csv"), &runs, &curves)?;
    println!("{}", out.join("runs.csv").display());
    println!("{}", out.join("curves.csv").display());
    if let Some(a) = crate::abilities::analyse_abilities(&store, &runs, 0)? {
        let task = a.task.split(' ').next().unwrap_or("task");
        write_task_curves_csv(&out.join("task_curves.csv"), task, &a.runs)?;
        write_emergence_csv(&out.join("emergence_n.csv"), task, &a.runs)?;
        println!("{}", out.join("task_curves.csv").display());
        println!("{}", out.join("emergence_n.csv").display());
        let examples = crate::abilities::final_examples(&dir, &runs)?;
        if !examples.is_empty() {
            let path = out.join("emergence_n_examples.csv");
            write_emergence_examples_csv(&path, task, &examples)?;
            println!("{}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A study read back from its store, with its analysis.
struct Analysed {
    store: Store,
    runs: Vec<StoredRun>,
    curves: Vec<Vec<StoredCurvePoint>>,
    analysis: StudyAnalysis,
    spec: Option<StudySpec>,
    /// The spec's analysis settings (the defaults when the stored spec does not parse).
    settings: AnalysisSpec,
    spec_toml: String,
}

/// The study's analysis with the settings of its own spec.
fn analysis_of(dir: &Path) -> Result<Analysed> {
    let (store, runs, curves) = stored(dir)?;
    // `study run` stores the study file it ran; a store without one is analysed with the
    // default settings, and one whose copy does not parse (a store is a file a user may
    // edit) is an error, not a silent default.
    let spec_toml = store.meta("spec_toml")?.unwrap_or_default();
    let spec: Option<StudySpec> = if spec_toml.trim().is_empty() {
        None
    } else {
        Some(toml::from_str(&spec_toml).map_err(|e| {
            anyhow::anyhow!(
                "{}: the study file stored in it does not parse: {}\nhint: the [analysis] settings come from it; run the study again from its TOML file to store a good copy",
                store.path().display(),
                e.to_string().trim_end()
            )
        })?)
    };
    let settings = spec
        .as_ref()
        .map(|s| s.analysis.clone())
        .unwrap_or_default();
    let analysis = analyse_study(&runs, &curves, &settings);
    Ok(Analysed {
        store,
        runs,
        curves,
        analysis,
        spec,
        settings,
        spec_toml,
    })
}

/// What `scalelab plan --study` plans with: the study's parametric law with its bootstrap
/// replicates, the FLOP model of its sizes, its unique tokens and its largest budget.
pub(crate) struct StudyLaw {
    pub fit: LawFit,
    pub flop_model: FlopModel,
    pub unique_tokens: Option<f64>,
    pub largest_budget: f64,
    pub level: f64,
    pub source: String,
}

/// The parametric law of a study's recorded runs (for `scalelab plan --study`).
pub(crate) fn law_of(dir: &Path) -> Result<StudyLaw> {
    study_law(dir, &analysis_of(dir)?.analysis)
}

fn study_law(dir: &Path, analysis: &StudyAnalysis) -> Result<StudyLaw> {
    let fit = analysis.chinchilla.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "the study in {} has no Chinchilla fit ({})\nhint: a study needs runs at several sizes and several token budgets; or give --E, --A, --B, --alpha, --beta",
            dir.display(),
            analysis.notes.join("; ")
        )
    })?;
    let source = if analysis.compute_optimal.is_empty() {
        format!("Chinchilla fit of the study in {}", dir.display())
    } else {
        format!(
            "approach 3 of the IsoFLOP study in {} (N {}; residual bootstrap)",
            dir.display(),
            analysis.compute_optimal[0].param_convention
        )
    };
    Ok(StudyLaw {
        fit,
        flop_model: analysis.flop_model.unwrap_or(FlopModel::SIX_N),
        unique_tokens: analysis.unique_tokens,
        largest_budget: analysis.largest_budget,
        level: analysis.level,
        source,
    })
}

/// Prints a planned allocation as `scalelab plan` does.
pub(crate) fn print_plans(law: &StudyLaw, plans: &[PlannedAllocation]) {
    println!("law: {}", law.source);
    for c in law.fit.cautions() {
        eprintln!("caution: the study's fit is poorly constrained: {c}");
    }
    let show = |v: f64, i: Option<scalelab_analysis::Interval>| match i {
        Some(i) => format!("{} [{}, {}]", human(v), human(i.lo), human(i.hi)),
        None => human(v),
    };
    let pct = (law.level * 100.0).round();
    println!(
        "{:>10}  {:<28} {:<28} {:<24} {:<24}",
        "FLOPs",
        format!("N_opt [{pct}%]"),
        "D_opt (tokens)",
        "tokens/param",
        "predicted loss"
    );
    for p in plans {
        let x = &p.best;
        let ratio = match p.tokens_per_param {
            Some(i) => format!("{:.1} [{:.1}, {:.1}]", x.tokens_per_param, i.lo, i.hi),
            None => format!("{:.1}", x.tokens_per_param),
        };
        let loss = match p.loss {
            Some(i) => format!("{:.4} [{:.4}, {:.4}]", x.loss, i.lo, i.hi),
            None => format!("{:.4}", x.loss),
        };
        println!(
            "{:>10.3e}  {:<28} {:<28} {:<24} {:<24}",
            x.flops,
            show(x.n_opt, p.n_opt),
            show(x.d_opt, p.d_opt),
            ratio,
            loss
        );
        if law.largest_budget > 0.0 && x.flops > 100.0 * law.largest_budget {
            eprintln!(
                "warning: {:.2e} FLOPs is {:.1} decades beyond the study's largest budget ({:.2e}); a law fitted over this range is an extrapolation there, and its intervals only count the noise of the runs, not a change of regime",
                x.flops,
                (x.flops / law.largest_budget).log10(),
                law.largest_budget
            );
        }
        if let (Some(u), Some(l)) = (law.unique_tokens, p.loss_data_constrained) {
            eprintln!(
                "warning: D_opt = {} tokens is more than the corpus's {} distinct training tokens ({:.1} epochs); with repeated data the law predicts {:.4} instead (Muennighoff et al. 2023)",
                human(x.d_opt),
                human(u),
                x.d_opt / u,
                l
            );
        }
    }
}
