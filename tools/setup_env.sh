#!/usr/bin/env bash
# Set up the project's own Python environment (default: .venv in the repository root).
#
#   bash tools/setup_env.sh                # create or update .venv, then exit
#   bash tools/setup_env.sh --with-slurm   # ... and install Slurm and munge from Debian's
#                                          # packages (root, apt-get), for tests/test_slurm.py
#
# What it installs, in order: the pinned torch/torchvision pair, mmengine, mmcv 2.1.0 with its
# compiled ops (built here from source, see below), mmdet 3.3, mmsegmentation 1.2,
# mmpretrain 1.2, Ray Tune (the search's optional backend, tested in CI), the test and ONNX
# export tools and this package in editable mode.
#
# mmcv 2.1.0 is published only as a source archive, and its ops must be compiled against the
# exact torch they will run with. The built wheel is cached under
#   $UNINET_MM_CACHE (default ~/.cache/uninet_mm)/mmcv/<mmcv>-torch<torch>-<python>-<ops>/
# so a second run (or a fresh clone on the same machine) installs it in seconds, and a different
# torch gets a build of its own instead of a wheel that would load and then fail.
#
# Environment variables:
#   UNINET_VENV      where to create the environment (default: <repo>/.venv)
#   UNINET_MM_CACHE  where built mmcv wheels are kept (default: ~/.cache/uninet_mm)
#   PYTHON           interpreter used to create the environment (default: python3)
#   MAX_JOBS         parallel compile jobs for mmcv (default: number of cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNINET_VENV:-$ROOT/.venv}"
CACHE="${UNINET_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/uninet_mm}"
MMCV_VERSION=2.1.0

log() { printf '[setup_env] %s\n' "$*" >&2; }

WITH_SLURM=0
for arg in "$@"; do
    case "$arg" in
        --with-slurm) WITH_SLURM=1 ;;
        *) log "unknown option $arg (known: --with-slurm)"; exit 2 ;;
    esac
done
if [ "$WITH_SLURM" = 1 ]; then
    # slurmctld, slurmd, munge: the one-node cluster of tools/slurm/local_cluster.sh.
    bash "$ROOT/tools/slurm/local_cluster.sh" install
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment at $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip warns about every package missing from the machine's local file index; drop that noise.
quiet_pip() {
    "$PY" -m pip --quiet --disable-pip-version-check "$@" 2> >(grep -v 'is ignored: it is neither' >&2)
}
# Installs go through uv (from PyPI) when it installs: it resolves like pip, but unpacks in
# parallel and links from its cache, so torch's 5.5 GB take about 1 min the first time and
# seconds after that, where pip takes over 2 min every time. pip's own settings (find-links,
# index URLs, constraints from pip.conf or PIP_* variables) are handed on, so both see the same
# packages. UNINET_INSTALLER=pip uses pip throughout.
pip_setting() {  # the value of one of pip's list settings, environment before config files
    "$PY" -m pip config list 2>/dev/null | awk -F= -v key="$1" '
        { name = $1; sub(/^[^.]*\./, "", name) }
        name == key { value = substr($0, length($1) + 2); gsub(/^'"'"'|'"'"'$/, "", value);
                      if ($1 ~ /^:env:/) env = value; else if (conf == "") conf = value }
        END { print (env != "" ? env : conf) }'
}
UV_ARGS=()
if [ "${UNINET_INSTALLER:-uv}" = uv ] && quiet_pip install 'uv>=0.5' 2>/dev/null; then
    for link in $(pip_setting find-links); do UV_ARGS+=(--find-links "$link"); done
    for url in $(pip_setting index-url); do UV_ARGS+=(--index-url "$url"); done
    for url in $(pip_setting extra-index-url); do UV_ARGS+=(--extra-index-url "$url"); done
    for file in $(pip_setting constraint); do UV_ARGS+=(--constraint "$file"); done
    # pip takes the best version over all indexes; uv's default stops at the first that has it.
    UV_ARGS+=(--index-strategy unsafe-best-match)
    pip_install() { "$VENV/bin/uv" pip install --quiet --python "$PY" "${UV_ARGS[@]}" "$@"; }
    pip_reinstall() { pip_install --reinstall "$@"; }
    log "installing with uv ($("$VENV/bin/uv" --version))"
