//! `scalelab study`: plan, run, status, report and export, over the sweep, analysis and
//! report crates. Runs train in child processes of this same program (`scalelab train`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

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
    Job, Launcher, PlannedStudy, RunEnd, RunKind, RunState, Store, StoredCurvePoint, StoredRun,
    StudyPlan, StudyProgress, StudySummary, import_recorded, plan_study, run_study, study_vocab,
};

use crate::args::{StudyCommand, StudyDirArgs, StudyFileArgs, StudyRunArgs};
use crate::{human, read_toml};

/// A rough rate for estimates before any run of the study has finished: FLOP/s of one
/// single-threaded run of a small GPT (the quickstart's runs averaged 37 GFLOP/s each on a
/// 2-core AVX-512 Xeon, BENCHMARKS.md; taken lower for CPUs without AVX-512).
pub(crate) const DEFAULT_FLOPS_PER_SEC: f64 = 2e10;

pub fn run(command: StudyCommand) -> Result<ExitCode> {
    match command {
        StudyCommand::Plan(args) => plan(args),
        StudyCommand::Run(args) => run_cmd(args),
        StudyCommand::Status(args) => status(args),
        StudyCommand::Report(args) => report(args).map(|_| ExitCode::SUCCESS),
        StudyCommand::Export(args) => export(args),
        StudyCommand::Repair(args) => repair(&args.dir),
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
        import_only: true,
    })
}

/// The study file, read and checked, and its directory.
fn load(file: &Path, dir: Option<&Path>) -> Result<(StudySpec, String, PathBuf)> {
    let spec: StudySpec = read_toml(file)?;
    spec.check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read study file {}", file.display()))?;
    let dir = dir.map_or_else(
        || PathBuf::from("studies").join(&spec.name),
        Path::to_path_buf,
    );
    Ok((spec, text, dir))
}

fn make_plan(spec: &StudySpec, dir: &Path, file: &Path) -> Result<StudyPlan> {
    let (vocab, data) = study_vocab(&spec.data, dir, file)?;
    Ok(plan_study(spec, &data, vocab, file)?)
}

/// FLOP/s per run measured by this study's finished runs, if any.
pub(crate) fn measured_rate(dir: &Path) -> Option<f64> {
    if !dir.join(scalelab_sweep::STORE_FILE).is_file() {
        return None;
    }
    let store = Store::open(dir).ok()?;
    let runs = store.runs().ok()?;
    let (flops, secs) = runs
        .iter()
        .filter(|r| r.status == RunState::Completed && r.wall_secs > 0.0)
        .fold((0.0, 0.0), |(f, s), r| (f + r.train_flops, s + r.wall_secs));
    (secs > 0.0).then_some(flops / secs)
}

pub(crate) fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn plan(args: StudyFileArgs) -> Result<ExitCode> {
    match file_kind(&args.file)? {
        StudyKind::Classify => return crate::classify::study_plan(&args),
        StudyKind::Transfer => return crate::transfer_study::study_plan(&args),
        StudyKind::Scaling => {}
    }
    let (spec, _, dir) = load(&args.file, args.dir.as_deref())?;
    let plan = make_plan(&spec, &dir, &args.file)?;
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

/// Starts `scalelab train` on a run's spec, in its directory.
pub(crate) struct SelfLauncher {
    exe: PathBuf,
    threads: usize,
}

impl Launcher for SelfLauncher {
    fn command(&self, kind: RunKind, run_dir: &Path) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg(match kind {
            RunKind::Lm => "train",
            RunKind::Classify => "classify",
        })
        .arg("--config")
        .arg(run_dir.join("spec.toml"))
        .arg("--run-dir")
        .arg(run_dir)
        .arg("--threads")
        .arg(self.threads.to_string())
        .arg("--exit-with-parent");
        if kind == RunKind::Lm {
            c.arg("--quiet");
        }
        c
    }
}

impl SelfLauncher {
    /// This program, training with `threads` threads a run.
    pub(crate) fn new(threads: usize) -> Result<Self> {
        Ok(SelfLauncher {
            exe: std::env::current_exe().context("locating the scalelab program")?,
            threads,
        })
    }
}

/// The three kinds of study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StudyKind {
    /// A ladder of language models over budgets (scaling laws, compute-optimal).
    Scaling,
    /// A grid of classifiers.
    Classify,
    /// Pre-training, then fine-tuning and training from scratch (the laws of transfer).
    Transfer,
}

impl StudyKind {
    /// The name the store keeps under its `kind` key.
    fn name(self) -> &'static str {
        match self {
            StudyKind::Scaling => "scaling",
            StudyKind::Classify => "classify",
            StudyKind::Transfer => "transfer",
        }
    }
}

