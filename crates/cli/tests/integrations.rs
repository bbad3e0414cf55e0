//! What scalelab writes for other tools, read by those tools: TensorBoard event files by the
//! `tensorboard` package, GPT-2 exports by `transformers`, runs logged to a real `mlflow
//! server`. The Python side is scripts/verify/*.py, run with the interpreter named by
//! SCALELAB_VERIFY_PYTHON (.ci/run makes it with scripts/verify-venv.sh); without it these
//! tests say loudly that they skipped.
#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{manifest_dir, scalelab_line, stderr};

/// The verification interpreter, or `None` (said loudly) when none is set up.
fn python() -> Option<PathBuf> {
    match std::env::var_os("SCALELAB_VERIFY_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED an integration check: SCALELAB_VERIFY_PYTHON is not set (export SCALELAB_VERIFY_PYTHON=$(scripts/verify-venv.sh) to run it)"
            );
            None
        }
    }
}

/// Runs `scripts/verify/SCRIPT ARGS` with `python` in `cwd`; asserts it passed, returns its
/// standard output.
fn check(python: &Path, script: &str, args: &[&str], cwd: &Path) -> String {
    let script = Path::new(&manifest_dir())
        .join("../../scripts/verify")
        .join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{text}{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = writeln!(std::io::stderr(), "{}", text.trim_end());
    text
}

fn run_id(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    record["run_id"].as_str().unwrap().to_string()
}

#[test]
fn tensorboard_reads_every_scalar_and_hparam_of_a_language_model_and_a_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let lm = run_id(&scalelab_line(
        "train --n-layers 1 --d-model 16 --n-heads 2 --ctx 16 --batch 2 --tokens 2048 --eval-every 512 --eval-tokens 256 --threads 1 --out runs --tensorboard tb/lm --json -q",
        cwd,
    ));
    let classifier = run_id(&scalelab_line(
        "classify --preset mlp --samples 512 --threads 1 --out runs --tensorboard tb/classifier --json",
        cwd,
    ));
    // The event files are there whether or not the checker is.
    for dir in ["tb/lm", "tb/classifier"] {
        let files: Vec<_> = std::fs::read_dir(cwd.join(dir)).unwrap().collect();
        assert_eq!(files.len(), 1, "{dir}");
    }
    // `export` writes the same file again, replacing it.
    let out = scalelab_line(
        &format!("export runs/{lm} --format tensorboard --out tb/lm"),
        cwd,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(cwd.join("tb/lm")).unwrap().count(), 1);
    let Some(python) = python() else {
        return;
    };
    for (id, dir) in [(lm, "tb/lm"), (classifier, "tb/classifier")] {
        let text = check(
            &python,
            "tensorboard_check.py",
            &[&format!("runs/{id}"), dir],
            cwd,
        );
        assert!(text.contains("match its record"), "{text}");
    }
}
