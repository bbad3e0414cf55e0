//! The `scalelab` program: argument parsing, progress, printing and exit codes over the
//! library crates. Data goes to stdout (`--json` where a program reads it); progress and
//! logs go to stderr.
//!
//! Exit codes: 0 success, 1 error, 2 bad usage, 3 the run diverged (its record is written).

mod abilities;
mod args;
mod bench;
mod classify;
mod compress_study;
mod device;
mod emergence;
mod export;
mod fit;
mod interrupt;
mod lm;
mod progress;
mod study;
mod transfer_study;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use scalelab_data::{TokenData, TrainingData, load_corpus};
use scalelab_spec::{ParamCounts, RunRecord, RunStatus};
use scalelab_train::{Outcome, RunOptions, run_id, train_lm, transfer};

use crate::args::{Cli, Command, InfoArgs, TrainArgs};

/// Training allocates and frees megabyte-sized tensor buffers every step; mimalloc keeps them
/// for reuse, where glibc returns each to the kernel and faults its pages in again (about 10%
/// of a small model's step, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    scalelab_kernels::alloc::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            let full = |e: &(dyn std::error::Error + 'static)| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
            };
            if err.chain().any(full) {
                eprintln!(
                    "hint: the disk is full: free space on it and run the same command again; a run resumes from its last checkpoint, which a failed write leaves as it was, and a study from its store"
                );
            }
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(args) => train(*args),
        Command::Info(args) => info(args),
        Command::Bench(args) => bench::run(args),
        Command::Study(command) => study::run(command),
        Command::Fit(args) => fit::fit(args),
        Command::Plan(args) => fit::plan(args),
        Command::Emergence(args) => emergence::run(args),
        Command::Classify(args) => classify::run(*args),
        Command::ClassifyStudy(args) => classify::study(args),
        Command::Export(args) => export::run(args),
        Command::Eval(args) => lm::eval(args),
        Command::Generate(args) => lm::generate(args),
        Command::Compress(args) => lm::compress(args),
        Command::Compare(args) => lm::compare(args),
    }
}

/// Sets the size of the thread pool the tensor backend runs on.
pub(crate) fn set_threads(threads: Option<usize>) -> Result<usize> {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        anyhow::bail!("invalid value for `--threads`: 0\nhint: use at least 1 thread");
    }
    // Fails only if the pool was built already; then it keeps its size.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    Ok(rayon::current_num_threads())
}

/// Exits this training process when its parent study process is gone: the parent holds
/// our stdin open, so end of input means it has ended (killed, `kill -9` included).
pub(crate) fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(130);
    });
}