/// What kind of study `file` describes: a classification grid has `models` (and `base`), a
/// transfer study `[pretrain]` or `[finetune]`, a scaling study a ladder.
pub(crate) fn file_kind(file: &Path) -> Result<StudyKind> {
    let table: toml::Table = read_toml(file)?;
    Ok(
        if table.contains_key("models") || table.contains_key("base") {
            StudyKind::Classify
        } else if scalelab_sweep::is_transfer_study(&table) {
            StudyKind::Transfer
        } else {
            StudyKind::Scaling
        },
    )
}

/// The study's name: the one its store keeps, else (a store written by hand or damaged) the
/// name of its directory.
pub(crate) fn study_name(store: &Store, dir: &Path) -> Result<String> {
    Ok(match store.meta("name")? {
        Some(name) => name,
        None => dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    })
}

/// The kind of the study in `store`: the one it keeps, else (a store written before kinds
/// were kept) its runs' (a scaling study when it has none yet).
pub(crate) fn store_kind(store: &Store) -> Result<StudyKind> {
    Ok(match store.meta("kind")?.as_deref() {
        Some("transfer") => StudyKind::Transfer,
        Some("classify") => StudyKind::Classify,
        Some(_) => StudyKind::Scaling,
        None => match store.runs()?.first().map(|r| r.kind) {
            Some(RunKind::Classify) => StudyKind::Classify,
            _ => StudyKind::Scaling,
        },
    })
}

/// Opens the store of study `name` of `kind` in `dir` (refused when it holds another study)
/// and keeps the study file's `text` in it and beside it.
pub(crate) fn open_study_store(
    dir: &Path,
    kind: StudyKind,
    name: &str,
    text: &str,
) -> Result<Store> {
    let store = Store::open(dir)?;
    if let Some(old) = store.meta("name")?
        && old != name
    {
        bail!(
            "{} holds study `{old}`, not `{name}`\nhint: give this study its own directory with --dir",
            dir.display(),
        );
    }
    store.set_meta("name", name)?;
    store.set_meta("kind", kind.name())?;
    store.set_meta("spec_toml", text)?;
    crate::write_text(&dir.join("study.toml"), text)?;
    Ok(store)
}

/// Threads per run and runs at a time for `runs` runs: by default one single-threaded run
/// per core, or all cores shared when there are fewer runs than cores.
pub(crate) fn parallelism(args: &StudyRunArgs, runs: usize) -> Result<(usize, usize)> {
    if args.threads_per_run == Some(0) {
        bail!("invalid value for `--threads-per-run`: 0\nhint: use at least 1");
    }
    let threads = args
        .threads_per_run
        .unwrap_or_else(|| (default_jobs() / runs.max(1)).max(1));
    let jobs = args
        .jobs
        .unwrap_or_else(|| (default_jobs() / threads).max(1));
    Ok((threads, jobs))
}

/// The one `study run` of any kind: opens the store of study `name` (whose file reads
/// `text`) in `dir`, trains every run of `plan` (`runs` of them) not yet recorded, and says
/// how it went; returns what it did and the store.
pub(crate) fn run_planned(
    args: &StudyRunArgs,
    kind: StudyKind,
    plan: &dyn PlannedStudy,
    runs: usize,
    (name, text, dir): (&str, &str, &Path),
) -> Result<(StudySummary, Store)> {
    let (threads_per_run, jobs) = parallelism(args, runs)?;
    // `study repair` holds the lock already.
    let _lock = if args.import_only {
        None
    } else {
        Some(lock_study(dir)?)
    };
    let mut store = open_study_store(dir, kind, name, text)?;
    if args.import_only {
        let all = plan.jobs()?;
        let imported = import_recorded(plan, &all, &mut store, dir)?;
        eprintln!(
            "study {name} rebuilt in {}: {} of {runs} runs recorded from their records; {} not yet trained (`scalelab study run {}` trains them)",
            store.path().display(),
            imported.summary.already_done,
            imported.pending.len(),
            dir.join("study.toml").display(),
        );
        return Ok((imported.summary, store));
    }
    eprintln!(
        "{} study {name} in {}: {runs} runs, {jobs} at a time, {threads_per_run} thread(s) each",
        kind.name(),
        dir.display(),
    );
    let launcher = SelfLauncher::new(threads_per_run)?;
    let interrupt = crate::interrupt::handle()?;
    let summary = run_study(
        plan,
        &mut store,
        dir,
        &launcher,
        jobs,
        &mut Lines::new(),
        &interrupt,
    )?;
    if summary.stopped {
        // Everything that ended is stored; the rest resumes with the same command.
        eprintln!(
            "study {name} interrupted: {} runs stopped at a checkpoint, {} completed now, {} not started; the same command resumes",
            summary.interrupted,
            summary.completed + summary.diverged,
            summary.total.saturating_sub(
                summary.already_done
                    + summary.completed
                    + summary.diverged
                    + summary.failed
                    + summary.interrupted
            ),
        );
        std::process::exit(crate::interrupt::INTERRUPTED_EXIT);
    }
    eprintln!(
        "study {name}: {} completed now, {} diverged, {} failed, {} were already done; {:.0} s wall",
        summary.completed,
        summary.diverged,
        summary.failed,
        summary.already_done,
        summary.wall_secs
    );
    Ok((summary, store))
}

