#!/usr/bin/env bash
# A one-node, CPU-only SLURM cluster on this Debian/Ubuntu machine, from the distribution's packages
# (slurm-wlm, munge), so that tests/test_slurm_cluster.py can send the pipeline through the real
# daemons (munged, slurmctld, slurmd) and the real sbatch, not a dry run.
#
#   scripts/slurm_cluster.sh up       # install if needed, write the config, start the daemons (idempotent)
#   scripts/slurm_cluster.sh status   # exit 0 when the cluster answers and its node takes jobs
#   scripts/slurm_cluster.sh down     # stop the daemons this script started (idempotent)
#
# The cluster: one node, the machine itself, with the CPUs and memory `slurmd -C` reports; partitions
# `cpu` (default) and `gpu`, the names workflow/profiles/slurm uses, both on that node; a counted GPU
# resource (GresTypes=gpu, `gres.conf` naming stand-in device files, see fake_gpus: jobs asking for
# --gpus=1 are scheduled and allocated gres/gpu=1, no GPU is used); no accounting database, as on many
# small clusters (sacct does not work), and the job completion log (JobCompType=jobcomp/filetxt) as the
# cluster's own record of every job. Paths (config, state, spool, log, pid files) are the packages' own,
# read from their unit files and file lists. Needs root (or sudo) and apt-get.
#
# Settings (environment): SLURM_CLUSTER_GPUS  the node's GPU count (default: its CPU count, so GPUs never
#                                              limit how many jobs run)
#                         SLURM_CLUSTER_MIN_JOB_AGE  seconds a finished job stays in squeue/scontrol (300)
set -euo pipefail

MARKER="# written by K-1 scripts/slurm_cluster.sh"

die() { echo "slurm_cluster.sh: $*" >&2; exit 2; }
say() { echo "slurm_cluster.sh: $*"; }

