"""Spoken keywords and digits synthesised with espeak-ng in several voices, languages and speeds, labelled with the
word, the language and the voice (classification) plus a caption.

Needs the Debian package `espeak-ng`.

    python -m data_recipes.speech --out data/speech --quick
"""

from __future__ import annotations
import subprocess, tempfile
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
    need_debian,
    write_readme,
    main,
)

KEYWORDS = (
    "yes",
    "no",
    "up",
    "down",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
)  # Speech Commands' core words, English only
DIGITS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)  # spoken as "0".."9" in each language
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian"}
VOICES = {
    "m1": "male voice 1",
    "m3": "male voice 2",
    "m7": "male voice 3",
    "f1": "female voice 1",
    "f3": "female voice 2",
    "f5": "female voice 3",
    "whisper": "whispering voice",
    "croak": "croaky voice",
}
SPEEDS = {"slowly": 110, "at a normal pace": 165, "quickly": 230}  # words per minute


def speak(text: str, language: str, voice: str | None, wpm: int, pitch: int, sample_rate: int = SAMPLE_RATE):
    "Synthesise text with espeak-ng (writes 22.05 kHz WAV) and resample: mono float. `voice` None: the language's own."
    exe = need_debian("espeak-ng", "espeak-ng")
    name = f"{language}+{voice}" if voice else language
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "x.wav"
        r = subprocess.run(
            [exe, "-v", name, "-s", str(wpm), "-p", str(pitch), "-w", str(wav), text], capture_output=True, text=True
        )
        if r.returncode or not wav.exists():
            raise RuntimeError(f"espeak-ng failed for {text!r} ({name}): {r.stderr.strip()}")
        x, sr = sf.read(wav, dtype="float64")
    return soxr.resample(x, sr, sample_rate) if sr != sample_rate else x


def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    n_per_word: int | None = None,
    languages=None,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    "Write the speech dataset into `out`; returns the manifest path."
    languages = list(LANGUAGES if languages is None else languages)
    if unknown := [l for l in languages if l not in LANGUAGES]:
        raise ValueError(f"unknown languages {unknown}; choose from {list(LANGUAGES)}")
    need_debian("espeak-ng", "espeak-ng")
    n_per_word = n_per_word or (3 if quick else 24)
    out = prepare_out(out, overwrite)
    jobs = [("keyword", w, w) for w in KEYWORDS for _ in range(n_per_word)] + [
        ("digit", w, str(i)) for i, w in enumerate(DIGITS) for _ in range(n_per_word)
    ]
    splits = stratified_splits([f"{kind}:{w}" for kind, w, _ in jobs], (seed, "speech"))
    lang_names, voice_names = [LANGUAGES[l] for l in languages], list(VOICES.values())
    items = []
    for j, ((kind, word, text), split) in enumerate(tqdm(list(zip(jobs, splits)), desc="speech", unit="clip")):
        rng = rng_for(seed, "speech", j)
        lang = "en" if kind == "keyword" else languages[int(rng.integers(len(languages)))]
        voice = list(VOICES)[int(rng.integers(len(VOICES)))]
        speed = list(SPEEDS)[int(rng.integers(len(SPEEDS)))]
        x = speak(text, lang, voice, SPEEDS[speed], int(rng.integers(30, 71)), sample_rate)
        x = np.concatenate([np.zeros(int(0.2 * sample_rate)), x, np.zeros(int(0.2 * sample_rate))])
        path = str(write_wav(out / "audio" / f"{kind}-{j:04d}.wav", 0.8 * x / (np.abs(x).max() + 1e-9), sample_rate))
        meta = {"word": word, "text": text, "language": LANGUAGES[lang], "speaker": VOICES[voice], "speed": speed}
        sid = f"{kind}-{j:04d}"
        if kind == "keyword":
            items.append(
                Item(
                    f"{sid}-word",
                    path,
                    task="classification",
                    prompt="which word is spoken?",
                    answer=word,
                    options=list(KEYWORDS),
                    split=split,
                    dataset="speech-keywords",
                    extra=meta,
                )
            )
        else:
            items.append(
                Item(
                    f"{sid}-word",
                    path,
                    task="classification",
                    prompt="which digit is spoken?",
                    answer=word,
                    options=list(DIGITS),
                    split=split,
                    dataset="speech-digits",
                    extra=meta,
                )
            )
            items.append(
                Item(
                    f"{sid}-language",
                    path,
                    task="classification",
                    prompt="which language is spoken?",
                    answer=LANGUAGES[lang],
                    options=lang_names,
                    split=split,
                    dataset="speech-language",
                    extra=meta,
                )
            )
        items.append(
            Item(
                f"{sid}-speaker",
                path,
                task="classification",
                prompt="which voice is speaking?",
                answer=VOICES[voice],
                options=voice_names,
                split=split,
                dataset="speech-speaker",
                extra=meta,
            )
        )
        items.append(
            Item(
                f"{sid}-caption",
                path,
                task="captioning",
                prompt="describe the sound in a sentence.",
                answer=f'a {VOICES[voice].split(" voice")[0]} voice says "{word}" in {LANGUAGES[lang]} {speed}',
                references=[f"someone says the {'number' if kind == 'digit' else 'word'} {word} in {LANGUAGES[lang]}"],
                split=split,
                dataset="speech-captioning",
                extra=meta,
            )
        )
    write_readme(
        out,
        f"""# speech (data_recipes.speech, seed {seed})
espeak-ng (GPL-3) renderings at {sample_rate} Hz: keywords {", ".join(KEYWORDS)} (English) and the digits 0-9 in
{", ".join(lang_names)}; voices {", ".join(voice_names)}; speeds {", ".join(SPEEDS)}. Datasets: speech-keywords,
speech-digits, speech-language, speech-speaker (classification), speech-captioning.""",
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(build, __doc__, [(("--n-per-word",), {"type": int, "dest": "n_per_word"})])
