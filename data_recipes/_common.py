"""Helpers shared by the recipes: the output folder, deterministic seeds, WAV writing, splits, Debian tools, the CLI."""

from __future__ import annotations
import argparse, hashlib, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000  # what every encoder in the lab resamples to anyway
MANIFEST = "manifest.jsonl"
OUR_FILES = (MANIFEST, "audio", "README.md")  # all a recipe writes; overwrite=True removes only these


def prepare_out(out, overwrite: bool = False) -> Path:
    "Create `out`; refuse a non-empty folder unless `overwrite`, which removes only what a recipe writes there."
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out}: folder is not empty; choose an empty folder or pass overwrite=True (--overwrite), "
                f"which deletes {', '.join(OUR_FILES)} there"
            )
        for name in OUR_FILES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    (out / "audio").mkdir(parents=True, exist_ok=True)
    return out


def rng_for(*parts) -> np.random.Generator:
    "A generator seeded from names (seed, class, index): the same clip whatever else is built."
    return np.random.default_rng(
        int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little")
    )


def write_wav(path, wave, sample_rate: int = SAMPLE_RATE) -> Path:
    "Mono 16-bit PCM WAV (fixed subtype, so the same samples give the same bytes); peaks above 1 are scaled down."
    wave = np.asarray(wave, np.float64)
    if (peak := np.abs(wave).max(initial=0.0)) > 0.99:
        wave = wave * (0.99 / peak)
    sf.write(str(path), wave.astype(np.float32), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


def split_counts(n: int, fractions=(0.7, 0.15, 0.15)) -> tuple[int, int, int]:
    "How many of `n` go to train/val/test: val and test get at least one each once n >= 3."
    n_val = max(int(round(n * fractions[1])), 1 if n >= 3 else 0)
    n_test = max(int(round(n * fractions[2])), 1 if n >= 2 else 0)
    return n - n_val - n_test, n_val, n_test


def stratified_splits(labels: list[str], seed, fractions=(0.7, 0.15, 0.15)) -> list[str]:
    "A split name per position, stratified by label and shuffled with a seed."
    splits = [""] * len(labels)
    for label in sorted(set(labels)):
        idx = [i for i, l in enumerate(labels) if l == label]
        rng_for(seed, "split", label).shuffle(idx)
        n_tr, n_va, _ = split_counts(len(idx), fractions)
        for j, i in enumerate(idx):
            splits[i] = "train" if j < n_tr else "val" if j < n_tr + n_va else "test"
    return splits


def need_debian(binary: str, package: str) -> str:
    "Path of `binary`; installs `package` with apt-get when root, else fails saying what to install."
    if path := shutil.which(binary):
        return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} (apt-get install -y {package})", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if path := shutil.which(binary):
            return path
    raise RuntimeError(f"this recipe needs `{binary}`: install it with `sudo apt-get install -y {package}`")


def write_readme(out: Path, text: str):
    (Path(out) / "README.md").write_text(text.strip() + "\n", encoding="utf-8")


def main(build, description: str, extra_args=(), argv=None):
    "Command line of a recipe: `--out DIR [--quick] [--seed N] [--overwrite]` plus recipe options."
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    ap.add_argument("--quick", action="store_true", help="a tiny version for tests and demos (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true", help="replace a previous build in --out")
    for args, kw in extra_args:
        ap.add_argument(*args, **kw)
    a = vars(ap.parse_args(argv))
    path = build(a.pop("out"), **{k: v for k, v in a.items() if v is not None})
    print(path)
    return path
