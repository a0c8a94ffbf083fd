#!/usr/bin/env bash
# Distributed evaluation with torchrun, one process per GPU.
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options...]
#
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in dist_train.sh.
# PYTHON selects the interpreter (default: python).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py options...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/launchers/torchrun.sh" test.py "$3" "$1" "$2" "${@:4}"
