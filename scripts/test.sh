#!/usr/bin/env bash
# The test command: setup, then notebooks/library agreement, stripped outputs, ruff, the wheel (scripts/wheel_check.sh),
# pytest. pytest's tests/test_docs.py executes every notebook once (what nbdev_test runs, plus the `#| slow` cells) and
# fails on any cell error, so nbdev_test is not run a second time here: run it alone for a quicker notebook check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false

echo "== notebooks and library agree"
before=$(git status --porcelain -- audioflamingo_lab)
nbdev_export
after=$(git status --porcelain -- audioflamingo_lab)
if [ "$before" != "$after" ] || ! git diff --quiet -- audioflamingo_lab; then
  echo "FAIL: nbdev_export changed audioflamingo_lab/: the notebooks and the library disagree"; git diff --stat -- audioflamingo_lab; exit 1
fi

echo "== notebooks carry no outputs"
python - <<'PY'
import json, pathlib, sys
bad = [str(p) for p in sorted(pathlib.Path("nbs").rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts
       and any(c.get("outputs") or c.get("execution_count") for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code")]
if bad: sys.exit("FAIL: notebooks with outputs committed (run nbdev_clean): " + " ".join(bad))
PY

echo "== ruff (format and lint, line length 120)"
ruff format --check nbs tests data_recipes benchmarks scripts
ruff check nbs tests data_recipes benchmarks scripts audioflamingo_lab

echo "== the wheel: built, installed in a venv of its own, used through afl"
bash scripts/wheel_check.sh

echo "== pytest"
python -m pytest -q -ra --durations=12 "$@"  # the slowest tests, for the time of the test command
