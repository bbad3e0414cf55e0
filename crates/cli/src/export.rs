//! `scalelab export RUN --format tensorboard|hf --out DIR`, and what `--tensorboard DIR` on
//! `train`, `classify` and `study run`/`study export` write: a run's record in the formats of
//! the tools researchers open them with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use scalelab_spec::{ClassifyRecord, RunRecord};
use std::time::Duration;

use scalelab_track::mlflow::{Client, Logged};
use scalelab_track::{Tracked, view, write_events};
use scalelab_train::fsutil::write_atomic;
use scalelab_train::{hf, lm_eval};

use crate::args::{ExportArgs, ExportFormat, MlflowFlags};

/// A run's record, of either kind.
pub(crate) enum AnyRecord {
    /// A language model's.
    Lm(Box<RunRecord>),
    /// A classifier's, with the record file's modification time (Unix seconds), which dates
    /// it: classifier records keep no start time.
    Classifier(Box<ClassifyRecord>, f64),
}

/// Reads `run_dir/record.json` as whichever kind of record it is.
pub(crate) fn read_record(run_dir: &Path) -> Result<AnyRecord> {
    let path = run_dir.join("record.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}\nhint: give a run directory (the one `train` or `classify` printed, or a study's runs/ID)",
            path.display()
        )
    })?;
    let lm = match serde_json::from_str::<RunRecord>(&text) {
        Ok(record) => return Ok(AnyRecord::Lm(Box::new(record))),
        Err(e) => e,
    };
    match serde_json::from_str::<ClassifyRecord>(&text) {
        Ok(record) => {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            Ok(AnyRecord::Classifier(Box::new(record), modified))
        }
        Err(classifier) => bail!(
            "{} is not a run record: as a language model's: {lm}; as a classifier's: {classifier}\nhint: it may be from another version of scalelab, or damaged; train the run again",
            path.display()
        ),
    }
}

/// The run at `run_dir` as trackers see it.
pub(crate) fn tracked(run_dir: &Path) -> Result<Tracked> {
    Ok(match read_record(run_dir)? {
        AnyRecord::Lm(record) => view::from_lm(&record),
        AnyRecord::Classifier(record, modified) => view::from_classifier(&record, modified),
    })
}

/// Writes the event file of the run at `run_dir` into `out`.
pub(crate) fn tensorboard_run(run_dir: &Path, out: &Path) -> Result<PathBuf> {
    Ok(write_events(out, &tracked(run_dir)?)?)
}

/// Writes every recorded run of the study at `study_dir` into `out/RUN_ID/`; returns how many.
pub(crate) fn tensorboard_study(study_dir: &Path, out: &Path) -> Result<usize> {
    let mut written = 0;
    for run_dir in recorded_runs(study_dir)? {
        let Some(id) = run_dir.file_name() else {
            continue;
        };
        tensorboard_run(&run_dir, &out.join(id))?;
        written += 1;
    }
    Ok(written)
}

