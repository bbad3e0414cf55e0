//! `scalelab export RUN --format tensorboard|hf --out DIR`, and what `--tensorboard DIR` on
//! `train`, `classify` and `study run`/`study export` write: a run's record in the formats of
//! the tools researchers open them with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use scalelab_spec::{ClassifyRecord, RunRecord};
use scalelab_track::{Tracked, view, write_events};
use scalelab_train::fsutil::write_atomic;
use scalelab_train::{hf, lm_eval};

use crate::args::{ExportArgs, ExportFormat};

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
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {}\nhint: give a run directory (the one `train` or `classify` printed, or a study's runs/ID)",
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

/// What every finished run writes for the trackers it was asked for (`--tensorboard`).
pub(crate) fn after_run(run_dir: &Path, tensorboard: Option<&Path>) -> Result<()> {
    if let Some(out) = tensorboard {
        let path = tensorboard_run(run_dir, out)?;
        eprintln!("TensorBoard events written to {}", path.display());
    }
    Ok(())
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
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
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
