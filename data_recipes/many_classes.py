"""Many sound classes for in-context training: every General MIDI instrument rendered with FluidSynth, the synthetic
recipe's 20 event classes with randomised parameters, espeak-ng voices saying random words, and Tux Paint's stamp
sound effects (real recordings; several random crops of each). One classification item per clip; each item's options
are its class and four other classes of the same source (a 5-way question, chance 0.2).

The point is the number of classes (about 330): a model that must bind labels to sounds in-context needs to have met
many sounds. The held-out real recordings (`data_recipes.spoken_languages`) share no class, file or recording with
this set: stamp files with a language suffix (`NAME_de.ogg`), spoken descriptions (`NAME_desc*.ogg`) and the `symbols/`
folder (spoken letters and numbers) are never read here.

    python -m data_recipes.many_classes --out data/many_classes --quick
"""

from __future__ import annotations
import re
from pathlib import Path
import numpy as np
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

SOURCES = ("instruments", "synthetic", "voices", "stamps")
PROMPT = "what is this sound?"
LANGUAGE_SUFFIX = re.compile(r"_(desc|[a-z]{2}(_[A-Za-z]{2,4})?)$")  # localised stamp sounds: kept for the held-out set


def instrument_classes() -> list[tuple[int, str]]:
    "(GM program, lowercase name) for the 128 General MIDI programs (pretty_midi's names)."
    import pretty_midi

    names = [pretty_midi.program_to_instrument_name(p).lower() for p in range(128)]
    return [
        (p, re.sub(r"[()]", "", n)) for p, n in enumerate(names)
    ]  # "acoustic guitar (steel)" -> "acoustic guitar steel"


def render_notes(program_clips, sample_rate: int = SAMPLE_RATE):
    "Render [(program, pitch, velocity, seconds)] with one FluidSynth synth (fast: the SoundFont loads once)."
    from data_recipes.instruments import _synth

    fluidsynth, sf2 = _synth()
    synth = fluidsynth.Synth(samplerate=float(sample_rate), gain=2.5)
    try:
        font = synth.sfload(sf2)
        for program, pitch, velocity, seconds in program_clips:
            synth.program_select(0, font, 0, program)
            synth.noteon(0, pitch, velocity)
            on = synth.get_samples(int(0.75 * seconds * sample_rate))
            synth.noteoff(0, pitch)
            tail = synth.get_samples(int(0.25 * seconds * sample_rate))
            synth.all_sounds_off(0)  # no release leaks into the next clip
            synth.get_samples(int(0.2 * sample_rate))
            yield np.concatenate([on, tail]).astype(np.float64).reshape(-1, 2).mean(1) / 32768
    finally:
        synth.delete()


def stamp_sounds(root=None) -> list[tuple[Path, str]]:
    "(ogg, short English name) of every Tux Paint stamp sound effect (no localised speech, no symbols), by path."
    from data_recipes.sound_effects import STAMPS, find_stamps

    found = []
    for ogg, caption, category in find_stamps(root or STAMPS):
        if category == "symbols" or LANGUAGE_SUFFIX.search(ogg.stem):
            continue
        found.append((ogg, re.sub(r"^(an?|the) ", "", caption.lower()).strip()))
    names = {}
    for ogg, name in found:
        names.setdefault(name, []).append(ogg)
    return [(ogg, name) for name, oggs in sorted(names.items()) if len(oggs) == 1 for ogg in oggs]  # unambiguous names


def _options(label: str, classes: list[str], rng) -> list[str]:
    others = [c for c in classes if c != label]
    return sorted([label, *rng.choice(others, size=min(4, len(others)), replace=False).tolist()])


def _instrument_clips(n_per_class, seed, sample_rate):
    classes = instrument_classes()
    plan = []
    for program, name in classes:
        for j in range(n_per_class):
            rng = rng_for(seed, "instrument", program, j)
            plan.append((program, int(rng.integers(45, 80)), int(rng.integers(60, 121)), float(rng.uniform(1.0, 2.0))))
    waves = render_notes(plan, sample_rate)
    return [(name, wave) for (program, name), wave in zip([c for c in classes for _ in range(n_per_class)], waves)]