/// The run directories under `study_dir/runs` that hold a record, sorted.
pub(crate) fn recorded_runs(study_dir: &Path) -> Result<Vec<PathBuf>> {
    let runs = study_dir.join("runs");
    let mut dirs = Vec::new();
    if !runs.is_dir() {
        return Ok(dirs);
    }
    for entry in std::fs::read_dir(&runs).with_context(|| format!("reading {}", runs.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", runs.display()))?
            .path();
        if path.join("record.json").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// What every finished run writes for the trackers it was asked for (`--tensorboard`,
/// `--mlflow`). MLflow failing never fails the run: it is said, and kept for a later sync.
pub(crate) fn after_run(
    run_dir: &Path,
    tensorboard: Option<&Path>,
    mlflow: &MlflowFlags,
) -> Result<()> {
    if let Some(out) = tensorboard {
        let path = tensorboard_run(run_dir, out)?;
        eprintln!("TensorBoard events written to {}", path.display());
    }
    if let Some(target) = MlflowTarget::of(mlflow, None)?
        && let Err(e) = mlflow_run(&target, run_dir, &[])
    {
        eprintln!("warning: the run is trained and recorded, but not logged to MLflow: {e:#}");
    }
    Ok(())
}

/// A tracking server and experiment to log to.
pub(crate) struct MlflowTarget {
    client: Client,
    experiment: String,
}

/// A run's file that says what was not sent to MLflow, removed once it is.
const MLFLOW_PENDING: &str = "mlflow-pending.json";

impl MlflowTarget {
    /// From `--mlflow` or MLFLOW_TRACKING_URI (none: no MLflow), the experiment from
    /// `--mlflow-experiment`, MLFLOW_EXPERIMENT_NAME, `default` or "scalelab"; each request
    /// gives up after MLFLOW_HTTP_REQUEST_TIMEOUT seconds (MLflow's own variable; default 10).
    pub(crate) fn of(flags: &MlflowFlags, default: Option<&str>) -> Result<Option<Self>> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(uri) = flags.mlflow.clone().or_else(|| env("MLFLOW_TRACKING_URI")) else {
            return Ok(None);
        };
        let timeout = match env("MLFLOW_HTTP_REQUEST_TIMEOUT") {
            None => 10.0,
            Some(v) => v.parse::<f64>().ok().filter(|t| t.is_finite() && *t > 0.0 && *t <= 3600.0).with_context(|| {
                format!("MLFLOW_HTTP_REQUEST_TIMEOUT = {v:?} is not a number of seconds from 0 to 3600\nhint: unset it (10 s) or set e.g. 30")
            })?,
        };
        let experiment = flags
            .mlflow_experiment
            .clone()
            .or_else(|| env("MLFLOW_EXPERIMENT_NAME"))
            .or_else(|| default.map(str::to_string))
            .unwrap_or_else(|| "scalelab".into());
        let client = Client::new(&uri, Duration::from_secs_f64(timeout))?;
        Ok(Some(Self { client, experiment }))
    }
}

/// Logs the run at `run_dir` (its record, and `extra` files as artifacts); on failure keeps
/// `mlflow-pending.json` in the run directory, saying where it was to go and why it did not.
pub(crate) fn mlflow_run(
    target: &MlflowTarget,
    run_dir: &Path,
    extra: &[PathBuf],
) -> Result<Logged> {
    let run = tracked(run_dir)?;
    let mut artifacts = Vec::new();
    for path in std::iter::once(run_dir.join("record.json")).chain(extra.iter().cloned()) {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map_or_else(|| "artifact".into(), |n| n.to_string_lossy().into_owned());
        artifacts.push((name, bytes));
    }
    let pending = run_dir.join(MLFLOW_PENDING);
    match target.client.log(&target.experiment, &run, &artifacts) {
        Ok(logged) => {
            if pending.exists() {
                std::fs::remove_file(&pending)
                    .with_context(|| format!("removing {}", pending.display()))?;
            }
            if let Logged::Now(id) = &logged {
                eprintln!(
                    "logged to MLflow {} (experiment {}, run {id})",
                    target.client.uri(),
                    target.experiment
                );
            }
            Ok(logged)
        }
        Err(e) => {
            let note = serde_json::json!({
                "uri": target.client.uri(),
                "experiment": target.experiment,
                "error": e.to_string(),
            });
            write_atomic(&pending, serde_json::to_string_pretty(&note)?.as_bytes())?;
            Err(e.into())
        }
    }
}

/// The trackers of a study run: each run's events and MLflow run as it is recorded, and at
/// the end whatever other workers recorded meanwhile. Once MLflow failed, it is not asked
/// again in this study run (a down server costs one failed request).
pub(crate) struct StudyTrackers {
    dir: PathBuf,
    tensorboard: Option<PathBuf>,
    mlflow: Option<MlflowTarget>,
    mlflow_failed: bool,
}

impl StudyTrackers {
    /// The trackers `study run` was asked for, for the study `name` in `dir`.
    pub(crate) fn of(
        dir: &Path,
        name: &str,
        tensorboard: Option<&Path>,
        mlflow: &MlflowFlags,
    ) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            tensorboard: tensorboard.map(Path::to_path_buf),
            mlflow: MlflowTarget::of(mlflow, Some(name))?,
            mlflow_failed: false,
        })
    }

    /// Run `run_id` was recorded: its event file, its MLflow run. Failures are said, never
    /// raised: the run is recorded.
    pub(crate) fn recorded(&mut self, run_id: &str) {
        let run_dir = self.dir.join("runs").join(run_id);
        if let Some(out) = &self.tensorboard
            && let Err(e) = tensorboard_run(&run_dir, &out.join(run_id))
        {
            eprintln!("warning: run {run_id}: no TensorBoard events: {e:#}");
        }
        if let Some(target) = &self.mlflow
            && !self.mlflow_failed
            && let Err(e) = mlflow_run(target, &run_dir, &[])
        {
            self.mlflow_failed = true;
            eprintln!(
                "warning: run {run_id} is recorded, but not logged to MLflow, and no more runs of this study run will be tried: {e:#}"
            );
        }
    }

    /// The study run ends: every recorded run's events and MLflow run (those logged already
    /// are found and skipped), unless MLflow failed.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if let Some(out) = &self.tensorboard {
            let n = tensorboard_study(&self.dir, out)?;
            eprintln!("TensorBoard events of {n} runs under {}", out.display());
        }
        if let Some(target) = &self.mlflow {
            if self.mlflow_failed {
                eprintln!(
                    "warning: not all of the study's runs are logged to MLflow; `scalelab study sync {} --mlflow {}` sends them",
                    self.dir.display(),
                    target.client.uri()
                );
            } else {
                match mlflow_study(target, &self.dir) {
                    Ok((now, before)) => {
                        eprintln!("MLflow: {now} runs logged at the end, {before} before")
                    }
                    Err(e) => eprintln!(
                        "warning: the study's runs are recorded, but not all are logged to MLflow: {e:#}"
                    ),
                }
            }
        }
        Ok(())
    }
}

