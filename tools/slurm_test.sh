#!/usr/bin/env bash
# Evaluation on a Slurm cluster with srun, one task per GPU.
#
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options...]
#
# CPU partitions (no GPUs): GPUS_PER_NODE=0 asks for no GPU (no --gres) and runs TASKS
# processes (default: GPUS) with the gloo backend, TASKS_PER_NODE of them per node (default:
# Slurm's choice).
#
# PYTHON selects the interpreter (default: python); PORT sets the rendezvous port (default
# 29500).
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
export MASTER_PORT=${PORT:-29500}

if [ "$GPUS_PER_NODE" = 0 ]; then
    # CPU partition: no GPU request; TASKS processes, TASKS_PER_NODE on each node.
    TASKS=${TASKS:-$GPUS}
    PLACEMENT=(--ntasks="$TASKS")
    if [ -n "${TASKS_PER_NODE:-}" ]; then
        PLACEMENT+=(--ntasks-per-node="$TASKS_PER_NODE")
    fi
else
    PLACEMENT=(--gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE")
fi

# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    "${PLACEMENT[@]}" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher slurm "${@:5}"
