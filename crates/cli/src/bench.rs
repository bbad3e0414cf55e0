//! `scalelab bench`: times one training step of the two reference models of
//! `shared/peer/` and, given a Python with PyTorch, runs the peer script right after each
//! measurement so that both are measured in the same run, and prints the ratio.
//!
//! `scalelab bench --study DIR` compares a finished study instead: its recorded wall time
//! against what the same runs' steps take in the peer, measured at each of the study's shapes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use scalelab_spec::{Family, LmConfig, Named, RunRecord};
use scalelab_sweep::Store;
use scalelab_train::bench::{bench_gpt_step, sgemm_gflops};

use crate::args::BenchArgs;
use crate::set_threads;

/// One setting measured on both sides: shape, sequences per step and threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Case {
    d_model: usize,
    n_layers: usize,
    n_heads: usize,
    ctx: usize,
    batch: usize,
    threads: usize,
}

/// The two reference settings of shared/peer/README.md.
const CASES: [Case; 2] = [
    Case {
        d_model: 256,
        n_layers: 4,
        n_heads: 4,
        ctx: 128,
        batch: 16,
        threads: 2,
    },
    Case {
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        ctx: 128,
        batch: 16,
        threads: 1,
    },
];

/// Side of the square matrices of the SGEMM peak measurement.
const SGEMM_N: usize = 1024;

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(dir) = &args.study {
        return study(dir, &args);
    }
    scalelab_kernels::set_fused(!args.unfused);
    if let Some(family) = args.shape.family {
        return classifier(&args, family);
    }
    let cases = match args.d_model {
        Some(d_model) => vec![Case {
            d_model,
            n_layers: args.layers,
            n_heads: args.heads,
            ctx: args.ctx,
            batch: args.batch,
            threads: args.threads,
        }],
        None => CASES.to_vec(),
    };
    if let Some(case) = cases.iter().find(|c| {
        c.d_model == 0
            || c.n_layers == 0
            || c.n_heads == 0
            || c.d_model % c.n_heads != 0
            || c.ctx == 0
            || c.batch == 0
            || c.threads == 0
    }) {
        bail!(
            "invalid benchmark shape: width {} with {} heads, {} layers, context {}, batch {}, {} threads\nhint: use positive sizes and a width divisible by the heads",
            case.d_model,
            case.n_heads,
            case.n_layers,
            case.ctx,
            case.batch,
            case.threads
        );
    }
    let (device, backend) = crate::device::open(args.device)?;
    eprintln!("timing on {backend}");
    let mut rows = Vec::new();
    for case in cases {
        // The pool is global: build one of the case's size for this measurement.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(case.threads)
            .build()?;
        let config = LmConfig {
            n_layers: case.n_layers,
            d_model: case.d_model,
            n_heads: case.n_heads,
            d_ff: 4 * case.d_model,
            ctx_len: case.ctx,
            vocab_size: 256,
            dropout: 0.0,
            tie_embeddings: false,
            share_layers: false,
            family: Default::default(),
        };
        let ours =
            pool.install(|| bench_gpt_step(&config, case.batch, args.warmup, args.steps, &device));
        let peer = match &args.peer_python {
            Some(python) => Some(run_peer(python, &args.peer_script, &case, &args)?),
            None => None,
        };
        rows.push((case, ours, peer));
    }
    let _ = set_threads(None);
    if args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(c, ours, peer)| {
                serde_json::json!({
                    "d_model": c.d_model, "n_layers": c.n_layers, "n_heads": c.n_heads,
                    "ctx": c.ctx, "batch": c.batch, "threads": c.threads,
                    "scalelab": ours, "peer_median_ms": peer,
                    "ratio": peer.map(|p| ours.median_ms / p),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "| model (ctx × batch) | threads | scalelab ms/step | forward / backward / AdamW ms | tokens/s | GFLOP/s | loss first→last | PyTorch eager ms/step | ratio (scalelab / PyTorch) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (c, ours, peer) in &rows {
        println!(
            "| d{} / {} layers ({:.2}M params, {} × {}) | {} | {:.1} | {:.1} / {:.1} / {:.1} | {:.0} | {:.1} | {:.3}→{:.3} | {} | {} |",
            c.d_model,
            c.n_layers,
            ours.params as f64 / 1e6,
            c.ctx,
            c.batch,
            c.threads,
            ours.median_ms,
            ours.phases.forward_ms,
            ours.phases.backward_ms,
            ours.phases.optimizer_ms,
            ours.tokens_per_sec,
            ours.gflops,
            ours.loss_first,
            ours.loss_last,
            peer.map_or("-".into(), |p| format!("{p:.1}")),
            peer.map_or("-".into(), |p| format!("{:.2}", ours.median_ms / p)),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The runs of one shape in a study.
#[derive(Default)]
struct ShapeRuns {
    runs: usize,
    steps: u64,
    wall_secs: f64,
    flops: f64,
}

/// Compares a finished study with the peer: per shape, the study's recorded run time against
/// the peer's step time × the same steps; for the whole study, wall time and achieved FLOP/s
/// against the measured SGEMM peak.
fn study(dir: &Path, args: &BenchArgs) -> Result<ExitCode> {
    let dir = crate::study::study_dir(dir)?;
    let store = Store::open(&dir)?;
    let mut records: Vec<RunRecord> = Vec::new();
    for run in store.runs()? {
        if let Some(record) = store.run_record(&run.run_id)? {
            records.push(record);
        }
    }
    if records.is_empty() {
        bail!(
            "{} has no finished runs to compare\nhint: run `scalelab study run` on it first",
            dir.display()
        );
    }
    let mut shapes: BTreeMap<Case, ShapeRuns> = BTreeMap::new();
    for r in &records {
        let m = &r.config.model;
        if m.family != Family::Gpt {
            bail!(
                "run {} is a {} language model; the peer is a GPT\nhint: compare studies of GPTs",
                r.run_id,
                m.family
            );
        }
        let case = Case {
            d_model: m.d_model,
            n_layers: m.n_layers,
            n_heads: m.n_heads,
            ctx: m.ctx_len,
            batch: r.config.train.batch_size * r.config.train.grad_accum,
            threads: r.threads,
        };
        let entry = shapes.entry(case).or_default();
        entry.runs += 1;
        entry.steps += r.result.tokens_seen / r.result.tokens_per_step.max(1);
        entry.wall_secs += r.wall_secs;
        entry.flops += r.result.train_flops;
    }
    // The study's wall clock: first start to last end of its recorded runs.
    let start = records
        .iter()
        .map(|r| r.result.started_unix_secs as f64)
        .fold(f64::INFINITY, f64::min);
    let end = records
        .iter()
        .map(|r| r.result.started_unix_secs as f64 + r.wall_secs)
        .fold(0.0, f64::max);
    let wall = end - start;
    let serial: f64 = shapes.values().map(|s| s.wall_secs).sum();
    let flops: f64 = shapes.values().map(|s| s.flops).sum();

    let threads = set_threads(None)?;
    let sgemm = sgemm_gflops(SGEMM_N, 10, &Device::flex());
    let peer_sgemm = match &args.peer_python {
        Some(python) => Some(peer_sgemm_gflops(python, threads)?),
        None => None,
    };

    println!(
        "study {} ({} runs, {} shapes), {}",
        dir.display(),
        records.len(),
        shapes.len(),
        records[0].machine.cpu
    );
    println!();
    println!(
        "| shape (d / layers / heads, ctx × batch, threads) | runs | steps | scalelab s (recorded, whole runs) | PyTorch eager ms/step | PyTorch s (steps only) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut peer_serial = Some(0.0);
    for (case, s) in &shapes {
        let peer_ms = match &args.peer_python {
            Some(python) => Some(run_peer(python, &args.peer_script, case, args)?),
            None => None,
        };
        let peer_secs = peer_ms.map(|ms| ms * s.steps as f64 / 1e3);
        peer_serial = peer_serial.zip(peer_secs).map(|(a, b)| a + b);
        println!(
            "| d{} / {} / {}, {} × {}, {} | {} | {} | {:.1} | {} | {} | {} |",
            case.d_model,
            case.n_layers,
            case.n_heads,
            case.ctx,
            case.batch,
            case.threads,
            s.runs,
            s.steps,
            s.wall_secs,
            peer_ms.map_or("-".into(), |p| format!("{p:.2}")),
            peer_secs.map_or("-".into(), |p| format!("{p:.1}")),
            peer_secs.map_or("-".into(), |p| format!("{:.2}", s.wall_secs / p)),
        );
    }
    println!();
    println!("run time, summed over runs: scalelab {serial:.0} s");
    println!("study wall clock (first start to last end): {wall:.0} s");
    if let Some(peer) = peer_serial {
        // The peer's runs packed onto the cores as the study packed its own.
        let peer_wall = peer * wall / serial.max(1e-9);
        println!(
            "PyTorch eager, the same steps: {peer:.0} s summed, about {peer_wall:.0} s wall packed as the study was; scalelab / PyTorch = {:.2}",
            wall / peer_wall.max(1e-9)
        );
    }
    let achieved = flops / wall.max(1e-9) / 1e9;
    println!(
        "achieved {achieved:.2} GFLOP/s over the study ({:.3e} training FLOPs, {}); SGEMM {SGEMM_N}³ on {threads} threads: Burn {sgemm:.1} GFLOP/s, so {:.1}% of it{}",
        flops,
        serde_json::to_string(&records[0].flops_convention)?.trim_matches('"'),
        100.0 * achieved / sgemm,
        peer_sgemm.map_or(String::new(), |p| format!(
            "; PyTorch (MKL) {p:.1} GFLOP/s, so {:.1}% of that",
            100.0 * achieved / p
        )),
    );
    Ok(ExitCode::SUCCESS)
}

fn run_peer(python: &Path, script: &Path, case: &Case, args: &BenchArgs) -> Result<f64> {
    let output = Command::new(python)
        .arg(script)
        .args(["--d", &case.d_model.to_string()])
        .args(["--layers", &case.n_layers.to_string()])
        .args(["--heads", &case.n_heads.to_string()])
        .args(["--ctx", &case.ctx.to_string()])
        .args(["--batch", &case.batch.to_string()])
        .args(["--threads", &case.threads.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .output()
        .with_context(|| format!("running the peer {} {}", python.display(), script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The peer prints one `RESULT ... median_ms=X ...` line.
    stdout
        .lines()
        .filter(|l| l.starts_with("RESULT"))
        .flat_map(|l| l.split_whitespace())
        .find_map(|field| {
            field
                .strip_prefix("median_ms=")
                .and_then(|v| v.parse().ok())
        })
        .with_context(|| {
            format!(
                "the peer printed no RESULT line; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// PyTorch's f32 GEMM rate on `threads` threads, for the same square product.
fn peer_sgemm_gflops(python: &Path, threads: usize) -> Result<f64> {
    let script = format!(
        "import torch, time\ntorch.set_num_threads({threads})\na = torch.rand({SGEMM_N}, {SGEMM_N})\n\
         a @ a\nts = []\nfor _ in range(10):\n    t = time.perf_counter(); a @ a; ts.append(time.perf_counter() - t)\n\
         print(2 * {SGEMM_N}**3 / sorted(ts)[5] / 1e9)\n"
    );
    let output = Command::new(python)
        .args(["-c", &script])
        .output()
        .with_context(|| format!("running {} for its SGEMM rate", python.display()))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| {
            format!(
                "{} printed no SGEMM rate; stderr:\n{}",
                python.display(),
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// `scalelab bench --family`: an image classifier's training step and inference batch, and
/// its PyTorch eager peer's in the same invocation.
fn classifier(args: &BenchArgs, family: Family) -> Result<ExitCode> {
    use scalelab_spec::{ClassifierConfig, ClassifierSpec, InputShape};
    let mut spec = ClassifierSpec {
        fc: args.fc,
        ..ClassifierSpec::default()
    };
    args.shape.apply(&mut spec);
    let shape_family = spec.preset.map_or(spec.family, |p| p.shape().0);
    let text = shape_family.serves(scalelab_spec::Purpose::TextClassifier);
    let (input, classes) = if text {
        let tokens = InputShape::Tokens {
            vocab: args.vocab,
            ctx: args.seq_len,
            per_token: false,
        };
        (tokens, 2)
    } else {
        (InputShape::Image([1, 28, 28]), 10)
    };
    let config = spec.resolve(input, classes)?;
    if args.images == 0 || args.inference_batch == 0 || args.steps == 0 || args.seq_len == 0 {
        bail!(
            "--images, --inference-batch, --seq-len and --steps must be at least 1\nhint: e.g. --images 64 --inference-batch 500 --steps 20"
        );
    }
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mut peer_flags: Vec<String> = match &config {
        ClassifierConfig::Mlp(c) => vec!["--hidden".into(), list(&c.hidden)],
        ClassifierConfig::Cnn(c) => {
            vec![
                "--stages".into(),
                list(&c.stages),
                "--fc".into(),
                c.fc.to_string(),
            ]
        }
        ClassifierConfig::Resnet(c) => vec!["--stages".into(), list(&c.stages)],
        ClassifierConfig::Rnn(c) => vec![
            "--embed".into(),
            c.embed.to_string(),
            "--hidden".into(),
            c.hidden.to_string(),
            "--layers".into(),
            c.layers.to_string(),
        ],
        ClassifierConfig::Encoder(c) if !c.causal && !c.segments && !c.next_sentence => vec![
            "--width".into(),
            c.d_model.to_string(),
            "--layers".into(),
            c.n_layers.to_string(),
            "--heads".into(),
            c.n_heads.to_string(),
        ],
        _ => bail!(
            "--family {}: no PyTorch peer of this classifier\nhint: benchmark mlp, cnn, resnet, lstm, gru or encoder",
            family.name()
        ),
    };
    peer_flags.splice(
        0..0,
        ["--family".to_string(), config.family().name().to_string()],
    );
    if text {
        peer_flags.extend([
            "--vocab".into(),
            args.vocab.to_string(),
            "--seq-len".into(),
            args.seq_len.to_string(),
            "--classes".into(),
            classes.to_string(),
        ]);
    }
    let threads = set_threads(Some(args.threads))?;
    let (device, _) = crate::device::open(args.device)?;
    let timing = scalelab_train::bench::bench_classifier(
        &config,
        input,
        classes,
        (args.images, args.inference_batch),
        (args.warmup, args.steps),
        &device,
    )?;
    let peer: Option<serde_json::Value> = match &args.peer_python {
        None => None,
        Some(python) => {
            let out = Command::new(python)
                .arg(&args.classifier_peer)
                .args(&peer_flags)
                .args(["--batch", &args.images.to_string()])
                .args(["--inference-batch", &args.inference_batch.to_string()])
                .args(["--threads", &threads.to_string()])
                .args(["--warmup", &args.warmup.to_string()])
                .args(["--steps", &args.steps.to_string()])
                .output()
                .with_context(|| format!("running {}", python.display()))?;
            if !out.status.success() {
                bail!(
                    "the peer {} failed: {}\nhint: give --peer-python a Python with PyTorch (scripts/verify-venv.sh makes one)",
                    args.classifier_peer.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or_default();
            Some(
                serde_json::from_str(line)
                    .with_context(|| format!("the peer printed no JSON line: {line}"))?,
            )
        }
    };
    let ratio = |key: &str, ours: f64| -> Option<f64> {
        peer.as_ref()
            .and_then(|p| p[key].as_f64())
            .map(|theirs| ours / theirs)
    };
    let (train_ratio, inference_ratio) = (
        ratio("train_step_ms", timing.train_step_ms),
        ratio("inference_ms", timing.inference_ms),
    );
    let examples = if text { "sentences" } else { "images" };
    if args.json {
        let value = serde_json::json!({
            "family": family.name(), "model": config.describe(), "threads": threads,
            "fused": !args.unfused,
            "scalelab": timing, "peer": peer,
            "train_ratio": train_ratio, "inference_ratio": inference_ratio,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} ({} params), {threads} thread(s): training step of {} {examples} {:.2} ms (median; {:.2}-{:.2}), inference of {} {examples} {:.2} ms; loss {:.3} -> {:.3}",
        config.describe(),
        timing.params,
        timing.batch,
        timing.train_step_ms,
        timing.train_range_ms[0],
        timing.train_range_ms[1],
        timing.inference_batch,
        timing.inference_ms,
        timing.loss[0],
        timing.loss[1],
    );
    if let (Some(p), Some(t), Some(i)) = (&peer, train_ratio, inference_ratio) {
        if p["params"].as_u64() != Some(timing.params) {
            let why = match family {
                Family::Lstm => " (PyTorch's LSTM has a second bias per gate)",
                _ => "",
            };
            println!("the peer has {} parameters{why}", p["params"]);
        }
        println!(
            "PyTorch {} eager: training step {:.2} ms, inference {:.2} ms; scalelab / PyTorch: training {t:.2}, inference {i:.2}",
            p["torch"].as_str().unwrap_or("?"),
            p["train_step_ms"].as_f64().unwrap_or(f64::NAN),
            p["inference_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(ExitCode::SUCCESS)
}
