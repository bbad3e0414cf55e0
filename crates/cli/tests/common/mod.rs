//! Helpers shared by the end-to-end tests of the `scalelab` program.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// The package's directory, read when the test runs (cargo sets it), not when it was
/// compiled: a test binary reused from a build of another checkout must read this one's
/// files.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|e| panic!("CARGO_MANIFEST_DIR: {e}"))
}

/// Runs `scalelab ARGS` in `cwd` and waits for it.
pub fn scalelab(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scalelab"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot start scalelab: {e}"))
}

/// Runs `scalelab` with the words of `line` as its arguments (none of which holds a space).
pub fn scalelab_line(line: &str, cwd: &Path) -> Output {
    scalelab(&line.split_whitespace().collect::<Vec<_>>(), cwd)
}

/// Starts `scalelab` with the words of `line` in `cwd`, its standard output and error kept.
pub fn start(line: &str, cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_scalelab"))
        .args(line.split_whitespace())
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start scalelab: {e}"))
}

/// `study status DIR --json`, run in `cwd`, as (run id, status) pairs.
pub fn statuses(cwd: &Path, dir: &str) -> Vec<(String, String)> {
    let out = scalelab_line(&format!("study status {dir} --json"), cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status --json: {e}"));
    runs.iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (field("run_id"), field("status"))
        })
        .collect()
}

/// A process's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics unless the standard error of `o` says every one of `parts`.
pub fn assert_says(o: &Output, parts: &[&str]) {
    let err = stderr(o);
    for part in parts {
        assert!(err.contains(part), "no {part:?} in: {err}");
    }
}

/// A separable stand-in for the UCI sentiment files in `dir`: positive sentences praise,
/// negative ones pan, 40 a file, in the package's JSON layout (with its trailing empty
/// entry).
pub fn write_sentiment_standin(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let good = ["great", "wonderful", "loved", "excellent", "superb"];
    let bad = ["awful", "terrible", "hated", "boring", "dreadful"];
    let things = ["film", "food", "phone", "service", "story", "battery"];
    for (f, name) in ["imdb.json", "yelp.json", "amazon.json"].iter().enumerate() {
        let mut entries = Vec::new();
        for i in 0..40 {
            let positive = i % 2 == 0;
            let word = if positive { good[i % 5] } else { bad[i % 5] };
            let text = format!("The {} was {word}.", things[(i + f) % 6]);
            entries.push(serde_json::json!({ "text": text, "class": u8::from(positive) }));
        }
        entries.push(serde_json::json!({ "text": "", "class": null }));
        let path = dir.join(name);
        std::fs::write(&path, serde_json::Value::Array(entries).to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
