//! What every kind of study shares to run: which kind a file or store holds, its store and
//! lock, how many runs at a time, the one `study run` path (`run_planned`) with its training
//! processes (`SelfLauncher`) and progress lines, and the rate behind time estimates.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use scalelab_sweep::claim::Holder;
use scalelab_sweep::{
    Book, DEFAULT_CLAIM_TIMEOUT, Job, Launcher, PlannedStudy, RunEnd, RunKind, RunState, Runner,
    Store, StudyProgress, StudySummary, Worker, import_recorded, run_study,
};

use scalelab_spec::TrainDevice;

use crate::args::StudyRunArgs;
use crate::{human, read_toml};

/// A rough rate for estimates before any run of the study has finished: FLOP/s of one
/// single-threaded run of a small GPT (the quickstart's runs averaged 37 GFLOP/s each on a
/// 2-core AVX-512 Xeon, BENCHMARKS.md; taken lower for CPUs without AVX-512).
pub(crate) const DEFAULT_FLOPS_PER_SEC: f64 = 2e10;

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

/// Starts `scalelab train` on a run's spec, in its directory.
pub(crate) struct SelfLauncher {
    exe: PathBuf,
    threads: usize,
    device: Option<TrainDevice>,
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
        if let Some(device) = self.device {
            c.arg("--device").arg(device.to_string());
        }
        if kind == RunKind::Lm {
            c.arg("--quiet");
        }
        c
    }
}

impl SelfLauncher {
    /// This program, training with `threads` threads a run, on `device` (else the spec's).
    pub(crate) fn new(threads: usize, device: Option<TrainDevice>) -> Result<Self> {
        Ok(SelfLauncher {
            exe: std::env::current_exe().context("locating the scalelab program")?,
            threads,
            device,
        })
    }
}

/// The four kinds of study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StudyKind {
    /// A ladder of language models over budgets (scaling laws, compute-optimal).
    Scaling,
    /// A grid of classifiers.
    Classify,
    /// Pre-training, then fine-tuning and training from scratch (the laws of transfer).
    Transfer,
    /// Dense models, and compressed ones set against them.
    Compression,
}

impl StudyKind {
    /// The name the store keeps under its `kind` key.
    fn name(self) -> &'static str {
        match self {
            StudyKind::Scaling => "scaling",
            StudyKind::Classify => "classify",
            StudyKind::Transfer => "transfer",
            StudyKind::Compression => "compression",
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
        } else if scalelab_sweep::is_compression_study(&table) {
            StudyKind::Compression
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
        Some("compression") => StudyKind::Compression,
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
/// per core, or all cores shared when there are fewer runs than cores; on the GPU, one run
/// at a time (one device) with every core.
pub(crate) fn parallelism(args: &StudyRunArgs, runs: usize) -> Result<(usize, usize)> {
    if args.threads_per_run == Some(0) {
        bail!("invalid value for `--threads-per-run`: 0\nhint: use at least 1");
    }
    if args.device == Some(TrainDevice::Gpu) {
        if args.jobs.is_some_and(|j| j > 1) {
            bail!(
                "--jobs {} with --device gpu: GPU runs train one at a time on the one device scalelab uses\nhint: leave --jobs out; to use several GPUs, run one `study run --device gpu` per GPU (CUBECL_WGPU_DEFAULT_DEVICE=DiscreteGpu(N)) on the same study: each run is claimed once",
                args.jobs.unwrap_or(1)
            );
        }
        return Ok((args.threads_per_run.unwrap_or_else(default_jobs), 1));
    }
    let threads = args
        .threads_per_run
        .unwrap_or_else(|| (default_jobs() / runs.max(1)).max(1));
    let jobs = args
        .jobs
        .unwrap_or_else(|| (default_jobs() / threads).max(1));
    Ok((threads, jobs))
}

/// The one `study run` of any kind: trains every run of `plan` (`runs` of them) of study
/// `name` (whose file reads `text`) in `dir` not yet recorded, and says how it went.
///
/// The process that holds the study's lock keeps its store (the coordinator); any other
/// `study run` of the same study joins as a worker: its runs are claimed as the
/// coordinator's are, recorded as files, and imported by whichever process holds the lock
/// (at its end, this one if the coordinator has gone). Returns what it did and, if it could
/// take the lock, the store.
pub(crate) fn run_planned(
    args: &StudyRunArgs,
    kind: StudyKind,
    plan: &dyn PlannedStudy,
    runs: usize,
    (name, text, dir): (&str, &str, &Path),
) -> Result<(StudySummary, Option<Store>)> {
    let (threads_per_run, jobs) = parallelism(args, runs)?;
    if args.import_only {
        // `study repair` holds the lock already.
        let mut store = open_study_store(dir, kind, name, text)?;
        let all = plan.jobs()?;
        let imported = import_recorded(plan, &all, &mut Book::store(&mut store), dir)?;
        eprintln!(
            "study {name} rebuilt in {}: {} of {runs} runs recorded from their records; {} not yet trained (`scalelab study run {}` trains them)",
            store.path().display(),
            imported.summary.already_done,
            imported.pending.len(),
            dir.join("study.toml").display(),
        );
        return Ok((imported.summary, Some(store)));
    }
    let lock = try_lock_study(dir)?;
    let mut store = match &lock {
        Some(_) => Some(open_study_store(dir, kind, name, text)?),
        None => {
            eprintln!(
                "study {name} in {} is being run by another scalelab process (it holds {}); this one joins it as a worker: each run is trained once, by whichever worker claims it",
                dir.display(),
                dir.join("study.lock").display()
            );
            None
        }
    };
    eprintln!(
        "{} study {name} in {}: {runs} runs, {jobs} at a time, {threads_per_run} thread(s) each",
        kind.name(),
        dir.display(),
    );
    let launcher = SelfLauncher::new(threads_per_run, args.device)?;
    let interrupt = crate::interrupt::handle()?;
    let worker = Worker::current(claim_timeout(args.claim_timeout)?);
    let runner = Runner {
        launcher: &launcher,
        jobs,
        interrupt: &interrupt,
        worker: &worker,
        only: None,
    };
    let mut book = match &mut store {
        Some(store) => Book::store(store),
        None => Book::files(),
    };
    let trackers =
        crate::export::StudyTrackers::of(dir, name, args.tensorboard.as_deref(), &args.mlflow)?;
    let mut lines = Lines::new().with_trackers(trackers);
    let summary = run_study(plan, &mut book, dir, &runner, &mut lines)?;
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
                    + summary.elsewhere
            ),
        );
        std::process::exit(crate::interrupt::INTERRUPTED_EXIT);
    }
    eprintln!(
        "study {name}: {} completed now, {} diverged, {} failed, {} were already done{}; {:.0} s wall",
        summary.completed,
        summary.diverged,
        summary.failed,
        summary.already_done,
        if summary.elsewhere + summary.taken_over > 0 {
            format!(
                ", {} recorded by other workers meanwhile, {} taken over from workers that died",
                summary.elsewhere, summary.taken_over
            )
        } else {
            String::new()
        },
        summary.wall_secs
    );
    if let Some(trackers) = &mut lines.trackers {
        trackers.finish()?;
    }
    // A worker whose coordinator has gone imports what the workers recorded.
    if store.is_none()
        && let Some(_lock) = try_lock_study(dir)?
    {
        let mut store = open_study_store(dir, kind, name, text)?;
        let all = plan.jobs()?;
        import_recorded(plan, &all, &mut Book::store(&mut store), dir)?;
        return Ok((summary, Some(store)));
    }
    if store.is_none() {
        eprintln!(
            "the process that holds {} imports this worker's records and writes the report",
            dir.join("study.lock").display()
        );
    }
    drop(lock);
    Ok((summary, store))
}

