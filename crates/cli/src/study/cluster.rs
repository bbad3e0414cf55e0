//! Studies on a cluster: the planned order of a study's runs (`plan.json`), `study run-one`
//! (one run by its index, for a scheduler's array task), `study submit` (SLURM job arrays,
//! Kubernetes Indexed Jobs), and what the scheduler says of a submitted study.
//!
//! The scheduler only starts processes: each array task claims its run as every `study run`
//! does (scalelab_sweep::claim), writes its record as a file, and never writes the store,
//! which the process holding the study's lock imports from the records (`study status`,
//! `study report`, `study run`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use scalelab_sweep::{Book, Job, PlannedStudy, Runner, Store, Worker, run_study};
use serde::{Deserialize, Serialize};

use super::runner::{
    Lines, SelfLauncher, StudyKind, claim_timeout, file_kind, open_study_store, try_lock_study,
};
use crate::args::{StudyRunOneArgs, StudySubmitArgs};
use crate::write_text;

/// A study file planned: its kind, runs, name, text and directory.
pub(crate) struct LoadedStudy {
    pub kind: StudyKind,
    pub plan: Box<dyn PlannedStudy>,
    pub name: String,
    pub text: String,
    pub dir: PathBuf,
}

/// Plans the study in `file` (any kind), its directory `dir` or studies/NAME.
pub(crate) fn load_study(file: &Path, dir: Option<&Path>) -> Result<LoadedStudy> {
    let kind = file_kind(file)?;
    let (plan, name, text, dir): (Box<dyn PlannedStudy>, String, String, PathBuf) = match kind {
        StudyKind::Scaling => {
            let (spec, text, dir) = super::load(file, dir)?;
            let plan = super::make_plan(&spec, &dir, file)?;
            (Box::new(plan), spec.name, text, dir)
        }
        StudyKind::Classify => {
            let (plan, text, dir) = crate::classify::classify_plan(file, dir)?;
            let name = plan.spec.name.clone();
            (Box::new(plan), name, text, dir)
        }
        StudyKind::Transfer => {
            let (plan, text, dir) = crate::transfer_study::load(file, dir)?;
            let name = plan.spec.name.clone();
            (Box::new(plan), name, text, dir)
        }
        StudyKind::Compression => {
            let (plan, text, dir) = crate::compress_study::load(file, dir)?;
            let name = plan.spec.name.clone();
            (Box::new(plan), name, text, dir)
        }
    };
    Ok(LoadedStudy {
        kind,
        plan,
        name,
        text,
        dir,
    })
}

/// The file that fixes the order of a study's runs for array indices.
pub(crate) const PLAN_FILE: &str = "plan.json";

/// One run in `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IndexedRun {
    pub index: usize,
    pub run_id: String,
    pub label: String,
    /// The run it starts from, which has a smaller index.
    pub after: Option<String>,
}

/// `plan.json`: the study's runs in index order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IndexedPlan {
    pub study: String,
    pub runs: Vec<IndexedRun>,
}

/// The study's jobs in index order: parents before the runs that start from them (array
/// tasks start in index order, so a child's task rarely waits long), and in each group the
/// most expensive first, as the local runner does: started first, the longest runs do not
/// leave one node busy alone at the end.
fn ordered(jobs: Vec<Job>) -> Vec<Job> {
    let (mut roots, mut children): (Vec<Job>, Vec<Job>) =
        jobs.into_iter().partition(|j| j.after.is_none());
    for group in [&mut roots, &mut children] {
        group.sort_by(|a, b| b.flops.total_cmp(&a.flops));
    }
    roots.into_iter().chain(children).collect()
}

/// Writes `dir/plan.json` for study `name`, planned as `plan`, and returns it.
pub(crate) fn write_plan(name: &str, dir: &Path, plan: &dyn PlannedStudy) -> Result<IndexedPlan> {
    let runs = ordered(plan.jobs()?)
        .into_iter()
        .enumerate()
        .map(|(index, j)| IndexedRun {
            index,
            run_id: j.run_id,
            label: j.label,
            after: j.after,
        })
        .collect();
    let indexed = IndexedPlan {
        study: name.to_string(),
        runs,
    };
    write_text(
        &dir.join(PLAN_FILE),
        &serde_json::to_string_pretty(&indexed)?,
    )?;
    Ok(indexed)
}