else
    pip_install() { quiet_pip install "$@"; }
    pip_reinstall() { quiet_pip install --force-reinstall "$@"; }
    quiet_pip install --upgrade pip >/dev/null 2>&1 || true
fi

log "installing torch, build tools and mmengine"
pip_install -r "$ROOT/requirements/torch.txt"
pip_install -r "$ROOT/requirements/build.txt"
pip_install -r "$ROOT/requirements/runtime.txt"

# Key that identifies which torch an mmcv build belongs to.
BUILD_KEY="$("$PY" - "$MMCV_VERSION" <<'EOF'
import platform, sys
import torch
import os
cuda = 'cuda' if torch.version.cuda and (torch.cuda.is_available() or os.environ.get('FORCE_CUDA') == '1') else 'cpu'
print(f"{sys.argv[1]}-torch{torch.__version__}-cp{sys.version_info.major}{sys.version_info.minor}"
      f"-{platform.machine()}-{cuda}ops")
EOF
)"
MARKER="$VENV/.mmcv-build-key"

mmcv_ops_work() {
    "$PY" - <<'EOF' >/dev/null 2>&1
import torch
from mmcv.ops import nms, roi_align  # fails when ops are missing or built for another torch
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
EOF
}

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$BUILD_KEY" ] && mmcv_ops_work; then
    log "mmcv $MMCV_VERSION with ops already installed for this torch ($BUILD_KEY)"
else
    WHEEL_DIR="$CACHE/mmcv/$BUILD_KEY"
    WHEEL="$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -n 1 || true)"
    if [ -z "$WHEEL" ]; then
        log "building mmcv $MMCV_VERSION with ops for $BUILD_KEY (about 12 minutes on 2 cores)"
        WORK="$(mktemp -d)"
        trap 'rm -rf "$WORK"' EXIT
        # --no-build-isolation: mmcv's setup.py needs pkg_resources from the pinned setuptools.
        quiet_pip download --no-deps --no-binary :all: --no-build-isolation \
            "mmcv==$MMCV_VERSION" -d "$WORK"
        tar -xzf "$WORK"/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK"
        SRC="$WORK/mmcv-$MMCV_VERSION"
        # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
        sed -i 's/c++17/c++20/g' "$SRC/setup.py"
        (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel --no-build-isolation --no-deps --no-cache-dir -w "$WORK/dist" . >"$WORK/build.log" 2>&1) \
            || { tail -n 60 "$WORK/build.log" >&2; log "mmcv build failed; full log above"; exit 1; }
        mkdir -p "$WHEEL_DIR"
        cp "$WORK"/dist/mmcv-*.whl "$WHEEL_DIR"/
        WHEEL="$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n 1)"
        log "cached $WHEEL"
    else
        log "installing cached mmcv build $WHEEL"
    fi
    pip_reinstall --no-deps "$WHEEL"
    # mmcv's own runtime dependencies (opencv, addict, ...), without touching mmcv itself.
    pip_install addict packaging Pillow pyyaml yapf opencv-python
    mmcv_ops_work || { log "mmcv ops do not load after install"; exit 1; }
    echo "$BUILD_KEY" >"$MARKER"
fi

log "installing mmdet, mmsegmentation, mmpretrain, Ray Tune (search backend), test and export tools"
pip_install -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/tests.txt" \
    -r "$ROOT/requirements/search.txt" -r "$ROOT/requirements/deploy.txt"
log "installing uninet_mm (editable)"
pip_install --no-build-isolation --no-deps -e "$ROOT"
# Bytecode for every installed module, written once here. uv does not write it (pip does), and
# where PYTHONDONTWRITEBYTECODE is set, as in many containers, Python never caches it either:
# every process would compile torch, mmengine and mmdet from source again (import mmdet.models
# 18 s instead of 7 s on a 2-core EPYC). Files already compiled are skipped, and so are the
# packages' own test folders (a sixth of the files), which nothing imports.
log "compiling bytecode"
"$PY" -m compileall -q -j 0 -x '/tests?/' "$ROOT/uninet_mm" \
    "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
"$PY" -c "import uninet_mm, mmdet, mmseg, mmpretrain, mmcv.ops; print('[setup_env] ready:', 'torch', __import__('torch').__version__, 'mmcv', mmcv.__version__ if (mmcv := __import__('mmcv')) else '', 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'mmpretrain', mmpretrain.__version__)" >&2
