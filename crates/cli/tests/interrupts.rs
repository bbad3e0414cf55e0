//! Ctrl-C, SIGTERM and a full disk (issue 22): a run stops at its next step with a
//! checkpoint and exits with 130, and the same command resumes it to the curve it would have
//! had; a study asks its running children to stop, records them as interrupted, exits with
//! 130, and resumes; a second signal ends a process at once. A disk that fills mid-run fails
//! the run with a clear error and leaves its last checkpoint whole.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{scalelab_line, start, statuses, stderr};

/// Sends `signal` (`INT`, `TERM`) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child`, at most `secs` seconds.
fn finish(mut child: Child, secs: u64) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(secs), "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The final validation loss of a run's record (`--json` output).
fn final_loss(out: &Output) -> f64 {
    assert!(out.status.success(), "{}", stderr(out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    record["final_val_loss"].as_f64().unwrap()
}

/// A run that trains for about ten seconds here.
const RUN: &str = "train --depth 1 --ctx 16 --tokens 600000 --threads 1 --json";

#[test]
fn an_interrupted_run_checkpoints_exits_130_and_resumes_to_the_same_loss() {
    for sig in ["INT", "TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path();
        let child = start(RUN, cwd);
        std::thread::sleep(Duration::from_secs(2));
        signal(&child, sig);
        let out = finish(child, 30);
        assert_eq!(out.status.code(), Some(130), "{sig}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("interrupted at") && err.contains("the same command resumes"),
            "{err}"
        );
        let runs: Vec<_> = std::fs::read_dir(cwd.join("runs")).unwrap().collect();
        assert_eq!(runs.len(), 1);
        let run = runs[0].as_ref().unwrap().path();
        assert!(
            run.join("checkpoint").is_dir(),
            "no checkpoint in {}",
            run.display()
        );
        assert!(!run.join("record.json").exists());

        let resumed = final_loss(&scalelab_line(RUN, cwd));
        let whole = tempfile::tempdir().unwrap();
        let uninterrupted = final_loss(&scalelab_line(RUN, whole.path()));
        assert_eq!(resumed, uninterrupted, "{sig}: resumed to another loss");
    }
}

/// A step of this model takes about a second here, so two signals 50 ms apart both arrive
/// within one step: the second ends the process before the step does.
#[test]
fn a_second_signal_ends_the_run_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let child = start(
        "train --n-layers 4 --d-model 512 --n-heads 8 --ctx 256 --batch 32 --tokens 10000000 --threads 1",
        cwd,
    );
    std::thread::sleep(Duration::from_secs(4));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, "INT");
    let started = Instant::now();
    let out = finish(child, 30);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(!stderr(&out).contains("interrupted at"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_millis(900));
}

/// Three runs trained one at a time, each for five to ten seconds here.
const STUDY: &str = r#"
name = "slow"
[model]
ctx_len = 16
aspect_ratio = 16
head_dim = 8
[sizes]
depths = [1, 2, 3]
[budget]
tokens = [400000]
[train]
batch_size = 4
eval_every_tokens = 50000
eval_tokens = 512
[analysis]
bootstrap = 20
"#;

#[test]
fn an_interrupted_study_stops_its_runs_at_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("slow.toml"), STUDY).unwrap();
    let child = start("study run slow.toml --dir s --jobs 1 --no-report", cwd);
    // Interrupt once the first run is training (its directory has a spec and a log).
    let begun = Instant::now();
    while !std::fs::read_dir(cwd.join("s/runs")).is_ok_and(|mut d| d.next().is_some()) {
        assert!(begun.elapsed() < Duration::from_secs(60), "no run started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // `study repair` (which moves the store aside) is refused while the study runs; a
    // second `study run` joins it as a worker instead (tests/cluster.rs).
    let twice = scalelab_line("study repair s", cwd);
    assert_eq!(twice.status.code(), Some(1), "{}", stderr(&twice));
    assert!(
        stderr(&twice).contains("is being run by another scalelab process"),
        "{}",
        stderr(&twice)
    );
    signal(&child, "INT");
    let out = finish(child, 60);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted: 1 runs stopped at a checkpoint"),
        "{}",
        stderr(&out)
    );
    let states = statuses(cwd, "s");
    let count = |s: &str| states.iter().filter(|(_, st)| st == s).count();
    assert_eq!(
        (count("interrupted"), count("planned")),
        (1, 2),
        "{states:?}"
    );
    let (stopped, _) = states.iter().find(|(_, s)| s == "interrupted").unwrap();
    assert!(cwd.join("s/runs").join(stopped).join("checkpoint").is_dir());

    // The same command finishes all three, the interrupted one from its checkpoint.
    let out = scalelab_line("study run slow.toml --dir s --jobs 1 --no-report", cwd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("3 completed now"), "{}", stderr(&out));
    assert!(statuses(cwd, "s").iter().all(|(_, s)| s == "completed"));
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cwd.join("s/runs").join(stopped).join("record.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["resumed"], true);
}

/// Unmounts a tmpfs when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Copies the directory tree `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A run on a 1.5 MB tmpfs: its first checkpoint (1 MB) fits, its second cannot be written
/// beside it. Needs root to mount; says loudly that it skipped otherwise.
#[test]
fn a_full_disk_fails_the_run_clearly_and_keeps_its_last_checkpoint() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let disk = cwd.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1500k", "tmpfs"])
        .arg(&disk)
        .stderr(Stdio::piped())
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        let why = mounted.map_or_else(|e| e.to_string(), |o| stderr(&o));
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_full_disk_fails_the_run_clearly_and_keeps_its_last_checkpoint: cannot mount a tmpfs here ({why}); run the tests as root to include it"
        );
        return;
    }
    let _unmount = Mounted(disk.clone());
    let run =
        "train --depth 1 --ctx 16 --tokens 200000 --threads 1 --checkpoint-every 20000 --json";
    let out = scalelab_line(&format!("{run} --out {}", disk.join("runs").display()), cwd);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("hint: the disk is full"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let runs: Vec<_> = std::fs::read_dir(disk.join("runs")).unwrap().collect();
    let dir = runs[0].as_ref().unwrap().path();
    assert!(dir.join("checkpoint/state.json").is_file());
    assert!(
        !dir.join(".checkpoint.tmp").exists(),
        "a half-written checkpoint was left"
    );

    // With space again (the run directory moved to a disk that has it), the same command
    // resumes from that checkpoint to the loss of a run never stopped.
    let id = dir.file_name().unwrap();
    copy_dir(&dir, &cwd.join("runs").join(id));
    let resumed = scalelab_line(run, cwd);
    let record: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(record["resumed"], true);
    let whole = tempfile::tempdir().unwrap();
    assert_eq!(
        final_loss(&resumed),
        final_loss(&scalelab_line(run, whole.path()))
    );
}
