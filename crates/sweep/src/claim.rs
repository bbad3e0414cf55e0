//! Claims: how many workers (`study run`, `study run-one`, on one machine or on many sharing
//! a filesystem) train each run of a study exactly once.
//!
//! A worker claims a run by creating `runs/ID/claim.json` exclusively: it writes its claim to
//! a file of its own and hard-links it to that name, which fails when the name exists (the
//! classic lock of NFS, atomic on local filesystems and over NFS alike). The claim names the
//! worker (host, boot, process id and start time, and a nonce) and its heartbeat is the
//! file's modification time, renewed by the worker while it trains. A claim is stale when its
//! worker is gone (same machine: no process with that id and start time; checked at once) or
//! silent longer than its timeout (any machine); a stale claim is taken over by renaming it
//! aside and claiming anew, and the run resumes from its checkpoint. A worker that finds its
//! claim taken (it was silent too long) stops training that run.
//!
//! Heartbeats compare modification times with this machine's clock, so the machines of a
//! cluster must keep their clocks within the timeout of each other (NTP, as SLURM needs too).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::SweepError;

/// The claim file in a run's directory.
pub const CLAIM_FILE: &str = "claim.json";

/// How long a claim may go without a heartbeat before another worker takes it over, unless
/// a worker says otherwise: long enough for NFS attribute caches (up to 60 s by default).
pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_secs(300);

/// Who holds a claim, as its file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// `host:pid:nonce`, unique to one worker process.
    pub worker: String,
    /// The machine's host name.
    pub host: String,
    /// The machine's boot id, so that a process id from before a reboot is not taken for a
    /// live one.
    pub boot_id: String,
    /// The worker's process id.
    pub pid: u32,
    /// The worker's start time in clock ticks since boot (field 22 of /proc/PID/stat), so
    /// that a reused process id is not taken for the worker.
    pub start_ticks: u64,
    /// When the run was claimed (seconds since the Unix epoch).
    pub claimed_at: u64,
    /// How long the worker may be silent before its claim is stale, in seconds.
    pub timeout_secs: u64,
    /// The training process the worker started for the run, and its start time: a claim on
    /// this machine is stale only once both processes are gone, so that a takeover never
    /// races a child still writing the run's checkpoint.
    #[serde(default)]
    pub child: Option<(u32, u64)>,
}

/// This worker process.
#[derive(Debug, Clone)]
pub struct Worker {
    holder: Holder,
    timeout: Duration,
}

/// What a claim attempt found.
#[derive(Debug)]
pub enum Attempt {
    /// The run is this worker's now; `took_over` names the stale holder it replaced.
    Claimed {
        /// The claim, to renew and release.
        claim: Claim,
        /// The stale holder replaced, if any.
        took_over: Option<Holder>,
    },
    /// A live worker holds it (or a claim is being written: its holder is unknown yet).
    Held(Option<Holder>),
}

