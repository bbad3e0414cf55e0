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

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scalelab_spec::RunRecord;

use crate::{PlannedRun, RunState, Store, StudyPlan, SweepError};

/// Builds the command that trains one run.
pub trait Launcher {
    /// The command that trains `run` with its spec at `run_dir/spec.toml`, writing its record
    /// and checkpoints into `run_dir`. Standard streams are set by the scheduler.
    fn command(&self, run: &PlannedRun, run_dir: &Path) -> Command;
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
        /// Wall seconds of the run.
        wall_secs: f64,
    },
    /// The child ended without a record.
    Failed {
        /// What happened, and where the log is.
        message: String,
    },
}

/// Receives the study's progress.
pub trait StudyProgress {
    /// The study starts: `done` of `total` runs are already recorded.
    fn begin(&mut self, _total: usize, _done: usize, _flops_total: f64, _flops_done: f64) {}
    /// A run starts (or resumes).
    fn started(&mut self, _run: &PlannedRun) {}
    /// A run ended.
    fn finished(&mut self, _run: &PlannedRun, _end: &RunEnd) {}
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
    /// Wall seconds of this invocation.
    pub wall_secs: f64,
}

/// Directory of a run inside a study directory.
pub fn run_dir(study_dir: &Path, run_id: &str) -> PathBuf {
    study_dir.join("runs").join(run_id)
}

fn read_record(path: &Path) -> Result<RunRecord, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|e| SweepError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| SweepError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_atomic(path: &Path, text: &str) -> Result<(), SweepError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| SweepError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SweepError::io(path, e))
}

/// Runs every run of `plan` that the store does not have yet, `jobs` at a time.
pub fn run_study(
    plan: &StudyPlan,
    store: &mut Store,
    study_dir: &Path,
    launcher: &dyn Launcher,
    jobs: usize,
    progress: &mut dyn StudyProgress,
) -> Result<StudySummary, SweepError> {
    let started = Instant::now();
    store.add_planned(&plan.runs, plan.spec.param_convention.name())?;
    let stored = store.runs()?;
    let is_done = |id: &str| {
        stored
            .iter()
            .any(|s| s.run_id == id && s.status.is_recorded())
    };
    let mut summary = StudySummary {
        total: plan.runs.len(),
        ..StudySummary::default()
    };
    let mut pending: Vec<&PlannedRun> = Vec::new();
    let mut flops_done = 0.0;
    for run in &plan.runs {
        if is_done(&run.run_id) {
            summary.already_done += 1;
            flops_done += run.flops;
            continue;
        }
        // A record written by a child whose parent died before storing it.
        let record_path = run_dir(study_dir, &run.run_id).join("record.json");
        if record_path.is_file()
            && let Ok(record) = read_record(&record_path)
            && record.run_id == run.run_id
        {
            store.record(&record)?;
            summary.already_done += 1;
            flops_done += run.flops;
            continue;
        }
        pending.push(run);
    }
    progress.begin(
        summary.total,
        summary.already_done,
        plan.total_flops(),
        flops_done,
    );
    // The plan is in ascending FLOPs, so pop() starts the most expensive run first: longest
    // processing time first keeps every core busy to the end instead of leaving the largest
    // run to finish alone.

    let jobs = jobs.max(1);
    let mut active: Vec<(&PlannedRun, Child)> = Vec::new();
    while !pending.is_empty() || !active.is_empty() {
        while active.len() < jobs
            && let Some(run) = pending.pop()
        {
            let dir = run_dir(study_dir, &run.run_id);
            std::fs::create_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
            let spec = toml::to_string(&run.spec).map_err(|e| SweepError::Record {
                path: dir.join("spec.toml"),
                message: e.to_string(),
            })?;
            write_atomic(&dir.join("spec.toml"), &spec)?;
            let log_path = dir.join("stderr.log");
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| SweepError::io(&log_path, e))?;
            let mut cmd = launcher.command(run, &dir);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            progress.started(run);
            match cmd.spawn() {
                Ok(child) => active.push((run, child)),
                Err(e) => {
                    let message = format!("could not start the training process: {e}");
                    store.mark_failed(&run.run_id, &message)?;
                    summary.failed += 1;
                    progress.finished(run, &RunEnd::Failed { message });
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut still = Vec::with_capacity(active.len());
        for (run, mut child) in active {
            match child.try_wait() {
                Ok(None) => still.push((run, child)),
                Ok(Some(exit)) => {
                    let end = collect(store, study_dir, run, &format!("{exit}"))?;
                    match &end {
                        RunEnd::Recorded {
                            status: RunState::Diverged,
                            ..
                        } => summary.diverged += 1,
                        RunEnd::Recorded { .. } => summary.completed += 1,
                        RunEnd::Failed { .. } => summary.failed += 1,
                    }
                    progress.finished(run, &end);
                }
                Err(e) => {
                    let message = format!("lost track of the training process: {e}");
                    store.mark_failed(&run.run_id, &message)?;
                    summary.failed += 1;
                    progress.finished(run, &RunEnd::Failed { message });
                }
            }
        }
        active = still;
    }
    summary.wall_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Stores the record a child left, or marks the run failed.
fn collect(
    store: &mut Store,
    study_dir: &Path,
    run: &PlannedRun,
    exit: &str,
) -> Result<RunEnd, SweepError> {
    let dir = run_dir(study_dir, &run.run_id);
    let record_path = dir.join("record.json");
    let failed = |message: String| -> Result<RunEnd, SweepError> {
        store.mark_failed(&run.run_id, &message)?;
        Ok(RunEnd::Failed { message })
    };
    if !record_path.is_file() {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        return failed(format!(
            "training process ended ({exit}) without a record; last log line: {last:?}; full log: {}",
            dir.join("stderr.log").display()
        ));
    }
    let record = match read_record(&record_path) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    if record.run_id != run.run_id {
        return failed(format!(
            "the training process recorded run {} but the study planned {}; the corpus or tokenizer changed between planning and training",
            record.run_id, run.run_id
        ));
    }
    store.record(&record)?;
    Ok(RunEnd::Recorded {
        status: RunState::from(&record.status),
        final_val_loss: record.final_val_loss,
        wall_secs: record.wall_secs,
    })
}
