"""Instrument notes and short phrases rendered from the General MIDI SoundFont that pretty_midi ships (TimGM6mb.sf2)
with FluidSynth: NSynth-like labels (instrument family, pitch, velocity) and captions.

Needs the Debian package `fluidsynth` (libfluidsynth) and the PyPI binding `pyfluidsynth`.

    python -m data_recipes.instruments --out data/instruments --quick
"""

from __future__ import annotations
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
    need_debian,
    write_readme,
    main,
)

# family -> [(GM program (0-based), instrument name)], and the MIDI pitch range it plays well in
FAMILIES = {
    "keyboard": ([(0, "piano"), (4, "electric piano")], (48, 84)),
    "mallet": ([(12, "marimba"), (11, "vibraphone")], (55, 84)),
    "organ": ([(19, "church organ"), (16, "drawbar organ")], (48, 79)),
    "guitar": ([(24, "nylon guitar"), (25, "steel guitar")], (45, 76)),
    "bass": ([(33, "electric bass"), (32, "acoustic bass")], (28, 52)),
    "string": ([(40, "violin"), (42, "cello")], (48, 84)),
    "brass": ([(56, "trumpet"), (57, "trombone")], (50, 77)),
    "reed": ([(65, "alto sax"), (71, "clarinet")], (50, 79)),
    "flute": ([(73, "flute"), (72, "piccolo")], (62, 91)),
    "synth lead": ([(80, "square lead"), (81, "sawtooth lead")], (48, 84)),
}
VELOCITIES = {"soft": (35, 60), "loud": (100, 127)}  # NSynth-like velocity classes


def _synth():
    need_debian("fluidsynth", "fluidsynth")
    try:
        import fluidsynth, pretty_midi
    except ImportError as e:
        raise RuntimeError(
            f"the instruments recipe needs pyfluidsynth and libfluidsynth: `pip install pyfluidsynth==1.4.0` "
            f"and `sudo apt-get install -y fluidsynth` ({e})"
        ) from e
    return fluidsynth, str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")


DRUM_KIT = 128  # the General MIDI bank of drum kits: `render(notes, 0, seconds, bank=DRUM_KIT)` is the standard kit


def render(notes, program: int, seconds: float, sample_rate: int = SAMPLE_RATE, bank: int = 0):
    "Render [(pitch, velocity, start, end)] on one GM program with a fresh synth (no state between clips): mono float."
    fluidsynth, sf2 = _synth()
    fs = fluidsynth.Synth(samplerate=float(sample_rate), gain=2.5)  # soft notes near -25 dBFS, loud near -3
    try:
        fs.program_select(0, fs.sfload(sf2), bank, program)
        events = sorted([(s, 1, p, v) for p, v, s, e in notes] + [(e, 0, p, v) for p, v, s, e in notes])
        chunks, t = [], 0
        for time, on, pitch, vel in events:
            n = int(round(time * sample_rate)) - t
            if n > 0:
                chunks.append(fs.get_samples(n))
                t += n
            fs.noteon(0, pitch, vel) if on else fs.noteoff(0, pitch)
        chunks.append(fs.get_samples(int(seconds * sample_rate) - t))
    finally:
        fs.delete()
    x = np.concatenate(chunks).astype(np.float64).reshape(-1, 2).mean(1) / 32768
    return x