/// A claim this worker holds.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    worker: String,
    last_beat: SystemTime,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The start time (clock ticks since boot) of process `pid`, if it is alive.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields resume after the last
    // `)`, the first of them being field 3 (the state): field 22 is the 20th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Worker {
    /// This process as a worker whose claims go stale after `timeout` of silence.
    pub fn current(timeout: Duration) -> Worker {
        let pid = std::process::id();
        let host = read_trimmed("/proc/sys/kernel/hostname");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Worker {
            holder: Holder {
                worker: format!("{host}:{pid}:{nanos:08x}"),
                host,
                boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
                pid,
                start_ticks: start_ticks(pid).unwrap_or(0),
                claimed_at: 0,
                timeout_secs: timeout.as_secs().max(1),
                child: None,
            },
            timeout,
        }
    }

    /// The worker's name, `host:pid:nonce`.
    pub fn name(&self) -> &str {
        &self.holder.worker
    }

    /// How often a claim's heartbeat is renewed: a quarter of the timeout.
    pub fn beat_interval(&self) -> Duration {
        self.timeout / 4
    }

    /// Tries to claim the run whose directory is `run_dir` (created if missing).
    pub fn try_claim(&self, run_dir: &Path) -> Result<Attempt, SweepError> {
        std::fs::create_dir_all(run_dir).map_err(|e| SweepError::io(run_dir, e))?;
        let path = run_dir.join(CLAIM_FILE);
        // A few rounds: each loses only to another worker that made progress. A claim is
        // read before anything is written, so that looking at a held run costs no writes.
        for _ in 0..4 {
            let Some((holder, age)) = read_claim(&path)? else {
                if self.link_new(&path)? {
                    return Ok(Attempt::Claimed {
                        claim: self.claim(path),
                        took_over: None,
                    });
                }
                continue; // claimed meanwhile: look at that claim
            };
            let stale = match &holder {
                Some(h) => self.is_stale(h, age),
                // Being written (the link makes this rare) or damaged: stale only by age.
                None => age > self.timeout,
            };
            if !stale {
                return Ok(Attempt::Held(holder));
            }
            let worker = holder.as_ref().map(|h| h.worker.as_str());
            if self.set_aside(&path, worker)? && self.link_new(&path)? {
                return Ok(Attempt::Claimed {
                    claim: self.claim(path),
                    took_over: holder,
                });
            }
        }
        Ok(Attempt::Held(read_claim(&path)?.and_then(|(h, _)| h)))
    }

    fn claim(&self, path: PathBuf) -> Claim {
        Claim {
            path,
            worker: self.holder.worker.clone(),
            last_beat: SystemTime::now(),
        }
    }

    /// Whether `holder`'s claim, last renewed `age` ago, is stale: its process is gone
    /// (known only on its own machine) or it has been silent past its timeout.
    pub fn is_stale(&self, holder: &Holder, age: Duration) -> bool {
        let timeout = Duration::from_secs(holder.timeout_secs.max(1));
        if age > timeout {
            return true;
        }
        let same_machine = holder.host == self.holder.host
            && holder.boot_id == self.holder.boot_id
            && !holder.boot_id.is_empty();
        let gone = |(pid, ticks): (u32, u64)| start_ticks(pid) != Some(ticks);
        same_machine
            && holder.worker != self.holder.worker
            && gone((holder.pid, holder.start_ticks))
            && holder.child.is_none_or(gone)
    }

    /// Creates `path` with this worker's claim if it does not exist: written whole to a file
    /// of its own, then hard-linked to `path` (fails if `path` exists). Whether it did.
    fn link_new(&self, path: &Path) -> Result<bool, SweepError> {
        let holder = Holder {
            claimed_at: now_secs(),
            ..self.holder.clone()
        };
        let text = serde_json::to_string_pretty(&holder).map_err(|e| SweepError::Serialise {
            path: path.to_path_buf(),
            what: "a run's claim",
            source: e,
        })?;
        let own = path.with_extension(format!("json.{}", self.nonce()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&own)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| SweepError::io(&own, e))?;
        let linked = std::fs::hard_link(&own, path);
        let _ = std::fs::remove_file(&own);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(SweepError::io(path, e)),
        }
    }

    fn nonce(&self) -> &str {
        self.holder.worker.rsplit(':').next().unwrap_or("0")
    }

    /// Moves the stale claim at `path` (of worker `stale`, or unreadable when None) aside.
    /// Whether it moved that claim: if another worker replaced it meanwhile, the fresh claim
    /// is put back (or, when a third claim already took the name, left for its own holder
    /// to find gone at its next heartbeat) and false is returned.
    fn set_aside(&self, path: &Path, stale: Option<&str>) -> Result<bool, SweepError> {
        let aside = path.with_extension(format!("json.stale-{}", self.nonce()));
        match std::fs::rename(path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(SweepError::io(path, e)),
        }
        let moved = read_holder(&aside).map(|h| h.worker);
        if moved.as_deref() == stale {
            let _ = std::fs::remove_file(&aside);
            return Ok(true);
        }
        let _ = std::fs::hard_link(&aside, path);
        let _ = std::fs::remove_file(&aside);
        Ok(false)
    }
}

fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The claim at `path`: its holder (None when it does not read) and the time since its last
/// heartbeat; None when there is no claim.
pub fn read_claim(path: &Path) -> Result<Option<(Option<Holder>, Duration)>, SweepError> {
    let modified = match std::fs::metadata(path).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SweepError::io(path, e)),
    };
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    Ok(Some((read_holder(path), age)))
}

impl Claim {
    /// Renews the heartbeat if `interval` has passed since the last one. False when the claim
    /// is no longer this worker's (it was taken over): the caller stops training the run.
    pub fn beat(&mut self, interval: Duration) -> Result<bool, SweepError> {
        let now = SystemTime::now();
        if now.duration_since(self.last_beat).unwrap_or(Duration::ZERO) < interval {
            return Ok(true);
        }
        if !self.is_mine() {
            return Ok(false);
        }
        let touch = || {
            File::options()
                .write(true)
                .open(&self.path)?
                .set_modified(now)
        };
        match touch() {
            Ok(()) => {
                self.last_beat = now;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SweepError::io(&self.path, e)),
        }
    }

    /// Names the training process `pid` in the claim (rewritten whole, by rename).
    pub fn set_child(&mut self, pid: u32) -> Result<(), SweepError> {
        let Some(mut holder) = read_holder(&self.path).filter(|h| h.worker == self.worker) else {
            return Ok(());
        };
        holder.child = Some((pid, start_ticks(pid).unwrap_or(0)));
        let text = serde_json::to_string_pretty(&holder).map_err(|e| SweepError::Serialise {
            path: self.path.clone(),
            what: "a run's claim",
            source: e,
        })?;
        let tmp = self.path.with_extension("json.child");
        std::fs::write(&tmp, text).map_err(|e| SweepError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| SweepError::io(&self.path, e))
    }

    /// Whether the claim file still names this worker.
    pub fn is_mine(&self) -> bool {
        read_holder(&self.path).is_some_and(|h| h.worker == self.worker)
    }

