#!/usr/bin/env bash
# Runs one of tools/train.py, tools/test.py under Slurm's srun with --launcher slurm; shared by
# tools/slurm_train.sh and tools/slurm_test.sh (see their headers for the settings).
#
#   bash tools/launchers/srun.sh TOOL PARTITION JOB_NAME [tool arguments...]
set -euo pipefail

TOOL=$1
PARTITION=$2
JOB_NAME=$3
shift 3
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
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    "${PLACEMENT[@]}" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$(dirname "$0")/../$TOOL" "$@" --launcher slurm
