"""Held-out real recordings for few-shot evaluation: Tux Paint's spoken stamp descriptions (`NAME_desc_<lang>.ogg`,
read by volunteers), labelled with their language. No class, file or recording here is used by any training recipe
(`data_recipes.many_classes` skips every localised stamp file).

The classes are split in two disjoint groups: `val` languages (choose settings on them) and `test` languages (read once
at the end). Each language has a pool of `train` clips (the shots: retrieved or drawn) and query clips in its group's
split (`val` or `test`). A query's options are the languages of its group. English is left out: the English narrator
may also speak in stamp sounds that training uses. Licence: GPL-2.0-or-later (Tux Paint stamps).

One recording often sits under several stamps (Lithuanian: 88 files, 22 recordings), so clips are drawn from distinct
recordings: no query is a copy of a shot. A language with too few recordings for `n_queries` keeps its pool and gets
fewer queries (Lithuanian: 16 pool clips, 6 queries); the README of the built set lists the counts.

    python -m data_recipes.spoken_languages --out data/spoken_languages --quick
"""

from __future__ import annotations
import hashlib, re, shutil
from pathlib import Path
import numpy as np
from tqdm.auto import tqdm
from audioflamingo_lab.core import Item
from audioflamingo_lab.manifest import write_manifest
from data_recipes._common import SAMPLE_RATE, MANIFEST, prepare_out, rng_for, write_wav, write_readme, main

LANGUAGES = {
    "be": "belarusian",
    "bg": "bulgarian",
    "ca": "catalan",
    "da": "danish",
    "el": "greek",
    "es": "spanish",
    "fr": "french",
    "lt": "lithuanian",
    "nl": "dutch",
    "ro": "romanian",
    "ru": "russian",
}
VAL_LANGUAGES = ("be", "da", "lt", "nl", "el")  # fixed, so every seed of every run reads the same test group
PROMPT = "which language is spoken?"
LICENSE = "GPL-2.0-or-later (Tux Paint stamps)"
DESC = re.compile(r"_desc_([a-z]{2})$")


def find_descriptions(root=None) -> dict[str, list[Path]]:
    "{language code: sorted spoken-description files} for the languages in LANGUAGES."
    from data_recipes.sound_effects import STAMPS, _install

    root = Path(root or STAMPS)
    if not root.is_dir():
        _install()
    found = {code: [] for code in LANGUAGES}
    for ogg in sorted(root.rglob("*_desc_*.ogg")):
        m = DESC.search(ogg.stem)
        if m and m.group(1) in found:
            found[m.group(1)].append(ogg)
    return found


def distinct_files(files: list[Path]) -> list[Path]:
    "The first of each group of byte-identical files (the same recording under several stamp names)."
    seen = {}
    for f in files:
        seen.setdefault(hashlib.sha256(f.read_bytes()).hexdigest(), f)
    return list(seen.values())


def read_clip(f: Path, max_seconds: float, sample_rate: int) -> np.ndarray:
    "The first `max_seconds` of `f`, mono, at `sample_rate`."
    import soundfile as sf, soxr

    x, sr = sf.read(f, dtype="float64", always_2d=True)
    x = x.mean(1)[: int(max_seconds * sr)]
    return soxr.resample(x, sr, sample_rate) if sr != sample_rate else x


def draw_clips(files: list[Path], n: int, rng, max_seconds: float, sample_rate: int) -> list[tuple[Path, np.ndarray]]:
    "Up to `n` clips of distinct recordings, in `rng`'s order; files whose clip equals an earlier one are skipped."
    clips, seen = [], set()
    for i in rng.permutation(len(files)):
        x = read_clip(files[i], max_seconds, sample_rate)
        if (key := hashlib.sha256(x.astype(np.float32).tobytes()).hexdigest()) not in seen:
            seen.add(key)
            clips.append((files[i], x))
        if len(clips) == n:
            break
    return clips


def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    n_pool: int | None = None,
    n_queries: int | None = None,
    max_seconds: float = 5.0,
    sample_rate: int = SAMPLE_RATE,
    root=None,
) -> Path:
    """Write the held-out spoken-languages set into `out`; returns the manifest path. Each language gets `n_pool` pool
    clips and up to `n_queries` queries, all of distinct recordings."""
    n_pool, n_queries = n_pool or (4 if quick else 16), n_queries or (2 if quick else 20)
    found = {code: distinct_files(files) for code, files in find_descriptions(root).items()}
    drawn = {  # every language is drawn before `out` is touched: a failed build removes nothing
        code: draw_clips(files, n_pool + n_queries, rng_for(seed, "languages", code), max_seconds, sample_rate)
        for code, files in found.items()
    }
    if short := {LANGUAGES[c]: len(clips) for c, clips in drawn.items() if len(clips) < n_pool + 2}:
        raise RuntimeError(
            f"too few distinct spoken descriptions for {short} (need {n_pool} pool clips and 2 queries each): "
            "is tuxpaint-stamps-default installed completely?"
        )
    out = prepare_out(out, overwrite)
    groups = {
        "val": [c for c in LANGUAGES if c in VAL_LANGUAGES],
        "test": [c for c in LANGUAGES if c not in VAL_LANGUAGES],
    }
    items = []
    counts = {LANGUAGES[c]: (n_pool, len(drawn[c]) - n_pool) for codes in groups.values() for c in codes}
    for group, codes in groups.items():
        options = sorted(LANGUAGES[c] for c in codes)
        for code in tqdm(codes, desc=f"spoken_languages ({group})", unit="language"):
            clips = drawn[code]
            for j, (f, x) in enumerate(clips):
                split = "train" if j < n_pool else group
                path = str(write_wav(out / "audio" / f"{code}-{j:02d}.wav", x, sample_rate))
                items.append(
                    Item(
                        f"{code}-{j:02d}",
                        path,
                        task="classification",
                        prompt=PROMPT,
                        answer=LANGUAGES[code],
                        options=options,
                        split=split,
                        dataset=f"spoken-languages-{group}",
                        extra={"source": str(f.relative_to(f.parents[len(f.parents) - 5])), "license": LICENSE},
                    )
                )
    from data_recipes.sound_effects import COPYRIGHT

    if COPYRIGHT.is_file():
        shutil.copyfile(COPYRIGHT, out / "audio" / "LICENSE-tuxpaint-stamps")
    write_readme(
        out,
        f"""# spoken languages (data_recipes.spoken_languages, seed {seed})
Held-out real recordings: Tux Paint spoken stamp descriptions, first {max_seconds:g} s, {sample_rate} Hz mono.
val languages: {", ".join(LANGUAGES[c] for c in groups["val"])}; \
test languages: {", ".join(LANGUAGES[c] for c in groups["test"])}.
Per language {n_pool} pool clips (split train: the shots) and up to {n_queries} queries (split val or test), all of \
distinct recordings: {"; ".join(f"{lang} {p} + {q}" for lang, (p, q) in counts.items())}. Licence: {LICENSE}.""",
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(
        build,
        __doc__,
        [(("--n-pool",), {"type": int, "dest": "n_pool"}), (("--n-queries",), {"type": int, "dest": "n_queries"})],
    )
