"""Three small classes of clips for checking that a pretrained encoder tells sounds apart: speech (espeak-ng sentences
in several voices), drum loops (the General MIDI drum kit) and melodic notes (eight GM instruments), the last two
rendered with FluidSynth from TimGM6mb.sf2 by `data_recipes.instruments.render`.

Not a manifest recipe: `make_sound_classes(out)` writes WAV files and returns {class: [paths]}. The aiSFX notebook
(nbs/13a_aisfx_encoder.ipynb) and the tests use it; the Whisper notebook speaks `SENTENCES`. Needs the Debian packages
`espeak-ng` and `fluidsynth`, as the `speech` and `instruments` recipes do.
"""

from __future__ import annotations
from pathlib import Path
import numpy as np
from data_recipes._common import write_wav
from data_recipes.instruments import DRUM_KIT, render
from data_recipes.speech import speak

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you get this message.",
    "It is going to rain this afternoon in the city.",
    "Audio flamingo listens to sounds and answers questions.",
    "Turn left at the next corner and keep walking.",
    "My favourite colour is green, what is yours?",
    "The train to London leaves at seven o'clock.",
    "Thank you very much for your help today.",
]
VOICES = [  # (espeak-ng language, voice variant; None = the language's own voice)
    ("en-us", None),
    ("en", None),
    ("en-us", "f3"),
    ("en", "m3"),
    ("en-us", "f2"),
    ("en", "m7"),
    ("en-us", "m1"),
    ("en", "f4"),
]
INSTRUMENTS = [0, 24, 40, 56, 73, 11, 19, 65]  # piano, guitar, violin, trumpet, flute, vibraphone, organ, sax
SPEECH_WPM, SPEECH_PITCH = 160, 50  # espeak-ng's own pitch
RELEASE_S = 1.0  # rendered after the last note ends: the instruments' release and reverb tail


def drum_notes(seed: int, seconds: float = 4.0) -> list[tuple[int, int, float, float]]:
    "A random rock/funk-ish drum loop (kick, snare, hats, toms, cymbals) as `(pitch, velocity, start, end)` notes."
    rng = np.random.default_rng(seed)
    step = 60 / rng.uniform(80, 150) / 4  # sixteenth notes at 80-150 beats per minute
    notes = []
    for i in range(int(seconds / step)):
        t = i * step
        hits = [(36, 0.5 if i % 4 == 0 else 0.1), (38, 0.6 if i % 8 == 4 else 0.1), (42, 0.7), (45, 0.05), (49, 0.03)]
        for pitch, p in hits:
            if rng.random() < p:
                notes.append((pitch, int(rng.integers(70, 127)), t, t + 0.1))
    return notes


def note_phrase(seed: int, seconds: float = 4.0) -> tuple[int, list[tuple[int, int, float, float]]]:
    "`(GM program, notes)`: a few sustained notes of a major-ish scale on one melodic instrument."
    rng = np.random.default_rng(seed)
    t, root, notes = 0.0, int(rng.integers(52, 72)), []
    while t < seconds - 0.5:
        d = float(rng.uniform(0.4, 1.2))
        notes.append((root + int(rng.choice([0, 2, 4, 5, 7, 9, 12])), 100, t, min(t + d, seconds)))
        t += d
    return INSTRUMENTS[seed % len(INSTRUMENTS)], notes


def make_sound_classes(out_dir, per_class: int = 6, seconds: float = 4.0, sample_rate: int = 44100):
    "Write `per_class` WAV files each of speech, drums and instrument notes into `out_dir`; returns class -> paths."
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes: dict[str, list[Path]] = {"speech": [], "drums": [], "notes": []}
    for i in range(per_class):
        language, voice = VOICES[i % len(VOICES)]
        speech = speak(SENTENCES[i % len(SENTENCES)], language, voice, SPEECH_WPM, SPEECH_PITCH, sample_rate)
        classes["speech"].append(write_wav(out / f"speech_{i}.wav", speech, sample_rate))
        drums = render(drum_notes(i, seconds), 0, seconds + RELEASE_S, sample_rate, bank=DRUM_KIT)
        classes["drums"].append(write_wav(out / f"drums_{i}.wav", drums, sample_rate))
        program, notes = note_phrase(i, seconds)
        tune = render(notes, program, seconds + RELEASE_S, sample_rate)
        classes["notes"].append(write_wav(out / f"notes_{i}.wav", tune, sample_rate))
    return classes
