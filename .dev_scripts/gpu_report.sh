#!/usr/bin/env bash
# Developer script: one prepared GPU check for a short-lived CUDA machine (the GPU rows of
# docs/speed.md and docs/latency.md), in the order that matters if time runs out. Each step gets
# at most its own limit and what is left of BUDGET seconds, so the script ends inside the lease.
#   1. tests/test_cuda.py (CUDA matches CPU, training steps, bf16/fp16 autocast)
#   2. a latency table of the paper's search space (configs/search/uninet_search_in1k_latency.py)
#      on this GPU: bf16 autocast, 800x1333, batch 2, forward, timed with CUDA events
#   3. the latency tool's validate on it: 30 sampled architectures (seed 0) and UniNet-B0..B3
#      measured whole, against the table and against FLOPs alone
#   4. UniNet-B3 vs Swin-T at 800x1333, batch 2, bf16 autocast (how detectors train), with
#      each speed option (plain, channels_last, with_cp, selective checkpointing)
#   5. the same in fp32, then torch.compile (bf16) with what time is left
# Swin-T is torchvision's (swin_t_tv) unless mmdet is importable there (then mmdet's too).
#
#   OUT=/path/to/results bash .dev_scripts/gpu_report.sh
#
# Only torch, torchvision and mmengine (+ addict, termcolor, yapf, platformdirs) are needed. A
# machine without mmengine can take them as wheels in ./.whl (pip download --no-deps ... for
# its Python), installed by this script into a temporary folder when WHEELS=.whl is set.
# A dry run of the script's logic on a CPU (small space and size, no CUDA):
#   DEVICE=cpu CONFIG=configs/search/uninet_search_synthetic.py SIZE=64x96 BATCH=1 DTYPE=fp32 \
#       NUM_ARCHS=3 BENCH_SIZE=64x96 OUT=/tmp/gpu_dry bash .dev_scripts/gpu_report.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-work_dirs/gpu_report}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-configs/search/uninet_search_in1k_latency.py}
SIZE=${SIZE:-800x1333}
BATCH=${BATCH:-2}
DTYPE=${DTYPE:-bf16}
NUM_ARCHS=${NUM_ARCHS:-30}
BENCH_SIZE=${BENCH_SIZE:-800x1333}
BUDGET=${BUDGET:-500}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$OUT/report.log") 2>&1
START=$SECONDS

step() {  # limit_seconds, name, command...: runs it for at most its limit and what is left
    local limit=$1 name=$2; shift 2
    local left=$((BUDGET - (SECONDS - START)))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 20 ]; then echo "=== $name: skipped, ${left} s of the budget left"; return; fi
    echo "=== $name (at most $limit s; $((SECONDS - START)) s into the run)"
    local begin=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" "$@"
    echo "=== $name: exit $? after $((SECONDS - begin)) s"
}

if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/uninet_site \
        "$WHEELS"/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/uninet_site" || exit 1
fi
nvidia-smi -L 2>/dev/null
"$PY" - <<'EOF'
import platform
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA DEVICE',
      '| python', platform.python_version(), '| cpu', platform.processor() or platform.machine())
EOF

step 150 test_cuda "$PY" -m pytest -q -p no:cacheprovider -n 0 -rs tests/test_cuda.py

table="$OUT/latency_${DEVICE}_${DTYPE}_${SIZE}_b${BATCH}.json"
step 240 latency_build "$PY" tools/analysis_tools/latency_table.py build "$CONFIG" \
    --device "$DEVICE" --dtype "$DTYPE" --input-size "$SIZE" --batch "$BATCH" --out "$table"
if [ -f "$table" ]; then
    step 150 latency_validate "$PY" tools/analysis_tools/latency_table.py validate "$CONFIG" \
        --table "$table" --num-archs "$NUM_ARCHS" --seed 0 \
        --out "$OUT/validate_${DEVICE}_${DTYPE}_${SIZE}_b${BATCH}.json"
fi

models="uninet_b3 swin_t_tv"
"$PY" -c 'import mmdet.models' 2>/dev/null && models="$models swin_t"
bench() {  # limit, name, extra args...
    local limit=$1 name=$2; shift 2
    step "$limit" "bench_$name" "$PY" tools/analysis_tools/benchmark_backbone.py \
        --device "$DEVICE" --models $models --sizes "$BENCH_SIZE" --batch 2 --repeats 10 \
        --warmup 3 --no-memory --json "$OUT/bench_$name.json" "$@"
}
amp=(); [ "$DEVICE" = cuda ] && amp=(--amp bf16)
bench 150 bf16 "${amp[@]}" --variants plain channels_last cp sac
bench 90 fp32 --variants plain channels_last
bench 200 bf16_compile "${amp[@]}" --variants compile
echo "=== done after $((SECONDS - START)) s"
