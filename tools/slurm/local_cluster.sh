#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1, for the tests and for trying tools/slurm_*.sh locally.
#
#   bash tools/slurm/local_cluster.sh install      # apt-get install slurmctld slurmd munge (root)
#   bash tools/slurm/local_cluster.sh check        # exit 0 if the programs are there, else say which are missing
#   bash tools/slurm/local_cluster.sh up DIR       # start munged, slurmctld, slurmd; config in DIR
#   export SLURM_CONF=DIR/slurm.conf               # then srun/sbatch/squeue/scancel talk to it
#   bash tools/slurm/local_cluster.sh down DIR     # stop the three daemons started by `up DIR`
#
# Everything `up` writes (slurm.conf, munge key and socket, state, spool, logs, pid files) stays
# in DIR: nothing under /etc is touched, and a Slurm already running on the machine is left
# alone. The node is this machine (NodeName=localhost, NodeAddr=127.0.0.1) with the CPUs and
# memory `slurmd -C` reports; one partition, PARTITION (default: cpu), with no GPUs (GRES), so
# the jobs are CPU jobs: GPUS_PER_NODE=0 bash tools/slurm_train.sh ...
#
# Settings for running in a container without systemd or cgroups: every daemon runs as root
# (SlurmUser=SlurmdUser=root, so `up` needs root), processes are tracked by their parent pid
# (proctrack/linuxproc), no task binding (task/none), no accounting.
#
# Environment: SLURMCTLD_PORT (default 6817), SLURMD_PORT (default 6818), PARTITION (cpu).
set -euo pipefail

PROGRAMS=(munged slurmctld slurmd srun sinfo squeue scancel scontrol)
PACKAGES=(munge slurmctld slurmd slurm-client)

log() { printf '[local_cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

missing_programs() {
    local missing=()
    for prog in "${PROGRAMS[@]}"; do
        command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
    done
    echo "${missing[*]:-}"
}

cmd_install() {
    [ "$(id -u)" = 0 ] || die "install needs root (apt-get install ${PACKAGES[*]})"
    command -v apt-get >/dev/null 2>&1 || die "install needs apt-get (Debian/Ubuntu); install ${PACKAGES[*]} with this system's package manager"
    if [ -z "$(missing_programs)" ]; then
        log "Slurm and munge are already installed"
        return
    fi
    log "installing ${PACKAGES[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

cmd_check() {
    local missing
    missing="$(missing_programs)"
    if [ -n "$missing" ]; then
        echo "missing programs: $missing (Debian packages: ${PACKAGES[*]}; install with: sudo bash tools/slurm/local_cluster.sh install)"
        exit 1
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "not root: the local cluster runs slurmd and slurmctld as root (SlurmdUser=root)"
        exit 1
    fi
}

# The node's hardware line without its name, e.g. "CPUs=2 Boards=1 ... RealMemory=24105".
node_hardware() {
    slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //'
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq "$((limit * 5))"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    return 1
}

node_idle() { [ "$(sinfo -h -N -o %t 2>/dev/null | head -n 1)" = idle ]; }

cmd_up() {
    local dir=$1
    local missing
    missing="$(missing_programs)"
    [ -z "$missing" ] || die "missing programs: $missing (install the Debian packages ${PACKAGES[*]}: sudo bash $0 install)"
    [ "$(id -u)" = 0 ] || die "up needs root: slurmd and slurmctld run as root here (SlurmdUser=root)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    [ ! -e "$dir/run/slurmctld.pid" ] || die "$dir already holds a running cluster (down it first)"
    # Whatever started is stopped again if a later step fails.
    UP_DONE=0
    trap '[ "$UP_DONE" = 1 ] || cmd_down "'"$dir"'" >/dev/null 2>&1 || true' EXIT
    mkdir -p "$dir/munge" "$dir/run" "$dir/log" "$dir/state" "$dir/spool"
    chmod 700 "$dir/munge" "$dir/log"
    chmod 755 "$dir" "$dir/run"  # munged wants its socket's folder searchable by everyone

    # munge: a fresh key for this cluster, its own socket.
    if [ ! -f "$dir/munge/munge.key" ]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$dir/munge/munge.key"
        else
            dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
        fi
        chmod 400 "$dir/munge/munge.key"
    fi
    munged --key-file="$dir/munge/munge.key" --socket="$dir/run/munge.sock" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed" \
        || die "munged did not start; see $dir/log/munged.log"

    cat >"$dir/slurm.conf" <<EOF
# Written by tools/slurm/local_cluster.sh: a one-node cluster on 127.0.0.1.
ClusterName=uninetlocal
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# scancel: SIGTERM, then SIGKILL after KillWait seconds.
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 $(node_hardware) State=UNKNOWN
PartitionName=${PARTITION:-cpu} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" || die "slurmctld did not start; see $dir/log/slurmctld.log"
    slurmd -f "$SLURM_CONF" -N localhost || die "slurmd did not start; see $dir/log/slurmd.log"
    if ! wait_for 30 'node idle' node_idle; then
        sinfo -N -l >&2 || true
        tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
        die "the node did not become idle within 30 s (logs above)"
    fi
    UP_DONE=1
    log "up: export SLURM_CONF=$SLURM_CONF"
}

stop_pidfile() {  # stop_pidfile FILE NAME
    local file=$1 name=$2 pid
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait_for 15 "$name exit" bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

cmd_down() {
    local dir=$1
    [ -d "$dir" ] || die "no cluster folder $dir"
    dir="$(cd "$dir" && pwd)"
    if [ -f "$dir/run/slurmctld.pid" ] && [ -f "$dir/slurm.conf" ]; then
        # Jobs still running on this cluster (and only this one) end first.
        export SLURM_CONF="$dir/slurm.conf"
        scancel --full --user="$(id -un)" 2>/dev/null || true
        wait_for 20 'jobs gone' bash -c '[ -z "$(squeue -h -o %i)" ]' || log "jobs still listed after 20 s"
    fi
    stop_pidfile "$dir/run/slurmd.pid" slurmd
    stop_pidfile "$dir/run/slurmctld.pid" slurmctld
    stop_pidfile "$dir/run/munged.pid" munged
    log "down: $dir"
}

case "${1:-}" in
    install) cmd_install ;;
    check) cmd_check ;;
    up) [ $# -eq 2 ] || die "usage: $0 up DIR"; cmd_up "$2" ;;
    down) [ $# -eq 2 ] || die "usage: $0 down DIR"; cmd_down "$2" ;;
    *) echo "usage: $0 install | check | up DIR | down DIR" >&2; exit 2 ;;
esac
