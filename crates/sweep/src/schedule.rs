//! The local scheduler: runs a study's runs as child processes, `jobs` at a time, and records
//! each one as it ends.
//!
//! Resumability comes from three facts: a run's directory is named by its identity; a child
//! writes its record atomically and checkpoints atomically; and a result enters the store in
//! one transaction. So after any interruption, `kill -9` included, a rerun skips runs the
//! store has, imports records that were written but not yet stored, resumes the rest from
//! their checkpoints, and never trains or stores a run twice.
//!
//! A child is told to exit when its parent goes away (the parent holds the child's stdin;
//! when the parent dies the pipe closes), so a killed study leaves no orphans training.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scalelab_spec::{
    CLASSIFY_RECORD_SCHEMA_VERSION, ClassifyRecord, RUN_RECORD_SCHEMA_VERSION, RunKind, RunRecord,
};

use crate::claim::{Attempt, Claim, Holder, Worker};
use crate::{ClassifyPlan, RunState, Store, StudyPlan, SweepError};

/// One run as the scheduler sees it, of either kind: what to train and how to name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Identity (its directory's name).
    pub run_id: String,
    /// What it trains, which says which command trains it and which record it writes.
    pub kind: RunKind,
    /// A label for progress lines: the ladder's size, or the classifier's model.
    pub label: String,
    /// Parameters (in the study's convention).
    pub n: f64,
    /// Tokens (a language model) or samples (a classifier) it will train on.
    pub amount: u64,
    /// Training FLOPs it will spend.
    pub flops: f64,
    /// The spec its child process trains, as TOML.
    pub spec_toml: String,
    /// The run that must have completed before this one starts (its parent, whose weights
    /// it starts from).
    pub after: Option<String>,
}

impl Job {
    /// A job training `spec` (serialised here as the TOML its child reads).
    pub(crate) fn new<T: serde::Serialize>(
        kind: RunKind,
        run_id: &str,
        label: &str,
        (n, amount, flops): (f64, u64, f64),
        spec: &T,
    ) -> Result<Job, SweepError> {
        let spec_toml = toml::to_string(spec).map_err(|e| SweepError::Record {
            path: PathBuf::from("runs").join(run_id).join("spec.toml"),
            message: e.to_string(),
        })?;
        Ok(Job {
            run_id: run_id.to_string(),
            kind,
            label: label.to_string(),
            n,
            amount,
            flops,
            spec_toml,
            after: None,
        })
    }

    /// The job, waiting for the run `parent` to complete first.
    pub(crate) fn after(self, parent: Option<String>) -> Job {
        Job {
            after: parent,
            ..self
        }
    }
}

/// A planned study of either kind, as the runner needs it.
pub trait PlannedStudy {
    /// Its runs as jobs, in the plan's order.
    fn jobs(&self) -> Result<Vec<Job>, SweepError>;
    /// Enters its runs into `store` as planned (those it has already are left as they are).
    fn add_planned(&self, store: &mut Store) -> Result<(), SweepError>;
}

impl PlannedStudy for StudyPlan {
    /// The study's runs as jobs, smallest FLOPs first.
    fn jobs(&self) -> Result<Vec<Job>, SweepError> {
        (self.runs.iter())
            .map(|r| {
                Job::new(
                    RunKind::Lm,
                    &r.run_id,
                    &r.size,
                    (r.n, r.tokens, r.flops),
                    &r.spec,
                )
            })
            .collect()
    }

    fn add_planned(&self, store: &mut Store) -> Result<(), SweepError> {
        store.add_planned(&self.runs, self.spec.param_convention.name())
    }
}

impl PlannedStudy for ClassifyPlan {
    /// The study's runs as jobs, in the grid's order.
    fn jobs(&self) -> Result<Vec<Job>, SweepError> {
        (self.runs.iter())
            .map(|r| {
                let size = (r.params.total as f64, r.samples, r.flops);
                Job::new(RunKind::Classify, &r.run_id, &r.cell.model, size, &r.spec)
            })
            .collect()
    }

    fn add_planned(&self, store: &mut Store) -> Result<(), SweepError> {
        store.add_planned_classify(&self.runs)
    }
}