/// Logs every recorded run of the study at `study_dir` (the report as an artifact of each),
/// stopping at the first failure; returns (logged now, logged before).
pub(crate) fn mlflow_study(target: &MlflowTarget, study_dir: &Path) -> Result<(usize, usize)> {
    let report = study_dir.join("report.html");
    let extra: Vec<PathBuf> = report.is_file().then_some(report).into_iter().collect();
    let (mut now, mut before) = (0, 0);
    for run_dir in recorded_runs(study_dir)? {
        match mlflow_run(target, &run_dir, &extra)? {
            Logged::Now(_) => now += 1,
            Logged::Already(_) => before += 1,
        }
    }
    Ok((now, before))
}

/// Writes the GPT run at `run_dir` as a `transformers` GPT-2 directory `out`: config.json,
/// model.safetensors (GPT-2's names; see `scalelab_train::hf`), tokenizer.json and
/// tokenizer_config.json, each file atomically.
pub(crate) fn export_hf(run_dir: &Path, out: &Path) -> Result<()> {
    if let AnyRecord::Classifier(..) = read_record(run_dir)? {
        bail!(
            "{} is a classifier run; only GPT language models have a GPT-2 form\nhint: export a run of `scalelab train`",
            run_dir.display()
        );
    }
    let lm = lm_eval::load(run_dir)?;
    let config = hf::gpt2_config(&lm.config, run_dir)?;
    let weights = hf::to_gpt2(
        &lm.weights,
        &lm.config,
        &run_dir.join("weights.safetensors"),
    )?;
    let tokenizer = lm
        .tokenizer
        .to_hf()?
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("writing the tokenizer: {e}"))?;
    let tokenizer_config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": lm.config.ctx_len,
        "clean_up_tokenization_spaces": false,
    });
    std::fs::create_dir_all(out).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the directory {}: {e}\nhint: --out names a directory to write the model's files into",
            out.display()
        )
    })?;
    for (name, bytes) in [
        (hf::HF_CONFIG, serde_json::to_vec_pretty(&config)?),
        (hf::HF_WEIGHTS, weights),
        ("tokenizer.json", tokenizer.into_bytes()),
        (
            "tokenizer_config.json",
            serde_json::to_vec_pretty(&tokenizer_config)?,
        ),
    ] {
        write_atomic(&out.join(name), &bytes)?;
    }
    Ok(())
}

/// `scalelab export`.
pub(crate) fn run(args: ExportArgs) -> Result<ExitCode> {
    match args.format {
        ExportFormat::Tensorboard => {
            let path = tensorboard_run(&args.run, &args.out)?;
            println!("{}", path.display());
        }
        ExportFormat::Hf => {
            export_hf(&args.run, &args.out)?;
            println!("{}", args.out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