    /// Gives the run up (it is recorded, failed or stopped at a checkpoint): removes the
    /// claim if it is still this worker's.
    pub fn release(self) {
        if self.is_mine() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(a: Attempt) -> (Claim, Option<Holder>) {
        match a {
            Attempt::Claimed { claim, took_over } => (claim, took_over),
            Attempt::Held(h) => panic!("held by {h:?}"),
        }
    }

    fn write_claim(dir: &Path, holder: &Holder, age: Duration) {
        let path = dir.join(CLAIM_FILE);
        std::fs::write(&path, serde_json::to_string(holder).unwrap()).unwrap();
        let f = File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn one_worker_holds_a_run_until_it_releases_it() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("runs/a");
        let (a, b) = (
            Worker::current(Duration::from_secs(60)),
            Worker::current(Duration::from_secs(60)),
        );
        assert_ne!(a.name(), b.name());
        let (claim, took) = claimed(a.try_claim(&run).unwrap());
        assert!(took.is_none());
        // The same live process under another name (a second worker) is refused.
        match b.try_claim(&run).unwrap() {
            Attempt::Held(Some(h)) => assert_eq!(h.worker, a.name()),
            other => panic!("{other:?}"),
        }
        assert!(claim.is_mine());
        claim.release();
        assert!(!run.join(CLAIM_FILE).exists());
        let (claim, _) = claimed(b.try_claim(&run).unwrap());
        assert!(claim.is_mine());
        // No file of the attempts is left beside it.
        let names: Vec<_> = std::fs::read_dir(&run).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_dead_workers_claim_is_taken_over_at_once_and_a_silent_ones_after_its_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Worker::current(Duration::from_secs(60));
        // This machine, a process that does not exist (pid beyond pid_max's 2^22 limit).
        let dead = Holder {
            worker: "dead".into(),
            pid: 1 << 23,
            ..me.holder.clone()
        };
        let run = tmp.path().join("dead");
        std::fs::create_dir_all(&run).unwrap();
        write_claim(&run, &dead, Duration::ZERO);
        // Its training process still runs (this process stands for it): held.
        let with_child = Holder {
            child: Some((std::process::id(), me.holder.start_ticks)),
            ..dead.clone()
        };
        write_claim(&run, &with_child, Duration::ZERO);
        assert!(matches!(
            me.try_claim(&run).unwrap(),
            Attempt::Held(Some(_))
        ));
        write_claim(&run, &dead, Duration::ZERO);
        let (_, took) = claimed(me.try_claim(&run).unwrap());
        assert_eq!(took.unwrap().worker, "dead");

        // Another machine: alive as far as this one can tell, until it is silent too long.
        let remote = Holder {
            worker: "elsewhere:7:1".into(),
            host: "elsewhere".into(),
            boot_id: "other-boot".into(),
            pid: 7,
            timeout_secs: 60,
            ..me.holder.clone()
        };
        let run = tmp.path().join("remote");
        std::fs::create_dir_all(&run).unwrap();
        write_claim(&run, &remote, Duration::from_secs(30));
        assert!(matches!(
            me.try_claim(&run).unwrap(),
            Attempt::Held(Some(ref h)) if h.worker == remote.worker
        ));
        write_claim(&run, &remote, Duration::from_secs(61));
        let (claim, took) = claimed(me.try_claim(&run).unwrap());
        assert_eq!(took.unwrap().worker, remote.worker);
        assert!(claim.is_mine());

        // A reused process id: this process, but another start time.
        let reused = Holder {
            worker: "reused".into(),
            start_ticks: me.holder.start_ticks + 1,
            ..me.holder.clone()
        };
        let run = tmp.path().join("reused");
        std::fs::create_dir_all(&run).unwrap();
        write_claim(&run, &reused, Duration::ZERO);
        assert!(matches!(
            me.try_claim(&run).unwrap(),
            Attempt::Claimed { .. }
        ));
    }

    #[test]
    fn a_worker_whose_claim_was_taken_over_learns_it_at_its_next_heartbeat() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("r");
        let slow = Worker::current(Duration::from_secs(60));
        let (mut claim, _) = claimed(slow.try_claim(&run).unwrap());
        assert!(claim.beat(Duration::ZERO).unwrap());
        // Silent past its timeout: another worker takes it over.
        let f = File::options()
            .write(true)
            .open(run.join(CLAIM_FILE))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(120))
            .unwrap();
        let other = Worker::current(Duration::from_secs(60));
        let (theirs, took) = claimed(other.try_claim(&run).unwrap());
        assert_eq!(took.unwrap().worker, slow.name());
        assert!(!claim.beat(Duration::ZERO).unwrap());
        // Releasing a claim that is no longer its own leaves the other's alone.
        claim.release();
        assert!(theirs.is_mine());
    }

    #[test]
    fn an_unreadable_claim_is_held_until_its_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("r");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join(CLAIM_FILE), "{ half a cla").unwrap();
        let me = Worker::current(Duration::from_secs(60));
        assert!(matches!(me.try_claim(&run).unwrap(), Attempt::Held(None)));
        let f = File::options()
            .write(true)
            .open(run.join(CLAIM_FILE))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(61))
            .unwrap();
        assert!(matches!(
            me.try_claim(&run).unwrap(),
            Attempt::Claimed {
                took_over: None,
                ..
            }
        ));
    }
}