/// Builds the command that trains one run.
pub trait Launcher {
    /// The command that trains a run of `kind` with its spec at `run_dir/spec.toml`, writing
    /// its record and checkpoints into `run_dir`. Standard streams are set by the scheduler.
    fn command(&self, kind: RunKind, run_dir: &Path) -> Command;
}

/// How one run ended in this invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// The child wrote its record and it is stored.
    Recorded {
        /// Completed or diverged.
        status: RunState,
        /// Final validation loss.
        final_val_loss: Option<f64>,
        /// Test accuracy (a classifier).
        test_accuracy: Option<f64>,
        /// Wall seconds of the run.
        wall_secs: f64,
    },
    /// The child ended without a record.
    Failed {
        /// What happened, and where the log is.
        message: String,
    },
    /// The child stopped at a checkpoint when the study was interrupted.
    Interrupted,
    /// The run's claim was taken over by another worker (this one had been silent too long);
    /// its child was stopped and the run left to that worker.
    Lost,
}

/// Receives the study's progress.
pub trait StudyProgress {
    /// The study starts: `done` of `total` runs are already recorded.
    fn begin(&mut self, _total: usize, _done: usize, _flops_total: f64, _flops_done: f64) {}
    /// A run starts (or resumes).
    fn started(&mut self, _run: &Job) {}
    /// A run ended.
    fn finished(&mut self, _run: &Job, _end: &RunEnd) {}
    /// A run whose worker died or fell silent is taken over from `holder` (it then starts).
    fn took_over(&mut self, _run: &Job, _holder: &Holder) {}
}

/// What one `study run` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudySummary {
    /// Runs in the study.
    pub total: usize,
    /// Runs already recorded before this invocation (records imported included).
    pub already_done: usize,
    /// Runs that completed now.
    pub completed: usize,
    /// Runs that diverged now (recorded; they do not stop the study).
    pub diverged: usize,
    /// Runs that failed now (not recorded; retried on the next invocation).
    pub failed: usize,
    /// Runs stopped at a checkpoint by an interrupt (resumed on the next invocation).
    pub interrupted: usize,
    /// Runs recorded by other workers while this one ran.
    pub elsewhere: usize,
    /// Runs taken over from workers that died or fell silent.
    pub taken_over: usize,
    /// Whether an interrupt stopped the study before every run ended.
    pub stopped: bool,
    /// Wall seconds of this invocation.
    pub wall_secs: f64,
}

/// Directory of a run inside a study directory.
pub fn run_dir(study_dir: &Path, run_id: &str) -> PathBuf {
    study_dir.join("runs").join(run_id)
}

fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|e| SweepError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| SweepError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_atomic(path: &Path, text: &str) -> Result<(), SweepError> {
    // A name of this process's own: workers may write the same file (a failure) at once.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| SweepError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SweepError::io(path, e))
}

/// Where a study's results go: its store, kept by the one process that holds the study's
/// lock (the coordinator), or only the run directories' files (a worker beside a
/// coordinator, or a cluster's array task), which the coordinator imports. Either way every
/// record, failure and claim is a file in the run's directory, so workers on machines
/// sharing a network filesystem never write SQLite at the same time.
pub struct Book<'s> {
    store: Option<&'s mut Store>,
}

impl<'s> Book<'s> {
    /// Results stored in `store` as well as in files.
    pub fn store(store: &'s mut Store) -> Book<'s> {
        Book { store: Some(store) }
    }

    /// Results in files only.
    pub fn files() -> Book<'static> {
        Book { store: None }
    }

    fn mark_failed(
        &mut self,
        study_dir: &Path,
        run: &Job,
        message: &str,
    ) -> Result<(), SweepError> {
        write_failure(study_dir, &run.run_id, message)?;
        match &mut self.store {
            Some(store) => store.mark_failed(&run.run_id, message),
            None => Ok(()),
        }
    }

    fn mark_interrupted(&mut self, run: &Job) -> Result<(), SweepError> {
        match &mut self.store {
            Some(store) => store.mark_interrupted(&run.run_id),
            None => Ok(()),
        }
    }
}

