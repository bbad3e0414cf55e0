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
}

/// Receives the study's progress.
pub trait StudyProgress {
    /// The study starts: `done` of `total` runs are already recorded.
    fn begin(&mut self, _total: usize, _done: usize, _flops_total: f64, _flops_done: f64) {}
    /// A run starts (or resumes).
    fn started(&mut self, _run: &Job) {}
    /// A run ended.
    fn finished(&mut self, _run: &Job, _end: &RunEnd) {}
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
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| SweepError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SweepError::io(path, e))
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

/// Enters the runs of `plan` (`all`, its jobs) into the store as planned, and imports every
/// record a run wrote that the store does not hold yet (a child whose parent died before
/// storing it, or a store rebuilt from the run directories): the first half of a study run,
/// and all of `study repair`. A record that does not read (damaged, another run's, or of a
/// newer schema) is left where it is and its run is failed with the reason, not trained
/// again over it.
pub fn import_recorded<'a>(
    plan: &dyn PlannedStudy,
    all: &'a [Job],
    store: &mut Store,
    study_dir: &Path,
) -> Result<Imported<'a>, SweepError> {
    plan.add_planned(store)?;
    let stored = store.runs()?;
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
            match import(store, run, &record_path) {
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
                    store.mark_failed(&run.run_id, &e.to_string())?;
                    imported.summary.failed += 1;
                }
            }
            continue;
        }
        imported.pending.push(run);
    }
    Ok(imported)
}

/// The exit code of a training process stopped at a checkpoint by Ctrl-C or SIGTERM (128 +
/// SIGINT, the shell's convention).
pub const INTERRUPTED_EXIT: i32 = 130;

