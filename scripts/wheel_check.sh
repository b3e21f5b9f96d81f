#!/usr/bin/env bash
# Build the wheel, install it into a venv of its own (no editable install, no source tree on the path) and use it the
# way a new user would: afl --help, a quick data recipe, a short train and eval. Called by scripts/test.sh.
#
# Fast and offline-able: the wheel is built without build isolation (setuptools from the calling environment); the
# dependencies come from the wheels on this machine's disk (pip's find-links / file indexes) and PyPI, at the versions
# of constraints.txt. torch is the 2.13.0 CPU build by default (the tested lower bound; a few hundred MB instead of the
# CUDA build's 5 GB); AFL_WHEEL_TORCH=2.14.1 checks the constraints' own torch instead.
# The installed dependencies are kept in .cache/wheel-check/venv-KEY, KEY = a hash of the Python version, the wheel's
# Requires-Dist and the constraints: a rerun with the same declared dependencies only reinstalls the project's wheel
# (no network needed). A new Python, dependency or pin gets a new venv; AFL_WHEEL_FRESH=1 always starts from nothing.
#   PYTHON=python3.12 AFL_WHEEL_CONSTRAINTS=none AFL_WHEEL_FRESH=1 bash scripts/wheel_check.sh   # another Python
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
BUILD_PY=${BUILD_PYTHON:-python}                 # has setuptools and build: the project's .venv under scripts/test.sh
TORCH=${AFL_WHEEL_TORCH:-2.13.0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/afl-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
step() { echo "== wheel_check [$((SECONDS - t0)) s]: $*"; }

step "build the wheel"
rm -rf build                                     # stale build/lib files would end up in the wheel
"$BUILD_PY" -m build --wheel --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log"; exit 1; }
rm -rf build
wheel=$(ls "$WORK"/dist/audioflamingo_lab-*.whl)
"$BUILD_PY" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["audioflamingo_lab/cli.py", "audioflamingo_lab/configs/tiny-pretrain.yaml", "data_recipes/synthetic.py"]
missing = [n for n in need if n not in names]
if not any(n.endswith("/licenses/LICENSE") for n in names): missing.append("LICENSE")
if missing: sys.exit(f"FAIL: not in the wheel: {missing}")
PY

pip_args=(-q --disable-pip-version-check --no-compile)   # .pyc files are written on first import, only for what runs
if [ "${AFL_WHEEL_CONSTRAINTS:-constraints.txt}" != none ]; then
  grep -vE '^(torch|torchvision)==' "${AFL_WHEEL_CONSTRAINTS:-constraints.txt}" > "$WORK/constraints.txt"
  echo "torch==$TORCH" >> "$WORK/constraints.txt"
  pip_args+=(-c "$WORK/constraints.txt")
fi
key=$({ "$PY" -c 'import sys; print(sys.version)'; "$BUILD_PY" - "$wheel" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
print("\n".join(l for l in meta.splitlines() if l.startswith(("Requires-Dist", "Requires-Python"))))
PY
  cat "$WORK/constraints.txt" 2>/dev/null || true; } | sha256sum | cut -c1-16)
if [ -n "${AFL_WHEEL_FRESH:-}" ]; then VENV=$WORK/venv; else VENV=$ROOT/.cache/wheel-check/venv-$key; fi
if [ -x "$VENV/bin/afl" ] && [ -f "$VENV/.complete" ]; then
  step "reuse $VENV (same Python, declared dependencies and pins); reinstall the wheel"
  "$VENV/bin/python" -m pip install "${pip_args[@]}" --no-deps --force-reinstall "$wheel" >"$WORK/pip.log" 2>&1 \
    || { tail -30 "$WORK/pip.log"; exit 1; }
else
  step "new venv $VENV ($("$PY" --version)), install the wheel and its dependencies"
  [ -n "${AFL_WHEEL_FRESH:-}" ] || rm -rf "$ROOT"/.cache/wheel-check/venv-*
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install "${pip_args[@]}" "$wheel" >"$WORK/pip.log" 2>&1 \
    || { tail -30 "$WORK/pip.log"; exit 1; }
  touch "$VENV/.complete"
fi
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | grep -iE '^(torch|transformers|lightning|numpy)==' \
  | tr '\n' ' '
echo

cd "$WORK"                                       # nothing of the source tree is importable from here
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
python - <<'PY'
import audioflamingo_lab, data_recipes, sys
for m in (audioflamingo_lab, data_recipes):
    assert m.__file__.startswith(sys.prefix), f"{m.__name__} imported from {m.__file__}, not from the venv {sys.prefix}"
PY

step "afl --help"
afl --help | grep -q "usage: afl"
step "afl data build synthetic --quick"
afl data build synthetic --out data --quick >/dev/null 2>"$WORK/data.log" || { tail -30 "$WORK/data.log"; exit 1; }
python - <<'PY'
import json                                       # the captioning items only: a small, one-task set (train, val, test)
lines = [l for l in open("data/manifest.jsonl") if json.loads(l)["task"] == "captioning"]
open("data/captioning.jsonl", "w").writelines(lines)
PY
step "afl train (the packaged config, 4 steps, validation every 2)"
afl train --config tiny-pretrain --out run --data.train '{data/captioning.jsonl: 1.0}' --data.cache cache \
  --trainer.max_steps 4 --trainer.checkpoint_every_n_steps 2 --trainer.log_every_n_steps 1 \
  --trainer.enable_progress_bar false --trainer.accelerator cpu >"$WORK/train.log" 2>&1 \
  || { tail -30 "$WORK/train.log"; exit 1; }
for f in model.safetensors config.yaml loss.png gates.png; do
  [ -s "run/$f" ] || { echo "FAIL: run/$f missing"; exit 1; }
done
grep -q "val/loss" run/logs/version_0/metrics.csv || { echo "FAIL: no val/loss in run/logs/*/metrics.csv"; exit 1; }
step "afl eval"
afl eval --ckpt run/model.safetensors --manifest data/captioning.jsonl --shots 0,1 --select random \
  --max_new_tokens 2 --out eval --cache cache >"$WORK/eval.log" 2>&1 || { tail -30 "$WORK/eval.log"; exit 1; }
[ -s eval/report.json ] || { echo "FAIL: eval/report.json missing"; exit 1; }
step "ok: the wheel installs and runs ($ROOT)"
