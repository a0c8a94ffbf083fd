#!/usr/bin/env bash
# Developer script: one prepared GPU check for a short-lived CUDA machine (the GPU rows of the
# Speed docs), in the order that matters if time runs out.
#   1. tests/test_cuda.py (CUDA matches CPU, training steps, bf16 autocast)
#   2. UniNet-B3 vs Swin-T at 800x1333, batch 2, bf16 autocast (how detectors train)
#   3. the same in fp32
#   4. torch.compile rows (bf16), last because compiling takes minutes
# Swin-T is torchvision's (swin_t_tv) unless mmdet is importable there (then mmdet's too).
#
#   OUT=/path/to/results bash .dev_scripts/gpu_report.sh
#
# Only torch, torchvision and mmengine (+ addict, termcolor, yapf, platformdirs) are needed. A
# machine without mmengine can take them as wheels in ./.whl (pip download --no-deps ... for
# its Python), installed by this script into a temporary folder when WHEELS=.whl is set.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-work_dirs/gpu_report}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/uninet_site \
        "$WHEELS"/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/uninet_site" || exit 1
fi
"$PY" - <<'EOF' | tee "$OUT/environment.txt"
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA DEVICE')
EOF
"$PY" -m pytest -q -p no:cacheprovider -x tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"

models="uninet_b3 swin_t_tv"
"$PY" -c 'import mmdet.models' 2>/dev/null && models="$models swin_t"
bench() {  # name, extra args...
    local name=$1; shift
    "$PY" tools/analysis_tools/benchmark_backbone.py --device cuda --models $models \
        --sizes 800x1333 --batch 2 --repeats 10 --warmup 3 --json "$OUT/$name.json" "$@" \
        2>&1 | tee "$OUT/$name.log"
}
bench bf16 --amp bf16 --variants plain channels_last cp sac
bench fp32 --variants plain channels_last cp sac
bench bf16_compile --amp bf16 --variants compile
