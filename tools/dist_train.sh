#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU.
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py options...]
#
# Multi-node: run on every node with NNODES, NODE_RANK (0..NNODES-1), MASTER_ADDR (the address
# of node 0) and PORT set, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
# PYTHON selects the interpreter (default: python). Without GPUs, the processes run on the
# CPU with the gloo backend (tools/train.py switches nccl to gloo).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py options...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/launchers/torchrun.sh" train.py "$2" "$1" "${@:3}"