/// The parent run that `init.from` names, read, or none.
pub(crate) fn read_parent(init: &scalelab_spec::InitSpec) -> Result<Option<scalelab_spec::Parent>> {
    Ok(init
        .from
        .as_deref()
        .map(transfer::read_parent)
        .transpose()?)
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    if args.run.exit_with_parent {
        exit_with_parent();
    }
    let interrupt = interrupt::handle()?;
    let spec = args.spec()?;
    let threads = set_threads(args.run.threads)?;
    let data_config = spec.data.resolve()?;
    let corpus = load_corpus(&data_config.source)?;
    let text = TokenData::prepare(&corpus, &data_config, spec.model.ctx_len)
        .with_context(|| format!("preparing corpus {}", corpus.name))?;
    let parent = read_parent(&spec.init)?;
    let mut config = spec.resolve(text.tokenizer.vocab_size(), parent.as_ref())?;
    config.train.distill = distill_teacher(&spec.train, &config)?;
    // A pruned parent's zeros stay zero while its child trains (unless the child prunes on
    // its own schedule): masks from its zeros, never remade.
    if config.train.prune.is_none()
        && let Some(parent) = &parent
        && let Some(sparsity) = pruned_sparsity(Path::new(&parent.dir))
    {
        eprintln!(
            "parent {} was pruned to sparsity {sparsity}: its zero weights stay zero in this run",
            parent.run_id
        );
        config.train.prune = Some(scalelab_spec::PruneConfig {
            sparsity,
            start: 0.0,
            end: 0.0,
        });
    }
    let id = run_id(&config)?;
    let run_dir = args
        .run
        .run_dir
        .clone()
        .unwrap_or_else(|| args.run.out.join(&id));
    let record_path = run_dir.join("record.json");

    if record_path.is_file() && !args.fresh {
        let record: RunRecord = serde_json::from_str(
            &std::fs::read_to_string(&record_path)
                .with_context(|| format!("reading {}", record_path.display()))?,
        )
        .with_context(|| {
            format!(
                "{} is not a run record; delete it or pass --fresh",
                record_path.display()
            )
        })?;
        eprintln!(
            "run {id} is already trained ({}); pass --fresh to train it again",
            record_path.display()
        );
        // Trackers asked for now still get it (MLflow skips a run it holds already).
        export::after_run(&run_dir, args.run.tensorboard.as_deref(), &args.run.mlflow)?;
        return print_record(&record, args.run.json);
    }
    if args.fresh && run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("removing {}", run_dir.display()))?;
    }
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    text.tokenizer.save(&run_dir.join("tokenizer.json"))?;
    let data_line = match &config.task {
        None => format!(
            "corpus {} ({} train / {} val tokens)",
            text.corpus_name,
            human(text.train.len() as f64),
            human(text.val.len() as f64),
        ),
        Some(task) if task.mix >= 1.0 => format!("task {} alone", task.kind.name()),
        Some(task) => format!(
            "corpus {} with task {} in {:.0}% of sequences",
            text.corpus_name,
            task.kind.name(),
            100.0 * task.mix
        ),
    };

    scalelab_train::machine::check_memory(
        config.model.training_memory_bytes(config.train.batch_size),
        &format!(
            "{} at batch {}",
            config.model.describe(),
            config.train.batch_size
        ),
    )?;
    let (steps, tokens_per_step) = config.planned_steps();
    let params = config.model.param_counts();
    let shape = config.model.label();
    eprintln!(
        "run {id}: {shape} ctx{} | {} params ({} non-embedding) | {data_line} | {} tokens in {steps} steps | {threads} threads",
        config.model.ctx_len,
        human(params.total as f64),
        human(params.non_embedding as f64),
        human((steps * tokens_per_step) as f64),
    );
    let (device, backend) = device::open(spec.device)?;
    let options = RunOptions {
        run_dir: run_dir.clone(),
        device,
        backend,
        resume: true,
        stop_after_tokens: args.run.stop_after,
        interrupt: Some(Arc::clone(&interrupt)),
        init_from: spec.init.from.as_deref().map(transfer::parent_dir),
        distill_from: spec
            .train
            .distill_from
            .as_deref()
            .map(std::path::PathBuf::from),
    };
    let data = TrainingData::new(Some(text), config.task.as_ref())
        .context("a run needs a corpus or a task")?;
    let mut progress = progress::Bar::new(args.quiet, "tokens");
    let outcome = train_lm(&config, &data, &options, &mut progress)?;
    progress.finish();
    match outcome {
        Outcome::Finished(record) => {
            eprintln!("record written to {}", record_path.display());
            export::after_run(&run_dir, args.run.tensorboard.as_deref(), &args.run.mlflow)?;
            let code = print_record(&record, args.run.json)?;
            Ok(code)
        }
        Outcome::Stopped { tokens_seen } => Ok(interrupt::stopped(
            &interrupt,
            tokens_seen,
            "tokens",
            &run_dir,
        )),
    }
}

/// The sparsity a run was pruned to during training (its record's `sparsity.target`), if any.
fn pruned_sparsity(run_dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run_dir.join("record.json")).ok()?;
    let record: serde_json::Value = serde_json::from_str(&text).ok()?;
    record["sparsity"]["target"].as_f64()
}

/// The teacher `train.distill_from` names, read and checked against the student `config`: its
/// id goes into the student's config (and so its identity).
fn distill_teacher(
    train: &scalelab_spec::TrainSpec,
    config: &scalelab_spec::RunConfig,
) -> Result<Option<scalelab_spec::DistillConfig>> {
    let Some(dir) = &train.distill_from else {
        return Ok(None);
    };
    let teacher = scalelab_train::lm_eval::load(Path::new(dir))
        .with_context(|| format!("reading the teacher train.distill_from = {dir}"))?;
    if teacher.config.vocab_size != config.model.vocab_size {
        anyhow::bail!(
            "train.distill_from = {dir}: the teacher's vocabulary has {} tokens, the student's {}\nhint: distil between models with the same tokenizer",
            teacher.config.vocab_size,
            config.model.vocab_size
        );
    }
    if teacher.config.family.is_gpt() && teacher.config.ctx_len < config.model.ctx_len {
        anyhow::bail!(
            "train.distill_from = {dir}: the teacher reads {} tokens at most, the student's context is {}\nhint: give the student a context of at most {}",
            teacher.config.ctx_len,
            config.model.ctx_len,
            teacher.config.ctx_len
        );
    }
    Ok(Some(scalelab_spec::DistillConfig {
        teacher: teacher.id,
        temperature: train.distill_temperature,
        hard_weight: train.distill_hard_weight,
    }))
}