/// The claim timeout of `--claim-timeout SECS`, checked.
pub(crate) fn claim_timeout(secs: Option<u64>) -> Result<std::time::Duration> {
    match secs {
        None => Ok(DEFAULT_CLAIM_TIMEOUT),
        Some(s @ 4..=604_800) => Ok(std::time::Duration::from_secs(s)),
        Some(s) => bail!(
            "invalid value for `--claim-timeout`: {s} seconds\nhint: give 4 to 604800 seconds (a week); a worker renews its claims every quarter of it"
        ),
    }
}

/// Holds `DIR/study.lock` for as long as the returned file lives (the system drops the lock
/// when the process ends, `kill -9` included): the holder alone writes the study's store.
/// None when another process holds it.
pub(crate) fn try_lock_study(dir: &Path) -> Result<Option<std::fs::File>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("study.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The study's lock, or an error saying who holds it (`study repair` moves the store aside,
/// which no other process may be writing).
pub(crate) fn lock_study(dir: &Path) -> Result<std::fs::File> {
    try_lock_study(dir)?.with_context(|| {
        format!(
            "study {} is being run by another scalelab process (it holds {})\nhint: wait for it to finish, or stop it (Ctrl-C stops it at a checkpoint) and run this again",
            dir.display(),
            dir.join("study.lock").display()
        )
    })
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
pub(crate) fn unit(kind: RunKind) -> &'static str {
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
    /// TensorBoard and MLflow, told of each recorded run.
    pub(crate) trackers: Option<crate::export::StudyTrackers>,
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
            trackers: None,
        }
    }

    /// Progress that also tells `trackers` of each recorded run.
    pub(crate) fn with_trackers(mut self, trackers: crate::export::StudyTrackers) -> Self {
        self.trackers = Some(trackers);
        self
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
            RunEnd::Lost => eprintln!(
                "  {:<10} {} {}: another worker took the run over (this one was silent past the claim timeout); left to it",
                "lost", run.run_id, run.label
            ),
        }
        if let (Some(trackers), RunEnd::Recorded { .. }) = (&mut self.trackers, end) {
            trackers.recorded(&run.run_id);
        }
    }

    fn took_over(&mut self, run: &Job, holder: &Holder) {
        eprintln!(
            "  {:<10} {} {}: its worker {} is gone or silent; resuming the run here from its checkpoint",
            "take over", run.run_id, run.label, holder.worker
        );
    }
}
