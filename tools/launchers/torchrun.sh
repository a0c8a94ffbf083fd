#!/usr/bin/env bash
# Runs one of tools/train.py, tools/test.py under torchrun with --launcher pytorch; shared by
# tools/dist_train.sh and tools/dist_test.sh (see their headers for the settings).
#
#   bash tools/launchers/torchrun.sh TOOL GPUS [tool arguments...]
set -euo pipefail

TOOL=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/../$TOOL" \
    "$@" --launcher pytorch