fn print_record(record: &RunRecord, json: bool) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, record)?;
        writeln!(out)?;
    } else {
        writeln!(out, "run            {}", record.run_id)?;
        writeln!(out, "status         {}", status_text(&record.status))?;
        writeln!(
            out,
            "params         {} total, {} non-embedding",
            record.params.total, record.params.non_embedding
        )?;
        writeln!(out, "tokens         {}", record.result.tokens_seen)?;
        writeln!(out, "train FLOPs    {:.3e}", record.result.train_flops)?;
        if let (Some(loss), Some(bpb)) = (record.result.final_val_loss, record.result.final_val_bpb)
        {
            writeln!(
                out,
                "val loss       {loss:.4} nats/token, {bpb:.4} bits/byte"
            )?;
        }
        writeln!(
            out,
            "wall           {:.1} s, {} threads, peak memory {} MB",
            record.wall_secs,
            record.threads,
            record.result.peak_rss_bytes / 1_000_000
        )?;
    }
    Ok(match record.status {
        RunStatus::Completed => ExitCode::SUCCESS,
        RunStatus::Diverged { .. } => ExitCode::from(3),
    })
}

fn status_text(status: &RunStatus) -> String {
    match status {
        RunStatus::Completed => "completed".to_string(),
        RunStatus::Diverged { reason, .. } => format!("diverged: {reason}"),
    }
}

fn info(args: InfoArgs) -> Result<ExitCode> {
    let spec = args.spec()?;
    let config = spec.resolve(args.vocab)?;
    let params = config.param_counts();
    let fpt = config.flops_per_token();
    let memory = config.training_memory_bytes(args.batch);
    let machine = scalelab_train::machine::total_memory_bytes();
    if args.json {
        let value = serde_json::json!({
            "config": config,
            "params": params,
            "param_convention": ParamCounts::CONVENTION,
            "flops_per_token": fpt,
            "flops_convention": scalelab_spec::family::LM_FLOPS_CONVENTION,
            "flops_per_token_6n_total": 6.0 * params.total as f64,
            "training_memory_bytes": memory,
            "batch": args.batch,
            "machine_memory_bytes": machine,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("shape              {}", config.describe());
        println!(
            "params (total)     {:>14}  Chinchilla convention: every parameter",
            params.total
        );
        println!(
            "params (non-emb.)  {:>14}  Kaplan convention: without embeddings and head",
            params.non_embedding
        );
        println!("params (embedding) {:>14}", params.embedding);
        println!(
            "train FLOPs/token  {:>14.0}  {}",
            fpt,
            config.flops_formula()
        );
        println!(
            "                   {:>14.0}  6·N_total, for comparison",
            6.0 * params.total as f64
        );
        if let Some(bytes) = memory {
            println!(
                "train memory       {:>14}  estimated peak at batch {} (--batch); this machine has {}",
                format!("{:.2} GB", bytes / 1e9),
                args.batch,
                machine.map_or("an unknown amount".into(), |m| format!(
                    "{:.1} GB",
                    m as f64 / 1e9
                ))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `1234567` → `1.23M`.
pub(crate) fn human(x: f64) -> String {
    let (value, unit) = match x.abs() {
        v if v >= 1e12 => (x / 1e12, "T"),
        v if v >= 1e9 => (x / 1e9, "G"),
        v if v >= 1e6 => (x / 1e6, "M"),
        v if v >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    format!("{value:.3}{unit}")
}

/// Writes a text file atomically: a temporary file beside it, then a rename.
pub(crate) fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// An opened CSV file, its header, and the positions of the columns `names` in it (in that
/// order); a missing column is an error that names the file, the header and `hint`.
pub(crate) fn open_csv(
    path: &Path,
    names: &[&str],
    hint: &str,
) -> Result<(csv::Reader<std::fs::File>, csv::StringRecord, Vec<usize>)> {
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read CSV file {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .clone();
    let mut index = Vec::with_capacity(names.len());
    for name in names {
        let Some(i) = headers.iter().position(|h| h.trim() == *name) else {
            anyhow::bail!(
                "{}: no column `{name}`; the header has: {}\nhint: {hint}",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            );
        };
        index.push(i);
    }
    Ok((reader, headers, index))
}

/// Reads a TOML file into `T`, naming the file and the key on error.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read spec file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}\nhint: see examples/*.toml and the README for the keys a spec may hold",
            path.display(),
            e.to_string().trim_end()
        )
    })
}