def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    families=None,
    n_per_family: int | None = None,
    n_phrases: int | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    "Write the instrument dataset into `out`; returns the manifest path."
    families = list(FAMILIES if families is None else families)
    if unknown := [f for f in families if f not in FAMILIES]:
        raise ValueError(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    _synth()  # fail early, before touching `out`
    import pretty_midi

    n_per_family = n_per_family or (3 if quick else 40)
    n_phrases = n_phrases if n_phrases is not None else (4 if quick else 100)
    out = prepare_out(out, overwrite)
    labels = [f for f in families for _ in range(n_per_family)]
    splits = stratified_splits(labels, (seed, "instruments"))
    items, bar = [], tqdm(total=len(labels) + n_phrases, desc="instruments", unit="clip")
    for j, (family, split) in enumerate(zip(labels, splits)):
        rng = rng_for(seed, "note", family, j)
        (program, name), (lo, hi) = FAMILIES[family][0][int(rng.integers(2))], FAMILIES[family][1]
        pitch, dynamic = int(rng.integers(lo, hi + 1)), ("soft", "loud")[int(rng.integers(2))]
        velocity = int(rng.integers(*VELOCITIES[dynamic]))
        note = pretty_midi.note_number_to_name(pitch)
        path = str(
            write_wav(
                out / "audio" / f"note-{j:04d}.wav",
                render([(pitch, velocity, 0.0, 1.0)], program, 1.5, sample_rate),
                sample_rate,
            )
        )
        meta = {
            "family": family,
            "instrument": name,
            "program": program,
            "pitch": pitch,
            "note": note,
            "velocity": velocity,
        }
        common = dict(split=split, extra=meta)
        items += [
            Item(
                f"note-{j:04d}-family",
                path,
                task="classification",
                prompt="which instrument family is playing?",
                answer=family,
                options=families,
                dataset="instruments-family",
                **common,
            ),
            Item(
                f"note-{j:04d}-pitch",
                path,
                task="aqa",
                prompt="which note is played?",
                answer=note,
                dataset="instruments-pitch",
                **common,
            ),
            Item(
                f"note-{j:04d}-velocity",
                path,
                task="aqa",
                prompt="is the note played soft or loud?",
                answer=dynamic,
                dataset="instruments-velocity",
                **common,
            ),
            Item(
                f"note-{j:04d}-caption",
                path,
                task="captioning",
                prompt="describe the sound in a sentence.",
                answer=f"a {dynamic} {name} note, {note}",
                references=[f"a {name} plays {note} {'softly' if dynamic == 'soft' else 'loudly'}"],
                dataset="instruments-captioning",
                **common,
            ),
        ]
        bar.update()
    phrase_splits = stratified_splits(["phrase"] * n_phrases, (seed, "phrases"))
    for k in range(n_phrases):
        rng = rng_for(seed, "phrase", k)
        family = families[int(rng.integers(len(families)))]
        (program, name), (lo, hi) = FAMILIES[family][0][int(rng.integers(2))], FAMILIES[family][1]
        n_notes, step = int(rng.integers(3, 5)), int(rng.choice([2, 3, 4, 5]))
        direction = ("rising", "falling")[int(rng.integers(2))]
        start = (
            int(rng.integers(lo, hi - step * n_notes + 1))
            if direction == "rising"
            else int(rng.integers(lo + step * n_notes, hi + 1))
        )
        pitches = [start + (i if direction == "rising" else -i) * step for i in range(n_notes)]
        dynamic = ("soft", "loud")[int(rng.integers(2))]
        notes = [(p, int(rng.integers(*VELOCITIES[dynamic])), 0.4 * i, 0.4 * i + 0.35) for i, p in enumerate(pitches)]
        path = str(
            write_wav(
                out / "audio" / f"phrase-{k:04d}.wav",
                render(notes, program, 0.4 * n_notes + 0.5, sample_rate),
                sample_rate,
            )
        )
        words = ["zero", "one", "two", "three", "four", "five"][n_notes]
        items.append(
            Item(
                f"phrase-{k:04d}-caption",
                path,
                task="captioning",
                prompt="describe the sound in a sentence.",
                answer=f"a {name} plays a {dynamic} {direction} phrase of {words} notes",
                references=[f"{words} {dynamic} {name} notes going {'up' if direction == 'rising' else 'down'}"],
                split=phrase_splits[k],
                dataset="instruments-captioning",
                extra={"family": family, "instrument": name, "program": program, "pitches": pitches},
            )
        )
        bar.update()
    bar.close()
    write_readme(
        out,
        f"""# instruments (data_recipes.instruments, seed {seed})
Notes and phrases rendered at {sample_rate} Hz with FluidSynth from TimGM6mb.sf2 (the General MIDI SoundFont \
shipped with
pretty_midi; by Tim Brechbill, GPL-2). Families: {", ".join(families)}. Datasets: instruments-family (classification),
instruments-pitch and instruments-velocity (AQA), instruments-captioning.""",
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(
        build,
        __doc__,
        [
            (("--n-per-family",), {"type": int, "dest": "n_per_family"}),
            (("--n-phrases",), {"type": int, "dest": "n_phrases"}),
        ],
    )
