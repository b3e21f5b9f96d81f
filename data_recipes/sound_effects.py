"""Real recordings with English captions from Debian's `tuxpaint-stamps-default`: every stamp `NAME.ogg` that has a
`NAME.txt` (first line: the English caption, e.g. "A frog."). Captioning items, plus classification of the stamp's
category (the first folder: animals, food, ...). Licence: GPL-2 (Tux Paint stamps, Bill Kendrick and contributors);
the copyright file is copied into the output as LICENSE-tuxpaint-stamps.

    python -m data_recipes.sound_effects --out data/sound_effects --quick
"""

from __future__ import annotations
import re, shutil
from pathlib import Path
import numpy as np, soundfile as sf, soxr
from tqdm.auto import tqdm
from audioflamingo_lab.core import Item
from audioflamingo_lab.manifest import write_manifest
from data_recipes._common import (
    SAMPLE_RATE,
    MANIFEST,
    prepare_out,
    rng_for,
    write_wav,
    stratified_splits,
    write_readme,
    main,
)

STAMPS = Path("/usr/share/tuxpaint/stamps")
COPYRIGHT = Path("/usr/share/doc/tuxpaint-stamps-default/copyright")
LICENSE = "GPL-2.0-or-later (Tux Paint stamps)"


def find_stamps(root=STAMPS) -> list[tuple[Path, str, str]]:
    "(ogg, English caption, category) for every stamp sound with a caption, sorted by path."
    root = Path(root)
    if not root.is_dir():
        _install()
    found = []
    for ogg in sorted(root.rglob("*.ogg")):
        txt = ogg.with_suffix(".txt")
        if not txt.is_file():
            continue  # localised descriptions (NAME_desc_xx.ogg) have no caption file
        caption = txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip().rstrip(".").strip()
        if caption:
            found.append((ogg, caption[0].lower() + caption[1:], ogg.relative_to(root).parts[0]))
    return found


def _install():
    import os, subprocess

    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "tuxpaint-stamps-default"],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if not STAMPS.is_dir():
        raise RuntimeError(f"{STAMPS} not found: install it with `sudo apt-get install -y tuxpaint-stamps-default`")


def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    limit: int | None = None,
    max_seconds: float = 10.0,
    sample_rate: int = SAMPLE_RATE,
    root=STAMPS,
) -> Path:
    "Write the sound-effects dataset into `out`; returns the manifest path."
    stamps = find_stamps(root)
    if not stamps:
        raise RuntimeError(f"{root}: no stamp sounds with captions (NAME.ogg + NAME.txt) found")
    limit = limit or (12 if quick else None)
    if limit:  # a category-balanced, seeded subset
        order = list(range(len(stamps)))
        rng_for(seed, "subset").shuffle(order)
        stamps = [stamps[i] for i in sorted(order[:limit])]
    out = prepare_out(out, overwrite)
    splits = stratified_splits([c for _, _, c in stamps], (seed, "sound_effects"))
    categories = sorted({c for _, _, c in stamps})
    items, used = [], set()
    for (ogg, caption, category), split in zip(tqdm(stamps, desc="sound_effects", unit="clip"), splits):
        x, sr = sf.read(ogg, dtype="float64", always_2d=True)
        x = x.mean(1)[: int(max_seconds * sr)]
        if sr != sample_rate:
            x = soxr.resample(x, sr, sample_rate)
        name = re.sub(r"[^a-z0-9]+", "-", ogg.relative_to(root).with_suffix("").as_posix().lower()).strip("-")
        assert name not in used, name
        used.add(name)
        path = str(write_wav(out / "audio" / f"{name}.wav", x, sample_rate))
        meta = {"source": ogg.relative_to(root).as_posix(), "category": category, "license": LICENSE}
        items.append(
            Item(
                f"{name}-caption",
                path,
                task="captioning",
                prompt="describe the sound in a sentence.",
                answer=caption,
                split=split,
                dataset="tuxpaint-captioning",
                extra=meta,
            )
        )
        items.append(
            Item(
                f"{name}-category",
                path,
                task="classification",
                prompt="what kind of thing makes this sound?",
                answer=category,
                options=categories,
                split=split,
                dataset="tuxpaint-category",
                extra=meta,
            )
        )
    if COPYRIGHT.is_file():
        shutil.copyfile(COPYRIGHT, out / "audio" / "LICENSE-tuxpaint-stamps")
    write_readme(
        out,
        f"""# sound effects (data_recipes.sound_effects, seed {seed})
{len(stamps)} Tux Paint stamp sounds with their English captions, resampled to {sample_rate} Hz mono WAV.
Licence: {LICENSE}; Copyright 2002-2022 Bill Kendrick and contributors. See audio/LICENSE-tuxpaint-stamps
(copied from {COPYRIGHT}). Datasets: tuxpaint-captioning, tuxpaint-category (classification).""",
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(build, __doc__, [(("--limit",), {"type": int})])