/// The file a run's failure is kept in, so that other workers do not train it again in
/// this round; a later invocation retries it.
pub const FAILURE_FILE: &str = "failed.json";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn write_failure(study_dir: &Path, run_id: &str, message: &str) -> Result<(), SweepError> {
    let dir = run_dir(study_dir, run_id);
    std::fs::create_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
    let text = serde_json::json!({ "message": message, "at": unix_now() }).to_string();
    write_atomic(&dir.join(FAILURE_FILE), &text)
}

/// The failure of run `run_id` written at or after `since` (seconds since the epoch), if any.
fn failure_since(study_dir: &Path, run_id: &str, since: f64) -> Option<String> {
    let path = run_dir(study_dir, run_id).join(FAILURE_FILE);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    (value["at"].as_f64()? >= since).then(|| value["message"].as_str().unwrap_or("").to_string())
}

/// What the store holds of a study once its records on disk are imported.
pub struct Imported<'a> {
    /// The count so far: runs, and those recorded (imported ones included).
    pub summary: StudySummary,
    /// Runs not recorded yet.
    pub pending: Vec<&'a Job>,
    /// Runs that completed (not diverged): the ones a child may start from.
    pub completed: HashSet<String>,
    /// FLOPs of the recorded runs.
    pub flops_done: f64,
}

/// Enters the runs of `plan` (`all`, its jobs) into the book's store (if it has one) as
/// planned, and imports every record a run wrote that the store does not hold yet (a child
/// whose parent died before storing it, another worker's run, or a store rebuilt from the run
/// directories): the first half of a study run, and all of `study repair`. A record that does
/// not read (damaged, another run's, or of a newer schema) is left where it is and its run is
/// failed with the reason, not trained again over it.
pub fn import_recorded<'a>(
    plan: &dyn PlannedStudy,
    all: &'a [Job],
    book: &mut Book<'_>,
    study_dir: &Path,
) -> Result<Imported<'a>, SweepError> {
    let stored = match &mut book.store {
        Some(store) => {
            plan.add_planned(store)?;
            store.runs()?
        }
        None => Vec::new(),
    };
    let is_done = |id: &str| {
        stored
            .iter()
            .any(|s| s.run_id == id && s.status.is_recorded())
    };
    let completed: HashSet<String> = (stored.iter())
        .filter(|s| s.status == RunState::Completed)
        .map(|s| s.run_id.clone())
        .collect();
    let mut imported = Imported {
        summary: StudySummary {
            total: all.len(),
            ..StudySummary::default()
        },
        pending: Vec::new(),
        completed,
        flops_done: 0.0,
    };
    for run in all {
        if is_done(&run.run_id) {
            imported.summary.already_done += 1;
            imported.flops_done += run.flops;
            continue;
        }
        let record_path = run_dir(study_dir, &run.run_id).join("record.json");
        if record_path.is_file() {
            match import(book, run, &record_path) {
                Ok(end) => {
                    if let RunEnd::Recorded {
                        status: RunState::Completed,
                        ..
                    } = end
                    {
                        imported.completed.insert(run.run_id.clone());
                    }
                    imported.summary.already_done += 1;
                    imported.flops_done += run.flops;
                }
                // Training the run again would write over its record: it is left as it is,
                // and the run is failed with the reason.
                Err(e) => {
                    book.mark_failed(study_dir, run, &e.to_string())?;
                    imported.summary.failed += 1;
                }
            }
            continue;
        }
        imported.pending.push(run);
    }
    Ok(imported)
}

