//! Training on a GPU through Burn's wgpu backend (issue 20): every family trains a few steps
//! on the Vulkan device and matches its CPU run, and a study trains GPU runs one at a time.
//!
//! Needs a build with the `gpu` feature and a Vulkan device; CI has Mesa's lavapipe (a
//! Vulkan 1.3 device on the CPU) and runs `SCALELAB_GPU_TEST=1 cargo test --workspace
//! --features gpu --test gpu`. Without the feature, or without a device and without
//! SCALELAB_GPU_TEST=1, each test says loudly that it skipped.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::io::Write as _;
use std::path::Path;

mod common;
use common::{assert_says, scalelab_line, stderr, write_sentiment_standin};

/// How far a loss on the GPU may be from the same run's on the CPU after a few steps: f32
/// sums in another order (measured on lavapipe: see the README's "GPU" section).
const TOLERANCE: f64 = 2e-3;

/// Whether the GPU tests can run here; says loudly why not when they cannot.
fn gpu(cwd: &Path) -> bool {
    let required = std::env::var("SCALELAB_GPU_TEST").is_ok_and(|v| v == "1");
    let skip = |why: &str| {
        assert!(!required, "SCALELAB_GPU_TEST=1 but {why}");
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a GPU test: {why} (cargo test --workspace --features gpu --test gpu, with a Vulkan device: Mesa's lavapipe is apt install mesa-vulkan-drivers)"
        );
        false
    };
    if !cfg!(feature = "gpu") {
        return skip("scalelab was built without the gpu feature");
    }
    let out = scalelab_line(
        "bench --device gpu --steps 1 --warmup 0 --d-model 8 --layers 1 --heads 1 --ctx 8 --batch 1 --threads 1",
        cwd,
    );
    if !out.status.success() {
        return skip(&format!("no GPU device opens: {}", stderr(&out)));
    }
    true
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The validation losses of a language-model record, in order.
fn curve(record: &serde_json::Value) -> Vec<f64> {
    record["curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["val_loss"].as_f64().unwrap())
        .collect()
}

fn close(what: &str, cpu: &[f64], gpu: &[f64]) {
    assert_eq!(cpu.len(), gpu.len(), "{what}");
    let worst = cpu
        .iter()
        .zip(gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let _ = writeln!(
        std::io::stderr(),
        "{what}: CPU {cpu:?}, GPU {gpu:?}, largest difference {worst:.2e}"
    );
    assert!(worst <= TOLERANCE, "{what}: {cpu:?} vs {gpu:?}");
}

#[test]
fn language_models_of_every_family_train_on_the_gpu_to_their_cpu_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    if !gpu(cwd) {
        return;
    }
    for (family, shape) in [
        ("gpt", "--n-layers 2 --d-model 32 --n-heads 2"),
        ("lstm", "--n-layers 1 --d-model 32"),
        ("gru", "--n-layers 1 --d-model 32"),
    ] {
        let run = |device: &str| {
            json(&scalelab_line(
                &format!(
                    "train --family {family} {shape} --ctx 32 --batch 4 --lr 3e-3 --tokens 1024 --eval-every 256 --eval-tokens 256 --threads 2 --device {device} --out {device} --json -q"
                ),
                cwd,
            ))
        };
        let (cpu, gpu) = (run("cpu"), run("gpu"));
        // The same experiment: the device is recorded, not part of the identity.
        assert_eq!(cpu["run_id"], gpu["run_id"]);
        assert_eq!(cpu["machine"]["backend"], "burn-flex (cpu)");
        let backend = gpu["machine"]["backend"].as_str().unwrap();
        assert!(backend.starts_with("burn-wgpu ("), "{backend}");
        close(family, &curve(&cpu), &curve(&gpu));
    }
}

#[test]
fn classifiers_of_every_family_train_on_the_gpu_to_their_cpu_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    if !gpu(cwd) {
        return;
    }
    write_sentiment_standin(&cwd.join("sent"));
    for (name, flags) in [
        ("mlp", "--preset mlp --samples 512"),
        ("cnn", "--preset cnn-small --samples 256"),
        ("resnet", "--preset resnet-small --samples 128"),
        (
            "encoder",
            "--dataset sentiment --data-dir sent --preset encoder-small --samples 256",
        ),
        (
            "lstm",
            "--dataset sentiment --data-dir sent --preset lstm --samples 256",
        ),
    ] {
        let run = |device: &str| {
            json(&scalelab_line(
                &format!(
                    "classify {flags} --lr 3e-3 --threads 2 --device {device} --out {device} --json"
                ),
                cwd,
            ))
        };
        let (cpu, gpu) = (run("cpu"), run("gpu"));
        assert_eq!(cpu["run_id"], gpu["run_id"]);
        let losses = |r: &serde_json::Value| {
            ["train", "validation", "test"]
                .iter()
                .map(|s| r[s]["loss"].as_f64().unwrap())
                .collect::<Vec<_>>()
        };
        close(name, &losses(&cpu), &losses(&gpu));
    }
}

#[test]
fn a_study_trains_gpu_runs_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    if !gpu(cwd) {
        return;
    }
    std::fs::write(
        cwd.join("s.toml"),
        r#"
name = "s"
[model]
ctx_len = 16
aspect_ratio = 16
head_dim = 8
[sizes]
depths = [1, 2]
[budget]
tokens = [2048]
[train]
batch_size = 4
eval_every_tokens = 1024
eval_tokens = 256
[analysis]
bootstrap = 0
"#,
    )
    .unwrap();
    let out = scalelab_line("study run s.toml --dir s --device gpu --jobs 2", cwd);
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out, &["--jobs 2", "one at a time"]);
    let out = scalelab_line("study run s.toml --dir s --device gpu --no-report", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_says(&out, &["2 runs, 1 at a time", "2 completed now"]);
    for entry in std::fs::read_dir(cwd.join("s/runs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path().join("record.json")).unwrap();
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        let backend = record["machine"]["backend"].as_str().unwrap();
        assert!(backend.starts_with("burn-wgpu ("), "{backend}");
    }
}
