"""Dataset builders: each writes audio files and a `manifest.jsonl` (train/val/test in the `split` field) into a folder.

    from data_recipes import build
    manifest = build("synthetic", "data/synthetic", quick=True, seed=0)

or `python -m data_recipes.NAME --out DIR [--quick] [--seed N] [--overwrite]`.
"""

from __future__ import annotations
import importlib

NAMES = ("synthetic", "instruments", "speech", "sound_effects", "byo", "dialogue", "many_classes", "spoken_languages")


def _builder(name):
    return lambda out, **kw: importlib.import_module(f"data_recipes.{name}").build(out, **kw)


RECIPES = {name: _builder(name) for name in NAMES}  # lazy: a recipe's Debian tools are only needed when it runs


def build(name: str, out, quick: bool = False, seed: int = 0, **kw):
    "Build recipe `name` into `out`; returns the manifest path."
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[name](out, quick=quick, seed=seed, **kw)
