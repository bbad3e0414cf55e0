//! Helpers shared by the end-to-end tests of the `scalelab` program.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;
use std::process::{Command, Output};

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
