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
exec bash "$(dirname "$0")/launchers/srun.sh" test.py "$1" "$2" "$3" "$4" "${@:5}"
