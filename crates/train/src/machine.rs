//! Facts about the machine and process, for run records: host, CPU, cores, peak memory.

use scalelab_spec::Machine;

/// Describes this machine; `backend` names the tensor backend and device.
pub fn describe(backend: &str) -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let hostname = read("/proc/sys/kernel/hostname").trim().to_string();
    Machine {
        hostname: if hostname.is_empty() {
            "unknown".to_string()
        } else {
            hostname
        },
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        backend: backend.to_string(),
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`); 0 elsewhere.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// This machine's memory in bytes (Linux `MemTotal`), if it can be read.
pub fn total_memory_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Refuses to train a model whose estimated training memory (`estimate` bytes, see
/// `LmConfig::training_memory_bytes`), less the estimate's largest error seen (25%), still
/// exceeds this machine's memory: it would be killed for memory, or swap, long after it
/// started. A model within the estimate's error of the limit is let through.
pub fn check_memory(estimate: Option<f64>, what: &str) -> Result<(), crate::TrainError> {
    let (Some(estimate), Some(total)) = (estimate, total_memory_bytes()) else {
        return Ok(());
    };
    if 0.75 * estimate > total as f64 {
        return Err(crate::TrainError::Spec(scalelab_spec::SpecError::invalid(
            "model",
            what,
            format!(
                "training it needs about {:.1} GB (estimated, to within 25%: weights, gradients, Adam's moments and activations; `scalelab info` prints it), more than this machine's {:.1} GB; use a smaller batch, context or model",
                estimate / 1e9,
                total as f64 / 1e9
            ),
        )));
    }
    Ok(())
}

/// The source revision this program was built from.
pub fn git_revision() -> &'static str {
    env!("SCALELAB_GIT_REVISION")
}
