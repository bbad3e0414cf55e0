//! A trained language model put to use: `scalelab eval` (loss and bits per byte on a whole
//! text file), `scalelab generate` (sampling, nanoGPT's `sample.py`) and `scalelab compare`
//! (two models on the same windows, the paired bootstrap). Each takes a run directory or a
//! `transformers` GPT-2 directory.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use scalelab_analysis::paired::{mcnemar_exact, paired_bootstrap};
use scalelab_train::lm_eval::{self, TrainedLm};

use crate::args::{CompareArgs, CompressArgs, CompressMethod, EvalArgs, GenerateArgs, Granularity};
use crate::set_threads;

/// The model in `dir`, its warnings said on stderr.
fn load(dir: &Path) -> Result<TrainedLm> {
    let lm = lm_eval::load(dir)?;
    for warning in &lm.warnings {
        eprintln!("warning: {}: {warning}", dir.display());
    }
    Ok(lm)
}

/// The text of `path` as `lm`'s tokens, with its length in bytes.
fn tokens_of(lm: &TrainedLm, path: &Path) -> Result<(Vec<u32>, usize)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}\nhint: give a UTF-8 text file to score",
            path.display()
        )
    })?;
    let tokens = lm.tokenizer.encode(&text)?;
    let ctx = lm.config.ctx_len;
    if tokens.len() < ctx + 1 {
        bail!(
            "{} is {} tokens long; scoring needs at least ctx + 1 = {} (one window)\nhint: give a longer text",
            path.display(),
            tokens.len(),
            ctx + 1
        );
    }
    Ok((tokens, text.len()))
}

fn check_batch(batch: usize) -> Result<usize> {
    if batch == 0 || batch > 1 << 16 {
        bail!("invalid value for `--batch`: {batch}\nhint: use 1 to 65536 windows at a time");
    }
    Ok(batch)
}

/// Nats per token to bits per byte, over a text of `bytes` bytes and `tokens` tokens.
fn bits_per_byte(loss: f64, tokens: usize, bytes: usize) -> f64 {
    loss * tokens as f64 / bytes.max(1) as f64 / std::f64::consts::LN_2
}