def _synthetic_clips(n_per_class, seed, sample_rate):
    from data_recipes.synthetic import CLASSES, make_event

    clips = []
    for label in CLASSES:
        for j in range(n_per_class):
            rng = rng_for(seed, "synthetic", label, j)
            clips.append((label, make_event(label, float(rng.uniform(1.0, 2.0)), rng, sample_rate)[0]))
    return clips


def _voice_clips(n_per_class, seed, sample_rate):
    from data_recipes.speech import VOICES, speak

    words = (
        "apple",
        "river",
        "window",
        "garden",
        "yellow",
        "music",
        "paper",
        "summer",
        "table",
        "orange",
        "silver",
        "forest",
        "number",
        "little",
        "morning",
        "travel",
    )
    clips = []
    for voice, label in VOICES.items():
        for j in range(n_per_class):
            rng = rng_for(seed, "voice", voice, j)
            text = " ".join(rng.choice(words, size=2, replace=False))
            clips.append(
                (label, speak(text, "en", voice, int(rng.integers(130, 200)), int(rng.integers(30, 70)), sample_rate))
            )
    return clips


def _stamp_clips(n_per_class, seed, sample_rate):
    import soundfile as sf, soxr

    clips = []
    for ogg, name in stamp_sounds():
        x, sr = sf.read(ogg, dtype="float64", always_2d=True)
        x = x.mean(1)
        if sr != sample_rate:
            x = soxr.resample(x, sr, sample_rate)
        for j in range(n_per_class):
            rng = rng_for(seed, "stamp", name, j)
            n = min(len(x), int(rng.uniform(1.0, 2.5) * sample_rate))
            start = int(rng.integers(0, len(x) - n + 1))
            crop = soxr.resample(
                x[start : start + n], sample_rate, sample_rate * rng.uniform(0.92, 1.08)
            )  # +-8 % speed/pitch
            clips.append((name, crop / (np.abs(crop).max() + 1e-9) * rng.uniform(0.3, 0.9)))  # each crop differs
    return clips


_MAKERS = {
    "instruments": _instrument_clips,
    "synthetic": _synthetic_clips,
    "voices": _voice_clips,
    "stamps": _stamp_clips,
}


def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    sources=SOURCES,
    n_per_class: int | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    "Write the many-classes dataset into `out`; returns the manifest path."
    if unknown := [s for s in sources if s not in _MAKERS]:
        raise ValueError(f"unknown sources {unknown}; choose from {SOURCES}")
    n_per_class = n_per_class or (4 if quick else 8)
    out = prepare_out(out, overwrite)
    items = []
    for source in tqdm(list(sources), desc="many_classes", unit="source"):
        clips = _MAKERS[source](n_per_class, seed, sample_rate)
        if quick:
            clips = [c for c in clips if c[0] in sorted({c[0] for c in clips})[:12]]
        classes = sorted({label for label, _ in clips})
        splits = stratified_splits(
            [label for label, _ in clips], (seed, "many_classes", source), fractions=(0.6, 0.15, 0.25)
        )
        for j, ((label, wave), split) in enumerate(zip(clips, splits)):
            name = f"{source}-{j:04d}"
            path = str(write_wav(out / "audio" / f"{name}.wav", wave, sample_rate))
            items.append(
                Item(
                    name,
                    path,
                    task="classification",
                    prompt=PROMPT,
                    answer=label,
                    split=split,
                    options=_options(label, classes, rng_for(seed, "options", name)),
                    dataset=f"many-classes-{source}",
                    extra={"source": source},
                )
            )
    counts = {s: len({it.answer for it in items if it.extra["source"] == s}) for s in sources}
    write_readme(
        out,
        f"""# many classes (data_recipes.many_classes, seed {seed})
{len(items)} clips of {sum(counts.values())} classes at {sample_rate} Hz: {counts}. Splits per class: train 60 %, \
val 15 %,
test 25 % (the seen-class test clips). Sources and licences: see data_recipes/README.md.""",
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(build, __doc__, [(("--n-per-class",), {"type": int, "dest": "n_per_class"})])
