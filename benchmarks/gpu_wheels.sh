#!/usr/bin/env bash
# Fetch what benchmarks/gpu_check.sh needs on a GPU machine that has torch but not ray, optuna or
# torch-pruning (and cannot reach a package index): their wheels, into .whl/ (ignored by git).
# Send that folder along with the tree (the device tool: carry [".whl"]); gpu_check.sh installs
# from it with --no-index.
#
#   benchmarks/gpu_wheels.sh [--python-version 3.12]
#
# --python-version: the GPU machine's Python (its python3 is 3.12 per the device tool's notes;
#   this project's CPU machines run 3.11). Wheels are linux x86-64 (manylinux).
#
# Size: the device tool carries at most 64 MiB in all (the tree included). Ray's wheel is 76 MiB,
# 31 MiB of it the Java jar and 2.7 MiB the dashboard's web client, neither of which a Python
# Tune run on a headless machine loads; they are dropped from the wheel (and from its RECORD).
set -euo pipefail
cd "$(dirname "$0")/.."

PYVER=3.12
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) PYVER="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python3}"

# ray, optuna, torch-pruning as pinned in requirements.txt; their dependencies the GPU image lacks,
# at the versions this project is tested with.
PKGS=(
  ray==2.60.0 optuna==5.0.0 torch-pruning==1.6.1
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
  alembic==1.20.1 Mako==1.4.3 SQLAlchemy==2.1.9 colorlog==6.12.0
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing_extensions==4.16.0 tensorboardX==2.6.5
)
mkdir -p .whl
rm -f .whl/*.whl  # one version of each: two of one package stop the whole install there
"$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${PKGS[@]}"

"$PY" - <<'EOF'
"""Drop ray's Java jar and dashboard web client from its wheel (and their RECORD lines)."""
import glob, os, zipfile
DROP = ("ray/jars/", "ray/dashboard/client/build/")
for path in glob.glob(".whl/ray-*.whl"):
    with zipfile.ZipFile(path) as src:
        if not any(n.startswith(DROP) for n in src.namelist()):
            continue
        tmp = path + ".tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename.startswith(DROP):
                    continue
                data = src.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    data = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(tuple(d.encode() for d in DROP)))
                dst.writestr(info, data)
    os.replace(tmp, path)
    print(f"trimmed {path}: {os.path.getsize(path) / 2**20:.1f} MiB")
EOF

total=$(du -sm .whl | cut -f1)
echo "wheels in .whl/: ${total} MiB"
if [ "$total" -gt 56 ]; then
  echo "warning: .whl/ is ${total} MiB; with the tree it may pass the device tool's 64 MiB carry limit" >&2
fi