/// `DIR/plan.json`, if the study has one.
pub(crate) fn read_plan(dir: &Path) -> Result<Option<IndexedPlan>> {
    let path = dir.join(PLAN_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let plan = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is damaged\nhint: `scalelab study plan FILE --dir {}` writes it again",
            path.display(),
            dir.display()
        )
    })?;
    Ok(Some(plan))
}

/// The environment variables that carry an array task's index, in the order they are read.
const INDEX_VARIABLES: [&str; 3] = [
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

/// The index a run-one trains: `--index`, else the scheduler's variable; plus `--offset`.
fn task_index(args: &StudyRunOneArgs) -> Result<usize> {
    let (index, source) = match args.index {
        Some(i) => (i, "--index".to_string()),
        None => {
            let Some((var, value)) = INDEX_VARIABLES
                .iter()
                .find_map(|v| std::env::var(v).ok().map(|value| (*v, value)))
            else {
                bail!(
                    "no run index: give --index I, or run this as an array task (it reads {})",
                    INDEX_VARIABLES.join(", ")
                );
            };
            let index = value.trim().parse::<usize>().map_err(|_| {
                anyhow::anyhow!(
                    "{var} = {value:?} is not a run index\nhint: a whole number from 0; or give --index I"
                )
            })?;
            (index, var.to_string())
        }
    };
    index.checked_add(args.offset).with_context(|| {
        format!(
            "run index {index} (from {source}) + --offset {} is too large",
            args.offset
        )
    })
}

/// `scalelab study run-one FILE --index I`: claims and trains the I-th run of the study's
/// planned order (waiting for its parent, if it has one, to be recorded by another task),
/// and records it as a file. Exits 0 once the run is recorded (here or by another worker),
/// 1 when it failed, 130 when stopped at a checkpoint (after asking SLURM to requeue the
/// task, on its warning signal with `--requeue`).
pub(crate) fn run_one(args: StudyRunOneArgs) -> Result<ExitCode> {
    let study = load_study(&args.file, args.dir.as_deref())?;
    let index = task_index(&args)?;
    let jobs = ordered(study.plan.jobs()?);
    let planned = match read_plan(&study.dir)? {
        Some(p) => p,
        None => write_plan(&study.name, &study.dir, study.plan.as_ref())?,
    };
    let Some(entry) = planned.runs.get(index) else {
        bail!(
            "run index {index} is out of range: study {} has {} runs (indices 0 to {})",
            study.name,
            planned.runs.len(),
            planned.runs.len().saturating_sub(1)
        );
    };
    if !jobs.iter().any(|j| j.run_id == entry.run_id) || planned.runs.len() != jobs.len() {
        bail!(
            "{} lists run {} at index {index}, but the study file now plans other runs (it or its data changed since it was submitted)\nhint: `scalelab study submit` (or `study plan`) again writes the new order",
            study.dir.join(PLAN_FILE).display(),
            entry.run_id
        );
    }
    let threads = match args.threads {
        Some(0) => bail!("invalid value for `--threads`: 0\nhint: use at least 1"),
        Some(t) => t,
        None => std::env::var("SLURM_CPUS_PER_TASK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
    };
    eprintln!(
        "study {} run {index} of {}: {} ({})",
        study.name,
        planned.runs.len(),
        entry.run_id,
        entry.label
    );
    let (interrupt, warned) = crate::interrupt::handle_with_warning()?;
    let launcher = SelfLauncher::new(threads, args.device)?;
    let worker = Worker::current(claim_timeout(args.claim_timeout)?);
    let runner = Runner {
        launcher: &launcher,
        jobs: 1,
        interrupt: &interrupt,
        worker: &worker,
        only: Some(&entry.run_id),
    };
    let summary = run_study(
        study.plan.as_ref(),
        &mut Book::files(),
        &study.dir,
        &runner,
        &mut Lines::new(),
    )?;
    let recorded =
        summary.already_done + summary.completed + summary.diverged + summary.elsewhere > 0;
    // Stopped before its run was recorded (a signal that came as the run ended finds it
    // recorded: nothing to requeue).
    if summary.stopped && !recorded {
        if warned.load(std::sync::atomic::Ordering::Relaxed) && args.requeue {
            requeue()?;
        }
        return Ok(ExitCode::from(crate::interrupt::INTERRUPTED_EXIT as u8));
    }
    if summary.failed > 0 {
        return Ok(ExitCode::from(1));
    }
    eprintln!(
        "run {} recorded{}",
        entry.run_id,
        if summary.elsewhere > 0 {
            " (by another worker)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks SLURM to requeue this array task (its run stopped at a checkpoint on the warning
/// signal); the requeued task resumes it.
fn requeue() -> Result<()> {
    let id = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        // The array's own id would requeue every task of it.
        (Ok(job), Ok(task)) => format!("{job}_{task}"),
        _ => std::env::var("SLURM_JOB_ID")
            .context("--requeue: no SLURM_JOB_ID, so this is not a SLURM job to requeue")?,
    };
    eprintln!("requeueing SLURM job {id}: the requeued task resumes the run from its checkpoint");
    // The controller may refuse for a moment (busy, or the job's state in transition).
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        let out = Command::new("scontrol")
            .args(["requeue", &id])
            .output()
            .context("running `scontrol requeue`")?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        eprintln!("`scontrol requeue {id}` failed: {last}");
    }
    bail!(
        "`scontrol requeue {id}` failed 5 times ({last}); the run is at its checkpoint: `scalelab study submit` again resumes it"
    )
}

/// Array indices as SLURM writes them: `0-3,5,7-9`.
pub(crate) fn index_ranges(indices: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// The runs `todo` (ascending indices into plan.json) as array submissions whose task
/// indices are below `max` (SLURM's MaxArraySize caps the index, not the count): (offset,
/// task indices) with run = offset + task index.
pub(crate) fn chunks(todo: &[usize], max: usize) -> Vec<(usize, Vec<usize>)> {
    let max = max.max(1);
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in todo {
        let offset = i / max * max;
        match out.last_mut() {
            Some((o, list)) if *o == offset => list.push(i - offset),
            _ => out.push((offset, vec![i - offset])),
        }
    }
    out
}

/// SLURM's MaxArraySize (array indices must be below it), from `scontrol show config`.
fn max_array_size() -> Option<usize> {
    let out = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.trim_start().starts_with("MaxArraySize"))?
        .split('=')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// SLURM's default MaxArraySize, assumed when `scontrol` cannot be asked.
const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// One `sbatch` submission: array tasks `indices` (below MaxArraySize) for runs
/// `offset + index`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Submitted {
    pub job_id: Option<String>,
    pub offset: usize,
    pub indices: Vec<usize>,
    pub script: PathBuf,
}

/// What `study submit --slurm` has submitted: `DIR/slurm/jobs.json`.
fn jobs_file(dir: &Path) -> PathBuf {
    dir.join("slurm").join("jobs.json")
}

pub(crate) fn read_submitted(dir: &Path) -> Vec<Submitted> {
    std::fs::read_to_string(jobs_file(dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// Quotes `s` for a POSIX shell.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `scalelab study submit FILE --slurm|--k8s`.
pub(crate) fn submit(args: StudySubmitArgs) -> Result<ExitCode> {
    if args.cpus_per_task == 0 {
        bail!("invalid value for `--cpus-per-task`: 0\nhint: use at least 1");
    }
    if args.array_parallelism == Some(0) {
        bail!("invalid value for `--array-parallelism`: 0\nhint: use at least 1, or leave it out");
    }
    claim_timeout(args.claim_timeout)?;
    let study = load_study(&args.file, args.dir.as_deref())?;
    // Enter the study in its store and import what is recorded, so that only the runs
    // still to do are submitted.
    let pending: Vec<String> = {
        let Some(_lock) = try_lock_study(&study.dir)? else {
            bail!(
                "study {} is being run by a scalelab process here (it holds {})\nhint: let it finish, or stop it; or run more workers beside it with `scalelab study run`",
                study.dir.display(),
                study.dir.join("study.lock").display()
            );
        };
        let mut store = open_study_store(&study.dir, study.kind, &study.name, &study.text)?;
        let jobs = study.plan.jobs()?;
        let imported = scalelab_sweep::import_recorded(
            study.plan.as_ref(),
            &jobs,
            &mut Book::store(&mut store),
            &study.dir,
        )?;
        imported.pending.iter().map(|j| j.run_id.clone()).collect()
    };
    let plan = write_plan(&study.name, &study.dir, study.plan.as_ref())?;
    if args.k8s {
        return k8s(&args, &study, &plan);
    }
    // Runs whose task of an earlier array is still queued or running are not submitted
    // twice (a second task would only wait for the first's claim).
    let queued: Vec<String> = (scheduler_states(&study.dir).into_iter())
        .map(|(id, _)| id)
        .collect();
    let todo: Vec<usize> = (plan.runs.iter())
        .filter(|r| pending.contains(&r.run_id) && !queued.contains(&r.run_id))
        .map(|r| r.index)
        .collect();
    if !queued.is_empty() {
        eprintln!(
            "{} runs are queued or running in earlier arrays of this study (squeue); they are not submitted again",
            pending.iter().filter(|id| queued.contains(id)).count()
        );
    }
    if todo.is_empty() && !queued.is_empty() {
        eprintln!(
            "nothing else to submit; `scalelab study status {}` shows them",
            study.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if todo.is_empty() {
        eprintln!(
            "study {}: every run is recorded; nothing to submit (`scalelab study report {}`)",
            study.name,
            study.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let max = match max_array_size() {
        Some(m) => m,
        None if args.dry_run => {
            eprintln!(
                "scontrol did not answer; assuming SLURM's default MaxArraySize of {DEFAULT_MAX_ARRAY_SIZE}"
            );
            DEFAULT_MAX_ARRAY_SIZE
        }
        None => bail!(
            "`scontrol show config` did not answer, so this is not a SLURM cluster's login node\nhint: run this where sbatch works, or add --dry-run to see the scripts"
        ),
    }
    .max(1);
    let dir = absolute(&study.dir)?;
    let file = absolute(&dir.join("study.toml"))?;
    let exe = std::env::current_exe().context("locating the scalelab program")?;
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let slurm_dir = dir.join("slurm");
    std::fs::create_dir_all(&slurm_dir)
        .with_context(|| format!("creating {}", slurm_dir.display()))?;
    let mut submitted = read_submitted(&dir);
    for (offset, indices) in chunks(&todo, max) {
        let mut array = index_ranges(&indices);
        if let Some(k) = args.array_parallelism {
            array.push_str(&format!("%{k}"));
        }
        let mut lines = vec![
            "#!/bin/bash".to_string(),
            format!(
                "# scalelab study {}: runs {offset} + array index",
                study.name
            ),
            format!("#SBATCH --job-name=scalelab-{}", study.name),
            format!("#SBATCH --array={array}"),
            format!("#SBATCH --cpus-per-task={}", args.cpus_per_task),
            "#SBATCH --ntasks=1".to_string(),
            format!("#SBATCH --output={}/%A_%a.out", slurm_dir.display()),
            "#SBATCH --open-mode=append".to_string(),
        ];
        if let Some(p) = &args.partition {
            lines.push(format!("#SBATCH --partition={p}"));
        }
        if let Some(t) = &args.time {
            lines.push(format!("#SBATCH --time={t}"));
        }
        if let Some(g) = args.gpus_per_task {
            lines.push(format!("#SBATCH --gpus-per-task={g}"));
        }
        if args.requeue {
            // Two minutes before the time limit (or on preemption) the batch shell, which is
            // scalelab itself (exec), gets USR1: the run checkpoints and the task requeues.
            lines.push("#SBATCH --requeue".to_string());
            lines.push("#SBATCH --signal=B:USR1@120".to_string());
        }
        lines.push(format!("cd {}", sh(&cwd.to_string_lossy())));
        let mut command = format!(
            "exec {} study run-one {} --dir {} --offset {offset} --threads {}",
            sh(&exe.to_string_lossy()),
            sh(&file.to_string_lossy()),
            sh(&dir.to_string_lossy()),
            args.cpus_per_task
        );
        if let Some(t) = args.claim_timeout {
            command.push_str(&format!(" --claim-timeout {t}"));
        }
        if args.requeue {
            command.push_str(" --requeue");
        }
        if args.gpus_per_task.is_some_and(|g| g > 0) {
            command.push_str(" --device gpu");
        }
        lines.push(command);
        let script = slurm_dir.join(format!("array-{offset}.sbatch"));
        write_text(&script, &(lines.join("\n") + "\n"))?;
        if args.dry_run {
            println!("# {}\n{}", script.display(), lines.join("\n"));
            continue;
        }
        let out = Command::new("sbatch")
            .arg("--parsable")
            .arg(&script)
            .output()
            .context("running sbatch (is this a SLURM login node?)")?;
        if !out.status.success() {
            bail!(
                "sbatch {} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        println!(
            "submitted SLURM job {id}: {} array tasks ({array}), runs {offset}+",
            indices.len()
        );
        submitted.push(Submitted {
            job_id: Some(id),
            offset,
            indices,
            script,
        });
        write_text(&jobs_file(&dir), &serde_json::to_string_pretty(&submitted)?)?;
    }
    if !args.dry_run {
        eprintln!(
            "`scalelab study status {d}` shows the tasks; `scalelab study report {d}` once they end",
            d = study.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a Kubernetes Indexed Job that runs `study run-one` for every index (recorded runs
/// end at once), the study directory on a shared volume.
fn k8s(args: &StudySubmitArgs, study: &LoadedStudy, plan: &IndexedPlan) -> Result<ExitCode> {
    if !args.dry_run {
        bail!(
            "--k8s only prints the manifest: add --dry-run, and apply it with `kubectl apply -f -`\nhint: the volume (--volume-claim) must hold the working directory: the study file, its data and the study directory"
        );
    }
    let name: String = format!("scalelab-{}", study.name)
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(52)
        .collect();
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let rel = |p: &Path| -> String {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        abs.strip_prefix(&cwd)
            .unwrap_or(&abs)
            .to_string_lossy()
            .into_owned()
    };
    let n = plan.runs.len();
    let parallelism = args.array_parallelism.unwrap_or(n).min(n).max(1);
    let gpu = args.gpus_per_task.map_or(String::new(), |g| {
        format!("\n              nvidia.com/gpu: {g}")
    });
    let mut command = format!(
        "[\"scalelab\", \"study\", \"run-one\", \"{}\", \"--dir\", \"{}\", \"--threads\", \"{}\"",
        rel(&study.dir.join("study.toml")),
        rel(&study.dir),
        args.cpus_per_task
    );
    if let Some(t) = args.claim_timeout {
        command.push_str(&format!(", \"--claim-timeout\", \"{t}\""));
    }
    if args.gpus_per_task.is_some_and(|g| g > 0) {
        command.push_str(", \"--device\", \"gpu\"");
    }
    command.push(']');
    println!(
        "# scalelab study {study_name}: {n} runs, one Indexed Job completion each (index = plan.json's).
# The volume holds the working directory (study file, data, study directory); every pod
# claims its run there, so a retried or duplicated pod never trains a run twice.
# Apply: scalelab study submit {file} --k8s --dry-run | kubectl apply -f -
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  completionMode: Indexed
  completions: {n}
  parallelism: {parallelism}
  backoffLimitPerIndex: 3
  maxFailedIndexes: {n}
  podFailurePolicy:
    rules:
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 120
      containers:
        - name: scalelab
          image: {image}
          workingDir: /work
          command: {command}
          resources:
            requests:
              cpu: \"{cpus}\"
            limits:
              cpu: \"{cpus}\"{gpu}
          volumeMounts:
            - name: work
              mountPath: /work
      volumes:
        - name: work
          persistentVolumeClaim:
            claimName: {pvc}",
        study_name = study.name,
        file = args.file.display(),
        image = args.image,
        cpus = args.cpus_per_task,
        pvc = args.volume_claim,
    );
    Ok(ExitCode::SUCCESS)
}

/// What the scheduler says of the study's submitted array tasks: run id → state (PENDING,
/// RUNNING, ...), from `squeue` (tasks that ended are no longer listed). Empty when nothing
/// was submitted or squeue does not answer.
pub(crate) fn scheduler_states(dir: &Path) -> Vec<(String, String)> {
    let submitted = read_submitted(dir);
    let ids: Vec<&str> = (submitted.iter())
        .filter_map(|s| s.job_id.as_deref())
        .collect();
    let Ok(Some(plan)) = read_plan(dir) else {
        return Vec::new();
    };
    if ids.is_empty() {
        return Vec::new();
    }
    let Ok(out) = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T", "-j", &ids.join(",")])
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut states = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(state)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((job, task)) = id.split_once('_') else {
            continue;
        };
        let Some(sub) = submitted.iter().find(|s| s.job_id.as_deref() == Some(job)) else {
            continue;
        };
        // A pending array not yet split is listed as JOB_[0-3,5%2]: one line per index.
        let tasks: Vec<usize> = match task.parse::<usize>() {
            Ok(t) => vec![t],
            Err(_) => sub.indices.clone(),
        };
        for t in tasks {
            if let Some(run) = plan.runs.get(sub.offset + t) {
                states.push((run.run_id.clone(), format!("{state} ({job}_{t})")));
            }
        }
    }
    states
}

/// The claim on each run of the study not yet recorded: run id → who holds it and how
/// long ago it last beat.
pub(crate) fn claims(dir: &Path, runs: &[scalelab_sweep::StoredRun]) -> Vec<(String, String)> {
    runs.iter()
        .filter(|r| !r.status.is_recorded())
        .filter_map(|r| {
            let path =
                scalelab_sweep::run_dir(dir, &r.run_id).join(scalelab_sweep::claim::CLAIM_FILE);
            let (holder, age) = scalelab_sweep::claim::read_claim(&path).ok()??;
            let who = holder.map_or_else(|| "an unreadable claim".to_string(), |h| h.worker);
            Some((
                r.run_id.clone(),
                format!("claimed by {who}, heartbeat {:.0} s ago", age.as_secs_f64()),
            ))
        })
        .collect()
}

/// Imports the records that workers wrote into the store of the study in `dir`, if no
/// other process holds the study's lock (that one imports them); how many it imported.
pub(crate) fn import_finished(dir: &Path) -> Result<usize> {
    let Some(_lock) = try_lock_study(dir)? else {
        return Ok(0);
    };
    let mut store = Store::open(dir)?;
    Ok(scalelab_sweep::import_on_disk(&mut store, dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_indices_are_ranges_below_max_array_size() {
        assert_eq!(index_ranges(&[0, 1, 2, 3, 5, 7, 8, 9]), "0-3,5,7-9");
        assert_eq!(index_ranges(&[4]), "4");
        assert_eq!(index_ranges(&[]), "");
        // 2,500 runs, some done, on a cluster with MaxArraySize 1001: indices up to 1000.
        let todo: Vec<usize> = (0..2500).filter(|i| i % 7 != 3).collect();
        let parts = chunks(&todo, 1001);
        assert_eq!(
            parts.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![0, 1001, 2002]
        );
        let mut back = Vec::new();
        for (offset, indices) in &parts {
            assert!(indices.iter().all(|&t| t < 1001));
            back.extend(indices.iter().map(|t| offset + t));
        }
        assert_eq!(back, todo, "every run once, in order");
        assert_eq!(
            chunks(&[0, 1, 2], 1),
            vec![(0, vec![0]), (1, vec![0]), (2, vec![0])]
        );
    }
}
