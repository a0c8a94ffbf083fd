#!/usr/bin/env bash
# Training on a Slurm cluster with srun, one task per GPU.
#
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options...]
#
# CPU partitions (no GPUs): GPUS_PER_NODE=0 asks for no GPU (no --gres) and runs TASKS
# processes (default: GPUS) with the gloo backend, TASKS_PER_NODE of them per node (default:
# Slurm's choice), e.g.
#   GPUS_PER_NODE=0 TASKS=2 CPUS_PER_TASK=1 bash tools/slurm_train.sh cpu job CONFIG WORK_DIR
#
# PYTHON selects the interpreter (default: python). tools/train.py reads the rank and world
# size from Slurm's environment (--launcher slurm); PORT sets the rendezvous port (default
# 29500). After a cancelled or failed job, the same command with --resume continues from the
# last complete checkpoint in WORK_DIR (docs/cluster.md).
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/launchers/srun.sh" train.py "$1" "$2" "$3" --work-dir="$4" "${@:5}"