/// Imports into `store` the record of every run it holds but has not recorded, where one is
/// on disk (a worker's, an array task's): what a study's coordinator does for runs it did
/// not train itself, without planning the study again. How many it imported; a record that
/// does not read fails its run with the reason.
pub fn import_on_disk(store: &mut Store, study_dir: &Path) -> Result<usize, SweepError> {
    let mut imported = 0;
    for stored in store.runs()? {
        let path = run_dir(study_dir, &stored.run_id).join("record.json");
        if stored.status.is_recorded() || !path.is_file() {
            continue;
        }
        let job = Job {
            run_id: stored.run_id.clone(),
            kind: stored.kind,
            label: stored.size.clone(),
            n: stored.n,
            amount: stored.planned_tokens,
            flops: 0.0,
            spec_toml: String::new(),
            after: None,
        };
        let mut book = Book::store(store);
        match import(&mut book, &job, &path) {
            Ok(_) => imported += 1,
            Err(e @ (SweepError::Record { .. } | SweepError::Io { .. })) => {
                book.mark_failed(study_dir, &job, &e.to_string())?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(imported)
}

/// The exit code of a training process stopped at a checkpoint by Ctrl-C or SIGTERM (128 +
/// SIGINT, the shell's convention).
pub const INTERRUPTED_EXIT: i32 = 130;

/// How a study is run by this process.
pub struct Runner<'a> {
    /// Builds the command that trains a run.
    pub launcher: &'a dyn Launcher,
    /// Runs at a time.
    pub jobs: usize,
    /// Set by Ctrl-C or SIGTERM (or a cluster's warning signal): stop at checkpoints.
    pub interrupt: &'a AtomicBool,
    /// This process as a worker, whose claims say who trains what.
    pub worker: &'a Worker,
    /// Train only this run (a cluster's array task), waiting for its parent if it has one.
    pub only: Option<&'a str>,
}

/// How often a worker looks again at runs other workers hold.
const RESCAN: Duration = Duration::from_millis(500);

/// The one study runner: enters the runs of `plan` (of any kind) into the book's store (if
/// it keeps one) as planned, then trains every run not yet recorded (or only `runner.only`),
/// `runner.jobs` child processes at a time, largest FLOPs first, recording each as it ends.
///
/// Each run is claimed before it starts (see [`crate::claim`]), so any number of runners
/// on one study, on one machine or on many, train each run once: a run another live worker
/// holds is waited for (its record imported when it appears), and one whose worker died or
/// fell silent is taken over and resumes from its checkpoint. Once `interrupt` is set, it
/// starts nothing more, asks each running child to stop (SIGTERM: the child checkpoints at
/// its next step and exits with [`INTERRUPTED_EXIT`]), waits for them, and marks them
/// interrupted. Children run in process groups of their own, so a Ctrl-C at the terminal
/// reaches them only through this runner.
pub fn run_study(
    plan: &dyn PlannedStudy,
    book: &mut Book<'_>,
    study_dir: &Path,
    runner: &Runner<'_>,
    progress: &mut dyn StudyProgress,
) -> Result<StudySummary, SweepError> {
    let mut all = plan.jobs()?;
    // One run alone (an array task) reads no other run's record: its parent's, if it has
    // one, is looked at while it waits.
    if let Some(only) = runner.only {
        all.retain(|j| j.run_id == only);
    }
    let all = &all;
    let started = Instant::now();
    let since = unix_now();
    let Imported {
        mut summary,
        mut pending,
        mut completed,
        flops_done,
    } = import_recorded(plan, all, book, study_dir)?;
    progress.begin(
        summary.total,
        summary.already_done,
        all.iter().map(|j| j.flops).sum(),
        flops_done,
    );
    // Ascending FLOPs (stable: a scaling plan is in that order already), so the most
    // expensive run whose parent (if any) has completed starts first: longest processing
    // time first keeps every core busy to the end instead of leaving the largest run to
    // finish alone.
    pending.sort_by(|a, b| a.flops.total_cmp(&b.flops));

    let jobs = runner.jobs.max(1);
    let beat = runner.worker.beat_interval();
    let mut active: Vec<Active<'_>> = Vec::new();
    let mut stopping = false;
    let mut last_scan: Option<Instant> = None;
    while (!pending.is_empty() && !stopping) || !active.is_empty() {
        if !stopping && runner.interrupt.load(Ordering::Relaxed) {
            stopping = true;
            for a in &active {
                signal(&a.child, "TERM");
            }
        }
        let scan_due = last_scan.is_none_or(|t| t.elapsed() >= RESCAN);
        if !stopping && active.len() < jobs && scan_due {
            last_scan = Some(Instant::now());
            // From the most expensive down: each run is recorded meanwhile (by another
            // worker), failed elsewhere in this round, held by a live worker (looked at
            // again later), or claimed and started here.
            let mut i = pending.len();
            while active.len() < jobs && i > 0 {
                i -= 1;
                let run = pending[i];
                match parent_state(run, &pending, &active, &mut completed, study_dir, since) {
                    ParentState::Waits => continue,
                    ParentState::Lost(message) => {
                        pending.remove(i);
                        book.mark_failed(study_dir, run, &message)?;
                        summary.failed += 1;
                        progress.finished(run, &RunEnd::Failed { message });
                        continue;
                    }
                    ParentState::Ready => {}
                }
                let dir = run_dir(study_dir, &run.run_id);
                let record_path = dir.join("record.json");
                if record_path.is_file() {
                    pending.remove(i);
                    settle(book, study_dir, run, &mut summary, &mut completed, None)?;
                    summary.elsewhere += 1;
                    continue;
                }
                if let Some(message) = failure_since(study_dir, &run.run_id, since) {
                    pending.remove(i);
                    if let Some(store) = &mut book.store {
                        store.mark_failed(&run.run_id, &message)?;
                    }
                    summary.failed += 1;
                    progress.finished(run, &RunEnd::Failed { message });
                    continue;
                }
                let (claim, took_over) = match runner.worker.try_claim(&dir)? {
                    Attempt::Held(_) => continue,
                    Attempt::Claimed { claim, took_over } => (claim, took_over),
                };
                // Recorded between the look above and the claim: nothing to train.
                if record_path.is_file() {
                    claim.release();
                    continue;
                }
                pending.remove(i);
                if let Some(holder) = &took_over {
                    summary.taken_over += 1;
                    progress.took_over(run, holder);
                }
                let mut claim = claim;
                match launch(runner.launcher, run, &dir) {
                    Ok(child) => {
                        claim.set_child(child.id())?;
                        progress.started(run);
                        active.push(Active { run, child, claim });
                    }
                    Err(message) => {
                        book.mark_failed(study_dir, run, &message)?;
                        claim.release();
                        summary.failed += 1;
                        progress.finished(run, &RunEnd::Failed { message });
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut still = Vec::with_capacity(active.len());
        for mut a in active {
            let run = a.run;
            match a.child.try_wait() {
                Ok(None) => {
                    if a.claim.beat(beat)? {
                        still.push(a);
                    } else {
                        // Silent too long, another worker took the run over: leave it to
                        // them at once, so that two never write its checkpoints.
                        signal(&a.child, "KILL");
                        let _ = a.child.wait();
                        progress.finished(run, &RunEnd::Lost);
                        pending.push(run);
                        pending.sort_by(|a, b| a.flops.total_cmp(&b.flops));
                    }
                }
                Ok(Some(exit))
                    if stopping
                        && exit.code() == Some(INTERRUPTED_EXIT)
                        && !run_dir(study_dir, &run.run_id)
                            .join("record.json")
                            .is_file() =>
                {
                    book.mark_interrupted(run)?;
                    a.claim.release();
                    summary.interrupted += 1;
                    progress.finished(run, &RunEnd::Interrupted);
                }
                Ok(Some(exit)) => {
                    let end = settle(
                        book,
                        study_dir,
                        run,
                        &mut summary,
                        &mut completed,
                        Some(&format!("{exit}")),
                    )?;
                    a.claim.release();
                    progress.finished(run, &end);
                    last_scan = None;
                }
                Err(e) => {
                    let message = format!("lost track of the training process: {e}");
                    book.mark_failed(study_dir, run, &message)?;
                    a.claim.release();
                    summary.failed += 1;
                    progress.finished(run, &RunEnd::Failed { message });
                }
            }
        }
        active = still;
    }
    summary.wall_secs = started.elapsed().as_secs_f64();
    summary.stopped = stopping;
    Ok(summary)
}

/// A run training in a child process of this runner, under its claim.
struct Active<'a> {
    run: &'a Job,
    child: Child,
    claim: Claim,
}

/// Sends `signal` to `child` through the `kill` command (the workspace has no unsafe code).
/// A child that has just ended ignores it.
fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Writes the run's spec into `dir` and starts its training process there; why not, if not.
fn launch(launcher: &dyn Launcher, run: &Job, dir: &Path) -> Result<Child, String> {
    write_atomic(&dir.join("spec.toml"), &run.spec_toml).map_err(|e| e.to_string())?;
    let log_path = dir.join("stderr.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let mut cmd = launcher.command(run.kind, dir);
    cmd.process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    cmd.spawn()
        .map_err(|e| format!("could not start the training process: {e}"))
}

/// Stores the record `run` left (its child exited with `exit`; None: another worker trained
/// it) or fails the run, and counts it.
fn settle(
    book: &mut Book<'_>,
    study_dir: &Path,
    run: &Job,
    summary: &mut StudySummary,
    completed: &mut HashSet<String>,
    exit: Option<&str>,
) -> Result<RunEnd, SweepError> {
    let end = collect(book, study_dir, run, exit.unwrap_or("in another worker"))?;
    match &end {
        RunEnd::Recorded {
            status: RunState::Completed,
            ..
        } => {
            completed.insert(run.run_id.clone());
            if exit.is_some() {
                summary.completed += 1;
            }
        }
        RunEnd::Recorded { .. } if exit.is_some() => summary.diverged += 1,
        RunEnd::Recorded { .. } => {}
        RunEnd::Failed { .. } => summary.failed += 1,
        RunEnd::Interrupted | RunEnd::Lost => summary.interrupted += 1,
    }
    Ok(end)
}

/// Whether a run can start as far as its parent (if any) goes.
enum ParentState {
    /// No parent, or it completed.
    Ready,
    /// Its parent is still to be trained, here or by another worker.
    Waits,
    /// Its parent ended without completing: why the run cannot start.
    Lost(String),
}

/// Where `run`'s parent stands: pending or training here, recorded (completed or not) by
/// anyone, or failed in this round by anyone.
fn parent_state(
    run: &Job,
    pending: &[&Job],
    active: &[Active<'_>],
    completed: &mut HashSet<String>,
    study_dir: &Path,
    since: f64,
) -> ParentState {
    let Some(parent) = run.after.as_deref() else {
        return ParentState::Ready;
    };
    if completed.contains(parent) {
        return ParentState::Ready;
    }
    let cannot = || {
        ParentState::Lost(format!(
            "its parent run {parent} did not complete, so there are no weights to start from; see that run's log"
        ))
    };
    let here =
        pending.iter().any(|p| p.run_id == parent) || active.iter().any(|a| a.run.run_id == parent);
    if here {
        return ParentState::Waits;
    }
    // Not this runner's to train (an array task trains one run): another worker's.
    let record = run_dir(study_dir, parent).join("record.json");
    if record.is_file() {
        let status = read_record::<serde_json::Value>(&record)
            .ok()
            .and_then(|v| v["status"]["status"].as_str().map(str::to_string));
        return if status.as_deref() == Some("completed") {
            completed.insert(parent.to_string());
            ParentState::Ready
        } else {
            cannot()
        };
    }
    if failure_since(study_dir, parent, since).is_some() {
        return cannot();
    }
    ParentState::Waits
}

/// Reads the record of `run` at `path` (checking it is that run's), stores it if the book
/// keeps a store, and says how it ended.
fn import(book: &mut Book<'_>, run: &Job, path: &Path) -> Result<RunEnd, SweepError> {
    match run.kind {
        RunKind::Lm => {
            let record = read_run_record(path, run, RUN_RECORD_SCHEMA_VERSION, |r: &RunRecord| {
                &r.run_id
            })?;
            if let Some(store) = &mut book.store {
                store.record(&record)?;
            }
            Ok(RunEnd::Recorded {
                status: RunState::from(&record.status),
                final_val_loss: record.result.final_val_loss,
                test_accuracy: None,
                wall_secs: record.wall_secs,
            })
        }
        RunKind::Classify => {
            let record = read_run_record(
                path,
                run,
                CLASSIFY_RECORD_SCHEMA_VERSION,
                |r: &ClassifyRecord| &r.run_id,
            )?;
            if let Some(store) = &mut book.store {
                store.record_classify(&record)?;
            }
            Ok(RunEnd::Recorded {
                status: RunState::from(&record.status),
                final_val_loss: Some(record.result.validation.loss),
                test_accuracy: Some(record.result.test.accuracy),
                wall_secs: record.wall_secs,
            })
        }
    }
}

/// The record at `path`, checked to be `run`'s (`id_of` reads its id).
fn read_run_record<T: serde::de::DeserializeOwned>(
    path: &Path,
    run: &Job,
    newest: u32,
    id_of: fn(&T) -> &str,
) -> Result<T, SweepError> {
    // A record from a newer scalelab may read as this one's, or not; either way it is named.
    let value: serde_json::Value = read_record(path)?;
    let version = value["schema_version"].as_u64().unwrap_or(0);
    if version > u64::from(newest) {
        return Err(SweepError::Record {
            path: path.to_path_buf(),
            message: format!(
                "it has record schema version {version}, written by a newer scalelab; this one reads versions up to {newest}: use the newer scalelab for this study"
            ),
        });
    }
    let record: T = serde_json::from_value(value).map_err(|e| SweepError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let recorded = id_of(&record);
    if recorded != run.run_id {
        return Err(SweepError::Record {
            path: path.to_path_buf(),
            message: format!(
                "the training process recorded run {recorded} but the study planned {}; the data or tokenizer changed between planning and training",
                run.run_id
            ),
        });
    }
    Ok(record)
}

/// Stores the record a child left, or fails the run.
fn collect(
    book: &mut Book<'_>,
    study_dir: &Path,
    run: &Job,
    exit: &str,
) -> Result<RunEnd, SweepError> {
    let dir = run_dir(study_dir, &run.run_id);
    let record_path = dir.join("record.json");
    if !record_path.is_file() {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        let message = format!(
            "training process ended ({exit}) without a record; last log line: {last:?}; full log: {}",
            dir.join("stderr.log").display()
        );
        book.mark_failed(study_dir, run, &message)?;
        return Ok(RunEnd::Failed { message });
    }
    match import(book, run, &record_path) {
        Ok(end) => Ok(end),
        Err(e @ (SweepError::Record { .. } | SweepError::Io { .. })) => {
            let message = e.to_string();
            book.mark_failed(study_dir, run, &message)?;
            Ok(RunEnd::Failed { message })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, flops: f64, after: Option<&str>) -> Job {
        Job {
            run_id: id.into(),
            kind: RunKind::Lm,
            label: id.into(),
            n: 1.0,
            amount: 1,
            flops,
            spec_toml: String::new(),
            after: after.map(str::to_string),
        }
    }

    #[test]
    fn a_child_waits_for_its_parent_wherever_it_trains_and_fails_when_it_cannot_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (parent, child) = (job("parent", 1.0, None), job("child", 9.0, Some("parent")));
        let mut completed = HashSet::new();
        let state = |pending: &[&Job], completed: &mut HashSet<String>, since: f64| {
            parent_state(&child, pending, &[], completed, dir, since)
        };
        // Pending here, or nowhere yet (another worker's, not started): it waits.
        assert!(matches!(
            state(&[&parent], &mut completed, 0.0),
            ParentState::Waits
        ));
        assert!(matches!(
            state(&[], &mut completed, 0.0),
            ParentState::Waits
        ));
        // Failed in this round by anyone: the child cannot start; an older failure is
        // retried, so the child waits.
        write_failure(dir, "parent", "out of memory").unwrap();
        assert!(matches!(
            state(&[], &mut completed, 0.0),
            ParentState::Lost(_)
        ));
        assert!(matches!(
            state(&[], &mut completed, unix_now() + 10.0),
            ParentState::Waits
        ));
        // Recorded by another worker: completed, or not (diverged).
        let record = run_dir(dir, "parent").join("record.json");
        std::fs::write(&record, r#"{"status": {"status": "diverged"}}"#).unwrap();
        assert!(matches!(
            state(&[], &mut completed, 0.0),
            ParentState::Lost(_)
        ));
        std::fs::write(&record, r#"{"status": {"status": "completed"}}"#).unwrap();
        assert!(matches!(
            state(&[], &mut completed, 0.0),
            ParentState::Ready
        ));
        assert!(completed.contains("parent"));
        assert!(matches!(
            parent_state(&parent, &[], &[], &mut completed, dir, 0.0),
            ParentState::Ready
        ));
    }
}