/// Holds `DIR/study.lock` for as long as the returned file lives (the system drops the lock
/// when the process ends, `kill -9` included), so that a second `study run` (or `study
/// repair`) of the same study is refused instead of training every run a second time.
fn lock_study(dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("study.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "study {} is being run by another scalelab process (it holds {})\nhint: wait for it to finish, or stop it (Ctrl-C stops it at a checkpoint) and run this again",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The exit code of a `study run`: 1 when some runs failed (the same command retries them).
pub(crate) fn run_exit(summary: &StudySummary) -> ExitCode {
    if summary.failed > 0 {
        eprintln!("some runs failed; run the same command again to retry them");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// FLOP/s per run for a plan's time estimates: measured by the study's finished runs in
/// `dir`, else a default; with where it comes from.
pub(crate) fn rate_estimate(dir: &Path) -> (f64, &'static str) {
    match measured_rate(dir) {
        Some(r) => (r, "measured by this study's finished runs"),
        None => (
            DEFAULT_FLOPS_PER_SEC,
            "default estimate; refined once runs finish",
        ),
    }
}

/// What a run of `kind` trains on.
fn unit(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Lm => "tokens",
        RunKind::Classify => "samples",
    }
}

/// Progress lines on stderr.
pub(crate) struct Lines {
    total: usize,
    done: usize,
    flops_total: f64,
    flops_done: f64,
    started: std::time::Instant,
}

impl Lines {
    /// Progress from now.
    pub(crate) fn new() -> Self {
        Lines {
            total: 0,
            done: 0,
            flops_total: 0.0,
            flops_done: 0.0,
            started: std::time::Instant::now(),
        }
    }
}

impl StudyProgress for Lines {
    fn begin(&mut self, total: usize, done: usize, flops_total: f64, flops_done: f64) {
        self.total = total;
        self.done = done;
        self.flops_total = flops_total;
        self.flops_done = flops_done;
        eprintln!(
            "study: {total} runs, {done} already done, {:.3e} of {:.3e} FLOPs left",
            flops_total - flops_done,
            flops_total
        );
    }

    fn started(&mut self, run: &Job) {
        eprintln!(
            "  {:<10} {} {:<12} N={:<8} {} {}",
            "start",
            run.run_id,
            run.label,
            human(run.n),
            human(run.amount as f64),
            unit(run.kind)
        );
    }

    fn finished(&mut self, run: &Job, end: &RunEnd) {
        self.done += 1;
        self.flops_done += run.flops;
        let pct = 100.0 * self.flops_done / self.flops_total.max(1.0);
        let elapsed = self.started.elapsed().as_secs_f64();
        match end {
            RunEnd::Recorded {
                status,
                final_val_loss,
                test_accuracy,
                wall_secs,
            } => eprintln!(
                "  {status:<10} {} {:<12} loss {}{} in {wall_secs:.0} s   [{}/{} runs, {pct:.0}% of FLOPs, {elapsed:.0} s]",
                run.run_id,
                run.label,
                final_val_loss.map_or("-".into(), |l| format!("{l:.4}")),
                test_accuracy.map_or(String::new(), |a| format!(", test accuracy {a:.4}")),
                self.done,
                self.total
            ),
            RunEnd::Failed { message } => eprintln!(
                "  {:<10} {} {}: {message}   [{}/{} runs]",
                "failed", run.run_id, run.label, self.done, self.total
            ),
            RunEnd::Interrupted => eprintln!(
                "  {:<10} {} {}: stopped at a checkpoint   [{}/{} runs]",
                "interrupted", run.run_id, run.label, self.done, self.total
            ),
        }
    }
}

fn run_cmd(args: StudyRunArgs) -> Result<ExitCode> {
    match file_kind(&args.file)? {
        StudyKind::Classify => return crate::classify::study_run(&args),
        StudyKind::Transfer => return crate::transfer_study::study_run(&args),
        StudyKind::Scaling => {}
    }
    let (spec, text, dir) = load(&args.file, args.dir.as_deref())?;
    let plan = make_plan(&spec, &dir, &args.file)?;
    let context = (spec.name.as_str(), text.as_str(), dir.as_path());
    let (summary, store) = run_planned(&args, StudyKind::Scaling, &plan, plan.runs.len(), context)?;
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
    for r in &runs {
        println!(
            "{:<16} {:<12} seed {:<3} N={:<9} {:>9} {:<7} {:<9} {}",
            r.run_id,
            r.size,
            r.seed,
            human(r.n),
            human(r.planned_tokens as f64),
            unit(r.kind),
            r.status,
            r.final_val_loss
                .map_or(String::new(), |l| format!("loss {l:.4}"))
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

fn export(args: StudyDirArgs) -> Result<ExitCode> {
    let dir = study_dir(&args.study)?;
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
