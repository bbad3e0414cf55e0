//! Ctrl-C and SIGTERM. The first asks the run (or the study) to stop at its next step
//! boundary with a checkpoint, after which the process exits with [`INTERRUPTED_EXIT`]; the
//! same command resumes. A second ends the process at once with the same code (a study's
//! children then see their parent go and end too).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
pub(crate) use scalelab_sweep::INTERRUPTED_EXIT;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// Installs the handlers; the flag they set.
pub(crate) fn handle() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it: a second
        // signal exits at once.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            INTERRUPTED_EXIT,
            Arc::clone(&flag),
        )
        .context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(signal, Arc::clone(&flag))
            .context("cannot install the Ctrl-C handler")?;
    }
    Ok(flag)
}

/// The handlers of [`handle`], and SIGUSR1: a cluster's warning that the task's time is
/// nearly up (SLURM's `--signal=B:USR1@120`). It stops the work at a checkpoint as SIGTERM
/// does, and sets the second flag, so that the task can ask to be requeued.
pub(crate) fn handle_with_warning() -> Result<(Arc<AtomicBool>, Arc<AtomicBool>)> {
    let flag = handle()?;
    let warned = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGUSR1, Arc::clone(&warned))
        .context("cannot install the SIGUSR1 handler")?;
    signal_hook::flag::register(SIGUSR1, Arc::clone(&flag))
        .context("cannot install the SIGUSR1 handler")?;
    Ok((flag, warned))
}

/// Says where a run that stopped at a checkpoint after `seen` `unit`s (tokens, samples)
/// stands, and its exit code: [`INTERRUPTED_EXIT`] if `flag` stopped it, else success (it
/// stopped where `--stop-after` asked).
pub(crate) fn stopped(flag: &AtomicBool, seen: u64, unit: &str, run_dir: &Path) -> ExitCode {
    if flag.load(Ordering::Relaxed) {
        eprintln!(
            "interrupted at {seen} {unit}: checkpoint written to {}; the same command resumes",
            run_dir.display()
        );
        ExitCode::from(INTERRUPTED_EXIT as u8)
    } else {
        eprintln!("stopped at {seen} {unit}; run again to resume");
        ExitCode::SUCCESS
    }
}
