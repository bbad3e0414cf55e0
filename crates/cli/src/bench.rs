//! `scalelab bench`: times one training step of the two reference models of
//! `shared/peer/` and, given a Python with PyTorch, runs the peer script right after each
//! measurement so that both are measured in the same run, and prints the ratio.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use scalelab_spec::GptConfig;
use scalelab_train::bench::bench_gpt_step;

use crate::args::BenchArgs;
use crate::set_threads;

/// One reference setting: shape and threads, as in shared/peer/README.md.
struct Case {
    d_model: usize,
    n_layers: usize,
    n_heads: usize,
    threads: usize,
}

const CASES: [Case; 2] = [
    Case {
        d_model: 256,
        n_layers: 4,
        n_heads: 4,
        threads: 2,
    },
    Case {
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        threads: 1,
    },
];

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for case in CASES {
        // The pool is global: build one of the case's size for this measurement.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(case.threads)
            .build()?;
        let config = GptConfig {
            n_layers: case.n_layers,
            d_model: case.d_model,
            n_heads: case.n_heads,
            d_ff: 4 * case.d_model,
            ctx_len: 128,
            vocab_size: 256,
            dropout: 0.0,
            tie_embeddings: false,
            family: Default::default(),
        };
        let ours = pool.install(|| {
            bench_gpt_step(
                &config,
                16,
                args.warmup,
                args.steps,
                &burn::tensor::Device::flex(),
            )
        });
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
                    "d_model": c.d_model, "n_layers": c.n_layers, "threads": c.threads,
                    "scalelab": ours, "peer_median_ms": peer,
                    "ratio": peer.map(|p| ours.median_ms / p),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "| model (ctx 128, batch 16) | threads | scalelab ms/step | forward / backward / AdamW ms | tokens/s | GFLOP/s | loss first→last | PyTorch eager ms/step | ratio (scalelab / PyTorch) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (c, ours, peer) in &rows {
        println!(
            "| d{} / {} layers ({:.2}M params) | {} | {:.1} | {:.0} / {:.0} / {:.0} | {:.0} | {:.1} | {:.3}→{:.3} | {} | {} |",
            c.d_model,
            c.n_layers,
            ours.params as f64 / 1e6,
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

fn run_peer(python: &Path, script: &Path, case: &Case, args: &BenchArgs) -> Result<f64> {
    let output = Command::new(python)
        .arg(script)
        .args([
            "--d",
            &case.d_model.to_string(),
            "--layers",
            &case.n_layers.to_string(),
        ])
        .args([
            "--heads",
            &case.n_heads.to_string(),
            "--threads",
            &case.threads.to_string(),
        ])
        .args([
            "--steps",
            &args.steps.to_string(),
            "--warmup",
            &args.warmup.to_string(),
        ])
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
