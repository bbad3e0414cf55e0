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

/// The source revision this program was built from.
pub fn git_revision() -> &'static str {
    env!("SCALELAB_GIT_REVISION")
}