/// The one study runner: enters the runs of `plan` (scaling or classification) into the
/// store as planned, then trains every one the store has not recorded, `jobs` child
/// processes at a time, largest FLOPs first, recording each as it ends. Once `interrupt` is
/// set (Ctrl-C or SIGTERM), it starts nothing more, asks each running child to stop (SIGTERM:
/// the child checkpoints at its next step and exits with [`INTERRUPTED_EXIT`]), waits for
/// them, and marks them interrupted. Children run in process groups of their own, so a
/// Ctrl-C at the terminal reaches them only through this runner.
pub fn run_study(
    plan: &dyn PlannedStudy,
    store: &mut Store,
    study_dir: &Path,
    launcher: &dyn Launcher,
    jobs: usize,
    progress: &mut dyn StudyProgress,
    interrupt: &AtomicBool,
) -> Result<StudySummary, SweepError> {
    let all = &plan.jobs()?;
    let started = Instant::now();
    let Imported {
        mut summary,
        mut pending,
        mut completed,
        flops_done,
    } = import_recorded(plan, all, store, study_dir)?;
    progress.begin(
        summary.total,
        summary.already_done,
        all.iter().map(|j| j.flops).sum(),
        flops_done,
    );
    // Ascending FLOPs (stable: a scaling plan is in that order already), so the most
    // expensive run whose parent (if any) has completed starts first: longest processing time first keeps every core busy to the
    // end instead of leaving the largest run to finish alone.
    pending.sort_by(|a, b| a.flops.total_cmp(&b.flops));

    let jobs = jobs.max(1);
    let mut active: Vec<(&Job, Child)> = Vec::new();
    let mut stopping = false;
    while (!pending.is_empty() && !stopping) || !active.is_empty() {
        if !stopping && interrupt.load(Ordering::Relaxed) {
            stopping = true;
            for (_, child) in &active {
                // The `kill` command rather than a signal call: the workspace has no unsafe
                // code. A child that has just ended ignores it.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        while !stopping
            && active.len() < jobs
            && let Some(run) = next_ready(&mut pending, &active, &completed)
        {
            if let Some(parent) = run.after.as_deref()
                && !completed.contains(parent)
            {
                let message = format!(
                    "its parent run {parent} did not complete, so there are no weights to start from; see that run's log"
                );
                store.mark_failed(&run.run_id, &message)?;
                summary.failed += 1;
                progress.finished(run, &RunEnd::Failed { message });
                continue;
            }
            let dir = run_dir(study_dir, &run.run_id);
            std::fs::create_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
            write_atomic(&dir.join("spec.toml"), &run.spec_toml)?;
            let log_path = dir.join("stderr.log");
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| SweepError::io(&log_path, e))?;
            let mut cmd = launcher.command(run.kind, &dir);
            cmd.process_group(0)
                .stdin(Stdio::piped())
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
                Ok(Some(exit))
                    if stopping
                        && exit.code() == Some(INTERRUPTED_EXIT)
                        && !run_dir(study_dir, &run.run_id)
                            .join("record.json")
                            .is_file() =>
                {
                    store.mark_interrupted(&run.run_id)?;
                    summary.interrupted += 1;
                    progress.finished(run, &RunEnd::Interrupted);
                }
                Ok(Some(exit)) => {
                    let end = collect(store, study_dir, run, &format!("{exit}"))?;
                    if let RunEnd::Recorded {
                        status: RunState::Completed,
                        ..
                    } = end
                    {
                        completed.insert(run.run_id.clone());
                    }
                    match &end {
                        RunEnd::Recorded {
                            status: RunState::Diverged,
                            ..
                        } => summary.diverged += 1,
                        RunEnd::Recorded { .. } => summary.completed += 1,
                        RunEnd::Failed { .. } => summary.failed += 1,
                        RunEnd::Interrupted => summary.interrupted += 1,
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
    summary.stopped = stopping;
    Ok(summary)
}

/// Takes the next job to start from `pending` (ascending FLOPs): the most expensive one
/// whose parent, if it has one, has completed, or one whose parent can no longer complete
/// (neither pending nor running: the caller fails it). None while every pending job waits
/// for a parent still running or pending.
fn next_ready<'a>(
    pending: &mut Vec<&'a Job>,
    active: &[(&Job, Child)],
    completed: &HashSet<String>,
) -> Option<&'a Job> {
    let index = {
        let waits = |job: &Job| {
            job.after.as_deref().is_some_and(|parent| {
                !completed.contains(parent)
                    && (pending.iter().any(|p| p.run_id == parent)
                        || active.iter().any(|(a, _)| a.run_id == parent))
            })
        };
        pending.iter().rposition(|job| !waits(job))?
    };
    Some(pending.remove(index))
}

/// Stores the record of `run` at `path` (checking it is that run's), and says how it ended.
fn import(store: &mut Store, run: &Job, path: &Path) -> Result<RunEnd, SweepError> {
    match run.kind {
        RunKind::Lm => {
            let record = read_run_record(path, run, RUN_RECORD_SCHEMA_VERSION, |r: &RunRecord| {
                &r.run_id
            })?;
            store.record(&record)?;
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
            store.record_classify(&record)?;
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

/// Stores the record a child left, or marks the run failed.
fn collect(
    store: &mut Store,
    study_dir: &Path,
    run: &Job,
    exit: &str,
) -> Result<RunEnd, SweepError> {
    let dir = run_dir(study_dir, &run.run_id);
    let record_path = dir.join("record.json");
    let failed = |store: &mut Store, message: String| -> Result<RunEnd, SweepError> {
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
        return failed(
            store,
            format!(
                "training process ended ({exit}) without a record; last log line: {last:?}; full log: {}",
                dir.join("stderr.log").display()
            ),
        );
    }
    match import(store, run, &record_path) {
        Ok(end) => Ok(end),
        Err(e @ (SweepError::Record { .. } | SweepError::Io { .. })) => {
            failed(store, e.to_string())
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
    fn a_child_waits_for_its_parent_and_is_handed_over_when_the_parent_cannot_finish() {
        let (parent, child, other) = (
            job("parent", 1.0, None),
            job("child", 9.0, Some("parent")),
            job("other", 5.0, None),
        );
        let mut completed = HashSet::new();
        // Ascending FLOPs: the child is the most expensive but waits for its parent.
        let mut pending = vec![&parent, &other, &child];
        let first = next_ready(&mut pending, &[], &completed).unwrap();
        assert_eq!(first.run_id, "other");
        let second = next_ready(&mut pending, &[], &completed).unwrap();
        assert_eq!(second.run_id, "parent");
        // The parent is neither pending nor running nor completed (it failed): the child
        // is handed over for the caller to fail.
        let mut failed = vec![&child];
        assert_eq!(
            next_ready(&mut failed, &[], &completed).unwrap().run_id,
            "child"
        );
        // Once the parent completed, the child is ready.
        completed.insert("parent".to_string());
        let mut ready = vec![&child];
        assert_eq!(
            next_ready(&mut ready, &[], &completed).unwrap().run_id,
            "child"
        );
        assert!(ready.is_empty());
    }
}
