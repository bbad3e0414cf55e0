#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the cluster tests (issue 19): installs
# Debian's slurmctld, slurmd, slurm-client and munge when missing, writes a slurm.conf for
# localhost (no cgroups, no systemd, no accounting database), and starts munged, slurmctld
# and slurmd directly. Needs root. Idempotent: a cluster already answering is left running.
#
#   scripts/slurm-local.sh          install if needed, configure, start
#   scripts/slurm-local.sh stop     stop the daemons this script started
#
# Prints `slurm-local: ready` once `sinfo` shows the node idle, or says why not and exits 1.
set -euo pipefail

conf=/etc/slurm/slurm.conf
host=$(hostname -s)

if [[ "${1:-}" == stop ]]; then
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    exit 0
fi

if [[ $(id -u) != 0 ]]; then
    echo "slurm-local: needs root (it installs packages and starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-local: installing slurmctld slurmd slurm-client munge from Debian" >&2
    install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            slurmctld slurmd slurm-client munge >>/tmp/slurm-local-apt.log 2>&1
    }
    install || { apt-get update >>/tmp/slurm-local-apt.log 2>&1 && install; } || {
        echo "slurm-local: apt-get install failed; see /tmp/slurm-local-apt.log" >&2
        exit 1
    }
fi

if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "slurm-local: ready (already running)"
    exit 0
fi

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat >"$conf" <<CONF
# Written by scalelab's scripts/slurm-local.sh: one node, this machine.
ClusterName=scalelab-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MaxArraySize=1001
SchedulerParameters=sched_interval=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "slurm-local: ready ($host, $cpus CPUs)"
        exit 0
    fi
    sleep 1
done
echo "slurm-local: the node did not come up; sinfo says: $(sinfo 2>&1 | tr '\n' ' ')" >&2
echo "see /var/log/slurm/slurmctld.log and /var/log/slurm/slurmd.log" >&2
exit 1