if [[ $# -ne 1 || ! "$1" =~ ^(up|down|status)$ ]]; then
    die "usage: scripts/slurm_cluster.sh up|down|status"
fi
ACTION=$1
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die "needs root (or sudo) to install packages and start daemons"
    exec sudo --preserve-env=SLURM_CLUSTER_GPUS,SLURM_CLUSTER_MIN_JOB_AGE "$0" "$@"
fi

# ------------------------------------------------------------------ packages
install_packages() {
    local missing=0 tool
    for tool in munged slurmctld slurmd sbatch sinfo; do
        command -v "$tool" >/dev/null || missing=1
    done
    [[ $missing == 0 ]] && return
    command -v apt-get >/dev/null || die "no apt-get: this script sets up SLURM on Debian/Ubuntu only"
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # a fresh machine has no package lists; an old list may name versions the mirror no longer has
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
    fi
}

# ------------------------------------------------------------------ the packages' paths
unit_value() {  # unit_value NAME KEY: KEY= of the package's systemd unit NAME.service (empty if none)
    local unit
    for unit in /lib/systemd/system/$1.service /usr/lib/systemd/system/$1.service; do
        if [[ -f $unit ]]; then
            sed -n "s/^$2=//p" "$unit" | head -n 1
            return
        fi
    done
}

package_dir() {  # package_dir PACKAGE REGEX: the first directory of PACKAGE's file list matching REGEX
    dpkg -L "$1" 2>/dev/null | grep -m 1 -E "$2" || true
}

find_paths() {
    CONF=$(unit_value slurmctld ConditionPathExists)
    if [[ -z $CONF ]]; then
        local dir
        dir=$(package_dir slurm-client '^/etc/slurm[^/]*$')
        [[ -n $dir ]] || die "cannot tell where slurm.conf goes (no slurmctld unit, no /etc/slurm* in slurm-client)"
        CONF=$dir/slurm.conf
    fi
    CONF_DIR=$(dirname "$CONF")
    STATE=$(package_dir slurmctld '^/var/(lib|spool)/slurm[^/]*/slurmctld$')
    SPOOL=$(package_dir slurmd '^/var/(lib|spool)/slurm[^/]*/slurmd$')
    LOGDIR=$(package_dir slurmctld '^/var/log/slurm[^/]*$')
    [[ -n $STATE && -n $SPOOL && -n $LOGDIR ]] || die "cannot find the packages' state/spool/log directories (dpkg -L slurmctld slurmd)"
    CTLD_PID=$(unit_value slurmctld PIDFile); CTLD_PID=${CTLD_PID:-/run/slurmctld.pid}
    SLURMD_PID=$(unit_value slurmd PIDFile); SLURMD_PID=${SLURMD_PID:-/run/slurmd.pid}
    MUNGE_PID=$(unit_value munge PIDFile); MUNGE_PID=${MUNGE_PID:-/run/munge/munged.pid}
    SLURM_USER=$(stat -c %U "$STATE")
    STARTED=/run/k1-slurm-cluster  # which daemons this script started (down stops only those)
    GPU_DIR=$STARTED/gpus
}

# ------------------------------------------------------------------ processes
running() {  # running PIDFILE: the daemon named in PIDFILE is alive
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop() {  # stop NAME PIDFILE: SIGTERM to the pid in PIDFILE, wait for it to exit
    local pid i
    running "$2" || { rm -f "$STARTED/$1" "$2"; return; }  # not running: a pid file left is stale
    pid=$(cat "$2")
    say "stopping $1 (pid $pid)"
    kill -TERM "$pid"
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "$1 (pid $pid) did not stop within 10 s"
    # slurmctld leaves its pid file behind; the package's removal script takes it for a live controller
    rm -f "$STARTED/$1" "$2"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: poll COMMAND until it succeeds
    local what=$1 seconds=$2 i
    shift 2
    for i in $(seq $((seconds * 4))); do
        "$@" >/dev/null 2>&1 && return
        sleep 0.25
    done
    die "$what: not ready after $seconds s"
}

# ------------------------------------------------------------------ configuration
node_line() {  # this machine as a NodeName line: slurmd -C's CPUs, sockets, cores, threads, memory
    local hw
    hw=$(slurmd -C | head -n 1)
    [[ $hw == NodeName=* ]] || die "slurmd -C did not describe this machine: $hw"
    echo "$hw"
}

write_config() {  # writes slurm.conf and gres.conf; sets CHANGED=1 when either differs from before
    local node hw cpus memory gpus tmp
    node=$(hostname -s)
    hw=$(node_line)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [[ -n $cpus && -n $memory ]] || die "slurmd -C gave no CPUs/RealMemory: $hw"
    gpus=${SLURM_CLUSTER_GPUS:-$cpus}
    [[ $gpus =~ ^[1-9][0-9]*$ ]] || die "SLURM_CLUSTER_GPUS=$gpus: give a positive whole number"
    if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script: not touching a cluster it did not set up"
    fi
    mkdir -p "$CONF_DIR"
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
$MARKER: a one-node test cluster (edit the script, not this file)
ClusterName=k1test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=$SLURM_USER
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# no accounting database (sacct does not work, as on clusters without one); the job completion log
# is the cluster's record of every job (id, name, partition, time limit, state, TRES)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log
MinJobAge=${SLURM_CLUSTER_MIN_JOB_AGE:-300}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((memory / cpus))
ReturnToService=2
GresTypes=gpu
${hw/NodeName=$node/NodeName=$node NodeAddr=127.0.0.1} Gres=gpu:$gpus State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
EOF
    CHANGED=0
    cmp -s "$tmp" "$CONF" || { install -m 0644 "$tmp" "$CONF"; CHANGED=1; }
    fake_gpus "$gpus"
    printf '%s\nNodeName=%s Name=gpu File=%s/gpu[0-%s]\n' "$MARKER: counted GPUs, null devices" "$node" "$GPU_DIR" \
        "$((gpus - 1))" >"$tmp"
    cmp -s "$tmp" "$CONF_DIR/gres.conf" || { install -m 0644 "$tmp" "$CONF_DIR/gres.conf"; CHANGED=1; }
    rm -f "$tmp"
    NODE=$node
}

fake_gpus() {  # fake_gpus N: N character devices with /dev/null's numbers, one per counted GPU
    # Slurm 22.05 drops a GPU without a device file from the node ("Removing file-less GPU"), and
    # checks that each File is a character device; nothing opens them (no device constraints).
    local major minor i
    major=$(printf '%d' "0x$(stat -c %t /dev/null)")
    minor=$(printf '%d' "0x$(stat -c %T /dev/null)")
    mkdir -p "$GPU_DIR"
    for i in $(seq 0 $(($1 - 1))); do
        [[ -c $GPU_DIR/gpu$i ]] || mknod -m 0666 "$GPU_DIR/gpu$i" c "$major" "$minor"
    done
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return  # already running (this script's, or the system's)
    fi
    local key
    key=/etc/munge/munge.key
    if [[ ! -s $key ]]; then
        say "creating $key"
        mungekey --create --keyfile "$key" 2>/dev/null || dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
        chown munge:munge "$key"
        chmod 0400 "$key"
    fi
    install -d -o munge -g munge -m 0755 "$(dirname "$MUNGE_PID")"
    say "starting munged"
    runuser -u munge -- "$(command -v munged)"
    touch "$STARTED/munged"
    wait_for munged 20 bash -c 'munge -n </dev/null | unmunge'
}

start_slurm() {
    local name=$1 pidfile=$2
    if running "$pidfile"; then
        [[ $CHANGED == 0 ]] && return
        stop "$name" "$pidfile"  # new configuration: restart
    fi
    say "starting $name"
    "$(command -v "$name")"   # daemonizes; slurmctld drops to SlurmUser itself
    touch "$STARTED/$name"
}

node_takes_jobs() {
    local state
    state=$(sinfo -h -N -n "$NODE" -o %t | head -n 1)
    [[ $state =~ ^(idle|mix|alloc)$ ]]
}

up() {
    install_packages
    find_paths
    mkdir -p "$STARTED"
    write_config
    install -d -o "$SLURM_USER" -g "$SLURM_USER" -m 0755 "$STATE" "$LOGDIR"
    install -d -m 0755 "$SPOOL"
    start_munge
    start_slurm slurmctld "$CTLD_PID"
    wait_for slurmctld 30 scontrol ping
    start_slurm slurmd "$SLURMD_PID"
    if ! node_takes_jobs; then  # a node left down/drained by an earlier run comes back
        sleep 2
        node_takes_jobs || scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
    fi
    wait_for "node $NODE" 60 node_takes_jobs
    # the cluster runs a job end to end (munge credentials, slurmd, the job completion log)
    timeout 60 srun --quiet --partition=cpu --ntasks=1 --time=1 true || die "a test job (srun true) failed: see $LOGDIR"
    say "up: $(sinfo --version), $(munged --version 2>&1 | awk '{print $1}' | head -n 1)"
    sinfo -h -N -o '  node %N: %c CPUs, %m MB, %G, partitions %P, %t'
    echo "  config $CONF, job completion log $LOGDIR/jobcomp.log"
}

down() {
    command -v slurmctld >/dev/null || { say "SLURM is not installed: nothing to stop"; return; }
    find_paths
    [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF" && die "$CONF was not written by this script: not stopping that cluster"
    stop slurmd "$SLURMD_PID"
    stop slurmctld "$CTLD_PID"
    if [[ -e $STARTED/munged ]]; then
        stop munged "$MUNGE_PID"
    fi
    say "down"
}

status() {
    command -v scontrol >/dev/null || { say "SLURM is not installed"; exit 1; }
    scontrol ping >/dev/null 2>&1 || { say "slurmctld does not answer"; exit 1; }
    NODE=$(hostname -s)
    node_takes_jobs || { say "node $NODE does not take jobs: $(sinfo -h -N -o '%N %t %E')"; exit 1; }
    sinfo -o '%P %a %l %D %t %N'
}

"$ACTION"