/// `scalelab eval`.
pub(crate) fn eval(args: EvalArgs) -> Result<ExitCode> {
    set_threads(args.host.threads)?;
    let batch = check_batch(args.batch)?;
    let lm = load(&args.run)?;
    let (device, _) = crate::device::open(args.host.device.unwrap_or_default())?;
    let Some(data) = args.data.as_deref() else {
        let Some(task) = &lm.task else {
            bail!(
                "run {} trained on no synthetic task, so it has no held-out task examples\nhint: score it on a text with --data FILE",
                lm.id
            );
        };
        let metrics = lm_eval::task_metrics(&lm, task, &device)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&metrics)?);
        } else {
            println!(
                "{} on {} ({} held-out examples): exact match {:.4}, token accuracy {:.4}, edit distance {:.4}, log-probability {:.4}, Brier {:.4}",
                lm.id,
                task.describe(),
                metrics.examples,
                metrics.exact_match,
                metrics.token_accuracy,
                metrics.edit_distance,
                metrics.log_prob,
                metrics.brier
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let (tokens, bytes) = tokens_of(&lm, data)?;
    let losses = lm_eval::window_losses(&lm, &tokens, batch, &device)?;
    let windows = losses.len();
    let loss = losses.iter().sum::<f64>() / windows as f64;
    let ctx = lm.config.ctx_len;
    let bpb = bits_per_byte(loss, tokens.len(), bytes);
    if args.json {
        let out = serde_json::json!({
            "model": lm.id,
            "data": data.display().to_string(),
            "loss": loss,
            "bits_per_byte": bpb,
            "windows": windows,
            "ctx": ctx,
            "tokens_scored": windows * ctx,
            "text_tokens": tokens.len(),
            "text_bytes": bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: {loss:.4} nats/token, {bpb:.4} bits/byte over {} tokens of {} ({windows} windows of {ctx})",
            lm.id,
            windows * ctx,
            data.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `scalelab generate`.
pub(crate) fn generate(args: GenerateArgs) -> Result<ExitCode> {
    set_threads(args.host.threads)?;
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        bail!(
            "invalid value for `--temperature`: {}\nhint: use 0 (always the most likely token) or a positive number such as 0.8",
            args.temperature
        );
    }
    if args.top_k == Some(0) {
        bail!(
            "invalid value for `--top-k`: 0\nhint: use at least 1, or leave it out to sample from every token"
        );
    }
    if args.tokens > 1 << 20 {
        bail!(
            "invalid value for `--tokens`: {}\nhint: ask for at most 1048576 tokens",
            args.tokens
        );
    }
    let lm = load(&args.run)?;
    let prompt = lm.tokenizer.encode(&args.prompt)?;
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= lm.config.vocab_size) {
        bail!(
            "the prompt has token {bad}, outside the model's vocabulary of {}",
            lm.config.vocab_size
        );
    }
    let (device, _) = crate::device::open(args.host.device.unwrap_or_default())?;
    let ids = lm_eval::generate(
        &lm,
        &prompt,
        args.tokens,
        args.temperature,
        args.top_k,
        args.seed,
        &device,
    )?;
    let text = lm.tokenizer.decode(&ids)?;
    if args.json {
        let out = serde_json::json!({
            "model": lm.id,
            "prompt": args.prompt,
            "completion": text,
            "tokens": ids,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "seed": args.seed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}{text}", args.prompt);
    }
    Ok(ExitCode::SUCCESS)
}

/// `scalelab compare`.
pub(crate) fn compare(args: CompareArgs) -> Result<ExitCode> {
    set_threads(args.host.threads)?;
    let batch = check_batch(args.batch)?;
    if !(args.level > 0.0 && args.level < 1.0) {
        bail!(
            "invalid value for `--level`: {}\nhint: use a coverage between 0 and 1, such as 0.95",
            args.level
        );
    }
    if args.bootstrap == 0 || args.bootstrap > 1_000_000 {
        bail!(
            "invalid value for `--bootstrap`: {}\nhint: use 1 to 1000000 resamples (2000 is plenty for a p-value of 0.01)",
            args.bootstrap
        );
    }
    let classifier = |dir: &Path| {
        matches!(
            crate::export::read_record(dir),
            Ok(crate::export::AnyRecord::Classifier(..))
        )
    };
    match (classifier(&args.a), classifier(&args.b)) {
        (true, true) => return compare_classifiers(&args),
        (false, false) => {}
        _ => bail!(
            "{} and {} are not the same kind of run (one is a classifier)\nhint: compare two language models or two classifiers",
            args.a.display(),
            args.b.display()
        ),
    }
    let Some(data) = args.data.as_deref() else {
        bail!("comparing language models needs --data FILE, the text both are scored on");
    };
    let (a, b) = (load(&args.a)?, load(&args.b)?);
    let (tokens_a, bytes) = tokens_of(&a, data)?;
    let (tokens_b, _) = tokens_of(&b, data)?;
    if tokens_a != tokens_b || a.config.ctx_len != b.config.ctx_len {
        bail!(
            "{} and {} do not see the same windows of {} (their tokenizers or context lengths differ: ctx {} and {})\nhint: compare models with the same tokenizer and context, so that each example is the same sequence for both",
            a.id,
            b.id,
            data.display(),
            a.config.ctx_len,
            b.config.ctx_len
        );
    }
    let (device, _) = crate::device::open(args.host.device.unwrap_or_default())?;
    let la = lm_eval::window_losses(&a, &tokens_a, batch, &device)?;
    let lb = lm_eval::window_losses(&b, &tokens_b, batch, &device)?;
    let Some(result) = paired_bootstrap(&la, &lb, args.bootstrap, args.level, args.seed) else {
        bail!(
            "{} has {} window(s) of {} tokens; a paired comparison needs at least 2\nhint: give a longer text",
            data.display(),
            la.len(),
            a.config.ctx_len + 1
        );
    };
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
    let (loss_a, loss_b) = (mean(&la), mean(&lb));
    let interval = result.interval.map(|i| [i.lo, i.hi]);
    if args.json {
        let out = serde_json::json!({
            "a": a.id,
            "b": b.id,
            "data": data.display().to_string(),
            "test": "paired bootstrap over windows",
            "windows": result.n,
            "ctx": a.config.ctx_len,
            "loss_a": loss_a,
            "loss_b": loss_b,
            "bits_per_byte_a": bits_per_byte(loss_a, tokens_a.len(), bytes),
            "bits_per_byte_b": bits_per_byte(loss_b, tokens_a.len(), bytes),
            "difference": result.mean_difference,
            "interval": interval,
            "level": args.level,
            "p_value": result.p_value,
            "bootstrap": args.bootstrap,
            "seed": args.seed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let verdict = if result.p_value < 1.0 - args.level {
            if result.mean_difference < 0.0 {
                "A is better"
            } else {
                "B is better"
            }
        } else {
            "no difference shown"
        };
        println!(
            "A {}: {loss_a:.4} nats/token; B {}: {loss_b:.4}; A - B = {:+.4} [{}] ({:.0}% paired bootstrap over {} windows), p = {:.4}: {verdict}",
            a.id,
            b.id,
            result.mean_difference,
            interval.map_or("-".into(), |[lo, hi]| format!("{lo:+.4}, {hi:+.4}")),
            100.0 * args.level,
            result.n,
            result.p_value,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A classifier run's predictions on its test set: (label, correct) per target.
fn test_predictions(dir: &Path) -> Result<Vec<(u32, bool)>> {
    let path = dir.join(scalelab_train::classify::TEST_PREDICTIONS);
    if !path.is_file() {
        bail!(
            "{} has no {} (runs trained before scalelab kept their test predictions)\nhint: train the run again with --fresh",
            dir.display(),
            scalelab_train::classify::TEST_PREDICTIONS
        );
    }
    let (mut reader, _, index) = crate::open_csv(
        &path,
        &["label", "correct"],
        "the file is written by every classifier run; train the run again with --fresh",
    )?;
    let mut rows = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("reading {} row {}", path.display(), i + 2))?;
        let field = |k: usize| -> Result<u32> {
            row.get(index[k])
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| {
                    format!(
                        "{} row {}: `{}` is not a count",
                        path.display(),
                        i + 2,
                        row.get(index[k]).unwrap_or("")
                    )
                })
        };
        rows.push((field(0)?, field(1)? == 1));
    }
    Ok(rows)
}

/// `scalelab compare` of two classifiers: McNemar's exact test on their test predictions,
/// and the paired bootstrap's interval of the accuracy difference.
fn compare_classifiers(args: &CompareArgs) -> Result<ExitCode> {
    let (a, b) = (test_predictions(&args.a)?, test_predictions(&args.b)?);
    let labels = |p: &[(u32, bool)]| p.iter().map(|r| r.0).collect::<Vec<_>>();
    if labels(&a) != labels(&b) {
        bail!(
            "{} and {} were not tested on the same examples ({} and {} test targets, labels differ)\nhint: compare runs of the same data set and split (the same dataset, data_dir and seed of the split)",
            args.a.display(),
            args.b.display(),
            a.len(),
            b.len()
        );
    }
    let correct = |p: &[(u32, bool)]| {
        p.iter()
            .map(|r| f64::from(u8::from(r.1)))
            .collect::<Vec<_>>()
    };
    let (ca, cb) = (correct(&a), correct(&b));
    let only_a = a.iter().zip(&b).filter(|(x, y)| x.1 && !y.1).count() as u64;
    let only_b = a.iter().zip(&b).filter(|(x, y)| !x.1 && y.1).count() as u64;
    let p_value = mcnemar_exact(only_a, only_b);
    let Some(result) = paired_bootstrap(&ca, &cb, args.bootstrap, args.level, args.seed) else {
        bail!("the test sets have fewer than 2 examples; nothing to compare");
    };
    let n = ca.len() as f64;
    let (acc_a, acc_b) = (ca.iter().sum::<f64>() / n, cb.iter().sum::<f64>() / n);
    let interval = result.interval.map(|i| [i.lo, i.hi]);
    if args.json {
        let out = serde_json::json!({
            "a": args.a.display().to_string(),
            "b": args.b.display().to_string(),
            "test": "McNemar exact",
            "examples": result.n,
            "accuracy_a": acc_a,
            "accuracy_b": acc_b,
            "difference": result.mean_difference,
            "interval": interval,
            "level": args.level,
            "only_a_right": only_a,
            "only_b_right": only_b,
            "p_value": p_value,
            "bootstrap": args.bootstrap,
            "seed": args.seed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "A {}: accuracy {acc_a:.4}; B {}: {acc_b:.4}; A - B = {:+.4} [{}] ({:.0}% paired bootstrap over {} test examples); only A right {only_a}, only B right {only_b}: McNemar exact p = {p_value:.4}",
            args.a.display(),
            args.b.display(),
            result.mean_difference,
            interval.map_or("-".into(), |[lo, hi]| format!("{lo:+.4}, {hi:+.4}")),
            100.0 * args.level,
            result.n,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `scalelab compress`.
pub(crate) fn compress(args: CompressArgs) -> Result<ExitCode> {
    use scalelab_train::compress::{self, Method, Scales};
    set_threads(args.host.threads)?;
    let sparsity = args.sparsity.unwrap_or_default();
    if !(sparsity.is_finite() && (0.0..1.0).contains(&sparsity)) {
        bail!(
            "invalid value for `--sparsity`: {sparsity}\nhint: the share of weights to zero, from 0 to below 1, e.g. 0.5"
        );
    }
    let method = match args.method {
        CompressMethod::Magnitude => Method::Magnitude {
            sparsity,
            global: args.global,
        },
        CompressMethod::Wanda => Method::Wanda { sparsity },
        CompressMethod::Neurons => Method::Neurons { sparsity },
        CompressMethod::Heads => Method::Heads { sparsity },
        CompressMethod::Channels => Method::Channels { sparsity },
        CompressMethod::NOfM => Method::NOfM {
            n: args.n,
            m: args.m,
        },
        CompressMethod::Quantize => Method::Quantize {
            bits: args.bits,
            scales: match args.granularity {
                Granularity::Tensor => Scales::Tensor,
                Granularity::Channel => Scales::Channel,
                Granularity::Block => Scales::Block(args.block),
            },
        },
    };
    if args.eval_tokens == Some(0) {
        bail!(
            "invalid value for `--eval-tokens`: 0\nhint: score at least one window, or leave it out for the run's own validation sample"
        );
    }
    let (device, _) = crate::device::open(args.host.device.unwrap_or_default())?;
    let classifier = std::fs::read_to_string(args.run.join("record.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|record| record["config"].get("dataset").is_some());
    if classifier {
        let model = compress::compress_classifier_run(&args.run, &method, &device)?;
        return write_compressed(&args, &model, |s| {
            format!(
                "validation accuracy {:.4} -> {:.4}, test accuracy {:.4} -> {:.4} (test loss {:.4} -> {:.4})",
                s.validation_before.accuracy,
                s.validation_after.accuracy,
                s.test_before.accuracy,
                s.test_after.accuracy,
                s.test_before.loss,
                s.test_after.loss,
            )
        });
    }
    let model = compress::compress_run(&args.run, &method, args.eval_tokens, &device)?;
    write_compressed(&args, &model, |s| {
        format!(
            "validation loss {:.4} -> {:.4} nats/token ({:+.4}) over {} tokens",
            s.val_loss_before,
            s.val_loss_after,
            s.val_loss_after - s.val_loss_before,
            s.val_tokens,
        )
    })
}

/// Writes a compressed `model` where `scalelab compress` was asked (default: beside the run,
/// under its id) and says what it did: the record as JSON, or a line with its `scores` in
/// words.
fn write_compressed<C: serde::Serialize, S: serde::Serialize>(
    args: &CompressArgs,
    model: &scalelab_train::compress::Compressed<C, S>,
    scores: impl Fn(&S) -> String,
) -> Result<ExitCode> {
    let result = &model.record;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.with_file_name(&result.id));
    scalelab_train::compress::write_compressed(&out, &args.run, model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        let (nonzero, params) = (result.nonzero, result.params);
        println!(
            "{}: {}; non-zero parameters {} of {} (non-embedding {} of {}); weights {} of {} bytes; written to {}",
            result.id,
            scores(&result.scores),
            nonzero.total,
            params.total,
            nonzero.non_embedding,
            params.non_embedding,
            result.bytes,
            result.bytes_dense,
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
