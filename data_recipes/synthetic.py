"""Procedural sound events (numpy only): 20 event classes, single-event clips for classification, mixed scenes with
templated captions, and audio question answering (yes/no, counting, which comes first).

Classes in `HELDOUT_CLASSES` go only to the dataset `synthetic-unseen-classification`; no other item contains them, so a
model trained on the other datasets never heard them. Use that dataset's train split as the shot pool for in-context
learning and its test split as queries (do not train on it).

    python -m data_recipes.synthetic --out data/synthetic --quick
"""

from __future__ import annotations
from pathlib import Path
import numpy as np
from tqdm.auto import tqdm
from audioflamingo_lab.manifest import write_manifest
from audioflamingo_lab.core import Item
from data_recipes._common import (
    SAMPLE_RATE,
    MANIFEST,
    prepare_out,
    rng_for,
    write_wav,
    stratified_splits,
    split_counts,
    write_readme,
    main,
)


# ---- building blocks -------------------------------------------------------------------------------------------------
def _sine(freq, sr):
    "A sine whose frequency may change per sample (freq: scalar or array)."
    return np.sin(2 * np.pi * np.cumsum(np.broadcast_to(freq, freq.shape if np.ndim(freq) else (1,))) / sr)


def _tone(freq, n, sr):
    return _sine(np.full(n, freq, float) if np.ndim(freq) == 0 else freq, sr)


def _band(noise, sr, lo=0.0, hi=None):
    "Band-limit noise with an FFT mask (lo..hi Hz)."
    spec = np.fft.rfft(noise)
    f = np.fft.rfftfreq(len(noise), 1 / sr)
    spec[(f < lo) | (f > (hi or sr / 2))] = 0
    return np.fft.irfft(spec, len(noise))


def _fade(n, sr, attack=0.01, release=0.05):
    env = np.ones(n)
    a, r = min(int(attack * sr), n // 2), min(int(release * sr), n // 2)
    if a:
        env[:a] = np.linspace(0, 1, a)
    if r:
        env[-r:] = np.linspace(1, 0, r)
    return env


def _decay(n, sr, tau):
    return np.exp(-np.arange(n) / sr / tau)


def _place(n, sr, times, grain):
    "Add `grain` (array) at each time (s) into a zero signal of n samples."
    x = np.zeros(n)
    for t in times:
        i = int(t * sr)
        if i >= n:
            continue
        g = grain[: n - i]
        x[i : i + len(g)] += g
    return x


def _word(value, lo, hi):
    "high/low relative to the middle of the generator's range."
    return "high" if value > (lo + hi) / 2 else "low"


# ---- the event generators: (rng, n samples, sr) -> (wave, pitch word or None) ----------------------------------------
def whistle(rng, n, sr):
    f = rng.uniform(1800, 3200)
    vib = 1 + rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * rng.uniform(4, 7) * np.arange(n) / sr)
    return _tone(f * vib, n, sr) * _fade(n, sr, 0.05, 0.1), _word(f, 1800, 3200)


def hum(rng, n, sr):
    f = rng.uniform(50, 120)
    t = np.arange(n) / sr
    x = sum(np.sin(2 * np.pi * k * f * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    return x * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)) * _fade(n, sr, 0.1, 0.1), None


def siren(rng, n, sr):
    c, d, rate = rng.uniform(700, 1100), rng.uniform(250, 400), rng.uniform(0.8, 2.0)
    lfo = 2 * np.abs(2 * ((np.arange(n) / sr * rate + rng.uniform()) % 1) - 1) - 1  # triangle wave
    return _tone(c + d * lfo, n, sr) * _fade(n, sr, 0.05, 0.1), None


def buzz(rng, n, sr):
    f = rng.uniform(110, 260)
    t = np.arange(n) / sr
    return (2 * ((t * f) % 1) - 1) * _fade(n, sr, 0.02, 0.05), _word(f, 110, 260)


def bell(rng, n, sr):
    f0, tau = rng.uniform(400, 900), rng.uniform(0.3, 0.8)
    t = np.arange(n) / sr
    x = sum(
        a * np.sin(2 * np.pi * f0 * r * t) * _decay(n, sr, tau / r**0.5)
        for r, a in zip((1.0, 2.0, 2.76, 5.40, 8.93), (1, 0.6, 0.5, 0.3, 0.2))
    )
    return x * _fade(n, sr, 0.001, 0.05), _word(f0, 400, 900)


def knock(rng, n, sr):
    f = rng.uniform(150, 350)
    m = int(0.08 * sr)
    grain = np.sin(2 * np.pi * f * np.arange(m) / sr) * _decay(m, sr, rng.uniform(0.012, 0.025))
    grain += 0.3 * _band(rng.standard_normal(m), sr, 0, 2000) * _decay(m, sr, 0.004)
    start, gap = rng.uniform(0.05, 0.2), rng.uniform(0.12, 0.25)
    return _place(n, sr, [start + k * gap for k in range(rng.integers(2, 4))], grain), _word(f, 150, 350)


def drip(rng, n, sr):
    m = int(rng.uniform(0.03, 0.06) * sr)
    f0 = rng.uniform(500, 900)
    grain = _tone(np.geomspace(f0, f0 * rng.uniform(2, 3), m), m, sr) * _decay(m, sr, 0.015)
    times = np.sort(rng.uniform(0.05, n / sr - 0.1, rng.integers(3, 7)))
    return _place(n, sr, times, grain), None


def click_train(rng, n, sr):
    rate = rng.uniform(8, 25)
    m = int(0.002 * sr)
    grain = rng.standard_normal(m) * _decay(m, sr, 0.0005)
    return _place(n, sr, np.arange(rng.uniform(0, 0.05), n / sr, 1 / rate), grain), None


def chirp(rng, n, sr):
    out, t = np.zeros(n), rng.uniform(0.02, 0.1)
    while t < n / sr - 0.15:
        m = int(rng.uniform(0.06, 0.12) * sr)
        lo, hi = rng.uniform(2200, 3000), rng.uniform(4000, 5500)
        g = _tone(np.linspace(lo, hi, m), m, sr) * np.hanning(m)
        out = out + _place(n, sr, [t], g)
        t += m / sr + rng.uniform(0.08, 0.2)
    return out, None


def static(rng, n, sr):
    return rng.standard_normal(n) * _fade(n, sr, 0.02, 0.05), None


def rumble(rng, n, sr):
    x = np.cumsum(rng.standard_normal(n))
    x -= np.linspace(x[0], x[-1], n)
    return _band(x, sr, 20, rng.uniform(120, 200)) * _fade(n, sr, 0.1, 0.1), None


def hiss(rng, n, sr):
    return _band(rng.standard_normal(n), sr, rng.uniform(4500, 6000), None) * _fade(n, sr, 0.05, 0.1), None


def beep(rng, n, sr):
    f, period = rng.uniform(900, 1300), rng.uniform(0.2, 0.4)
    t = np.arange(n) / sr
    gate = ((t % period) < period / 2).astype(float)
    gate = np.convolve(gate, np.ones(40) / 40, "same")  # soften the edges
    return _tone(f, n, sr) * gate, _word(f, 900, 1300)


def wind(rng, n, sr):
    c = rng.uniform(300, 900)
    t = np.arange(n) / sr
    x = _band(rng.standard_normal(n), sr, c - 120, c + 120)
    return x * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.4, 1.2) * t + rng.uniform(0, 6.3))) * _fade(
        n, sr, 0.2, 0.2
    ), None


def engine(rng, n, sr):
    rate, m = rng.uniform(25, 45), int(0.02 * sr)
    grain = _band(rng.standard_normal(m), sr, 0, 800) * _decay(m, sr, 0.006)
    x = _place(n, sr, np.arange(0, n / sr, 1 / rate), grain)
    return _band(x, sr, 30, 1000) * _fade(n, sr, 0.1, 0.1), None


def chord(rng, n, sr):
    root, tau = rng.uniform(200, 400), rng.uniform(0.5, 1.0)
    t = np.arange(n) / sr
    x = sum(np.sin(2 * np.pi * root * r * k * t) / k for r in (1, 1.26, 1.5) for k in range(1, 6))
    return x * _decay(n, sr, tau) * _fade(n, sr, 0.005, 0.05), _word(root, 200, 400)


def rising_tone(rng, n, sr):
    lo, hi = rng.uniform(250, 500), rng.uniform(1500, 2500)
    return _tone(np.geomspace(lo, hi, n), n, sr) * _fade(n, sr, 0.03, 0.05), None


def falling_tone(rng, n, sr):
    lo, hi = rng.uniform(250, 500), rng.uniform(1500, 2500)
    return _tone(np.geomspace(hi, lo, n), n, sr) * _fade(n, sr, 0.03, 0.05), None


def heartbeat(rng, n, sr):
    f, m = rng.uniform(45, 80), int(0.09 * sr)
    thump = np.sin(2 * np.pi * f * np.arange(m) / sr) * np.hanning(m)
    period, lag = 60 / rng.uniform(70, 110), rng.uniform(0.12, 0.2)
    beats = np.arange(rng.uniform(0, 0.1), n / sr, period)
    return _place(n, sr, beats, thump) + 0.7 * _place(n, sr, beats + lag, thump), None


def rain(rng, n, sr):
    m = int(0.004 * sr)
    k = int(rng.uniform(150, 400) * n / sr)
    drops = np.zeros(n)
    drops[rng.integers(0, n - m, k)] = rng.uniform(0.2, 1, k)
    grain = _band(rng.standard_normal(m * 4), sr, 2000, None)[:m] * _decay(m, sr, 0.001)
    return np.convolve(drops, grain)[:n] * _fade(n, sr, 0.1, 0.1), None


GENERATORS = {
    "whistle": whistle,
    "hum": hum,
    "siren": siren,
    "buzz": buzz,
    "bell": bell,
    "knock": knock,
    "drip": drip,
    "click train": click_train,
    "chirp": chirp,
    "static": static,
    "rumble": rumble,
    "hiss": hiss,
    "beep": beep,
    "wind": wind,
    "engine": engine,
    "chord": chord,
    "rising tone": rising_tone,
    "falling tone": falling_tone,
    "heartbeat": heartbeat,
    "rain": rain,
}
CLASSES = tuple(GENERATORS)
HELDOUT_CLASSES = ("bell", "drip", "siren", "rain")  # default unseen group: training never hears these
MASS_NOUNS = {"static", "rumble", "hiss", "wind", "rain"}
NUMBERS = ["zero", "one", "two", "three", "four", "five"]


def make_event(label: str, seconds: float, rng, sample_rate: int = SAMPLE_RATE):
    "One event of a class, peak-normalised: (wave, pitch word or None)."
    x, word = GENERATORS[label](rng, int(seconds * sample_rate), sample_rate)
    return x / (np.abs(x).max() + 1e-9), word


def phrase(label: str, adjective: str | None = None) -> str:
    "'a high whistle', 'an engine', 'loud static'."
    words = " ".join(w for w in (adjective, label) if w)
    if label in MASS_NOUNS:
        return words
    return ("an " if words[0] in "aeiou" else "a ") + words


# ---- scenes ----------------------------------------------------------------------------------------------------------
def make_scene(classes, seconds: float, rng, sample_rate: int = SAMPLE_RATE):
    "Mix 1-3 events of distinct classes at increasing onsets: (wave, events [{label, start, end, phrase}])."
    n = int(seconds * sample_rate)
    k = int(rng.integers(1, min(3, len(classes)) + 1))
    labels = list(rng.choice(classes, k, replace=False))
    slot = seconds / k
    mix, events = np.zeros(n), []
    for i, label in enumerate(labels):
        dur = rng.uniform(0.5, 0.9) * slot + (
            0.3 * slot if i < k - 1 and rng.uniform() < 0.3 else 0
        )  # sometimes overlaps the next
        start = i * slot + rng.uniform(0, slot - min(dur, slot) * 0.9) * 0.5
        dur = min(dur, seconds - start)
        x, word = make_event(label, dur, rng, sample_rate)
        gain = rng.uniform(0.25, 1.0)
        if word is None:
            word = "loud" if gain > 0.8 else "quiet" if gain < 0.4 else None
        i0 = int(start * sample_rate)
        mix[i0 : i0 + len(x)] += gain * x[: n - i0]
        events.append(
            {
                "label": str(label),
                "start": round(float(start), 3),
                "end": round(float(start + dur), 3),
                "phrase": phrase(label, word),
            }
        )
    mix += 0.003 * rng.standard_normal(n)  # a faint noise floor, as in any recording
    return mix, events


def captions(events) -> list[str]:
    "Templated captions of a scene: the first is the answer, the rest are references."
    p = [e["phrase"] for e in events]
    overlap = any(a["end"] > b["start"] for a, b in zip(events, events[1:]))
    if len(p) == 1:
        return [p[0], f"the sound of {p[0]}", f"{p[0]} is heard"]
    if len(p) == 2:
        mid = " overlapping with " if overlap else " then "
        return [p[0] + mid + p[1], f"{p[0]} followed by {p[1]}", f"first {p[0]}, then {p[1]}"]
    return [
        f"{p[0]}, then {p[1]}, then {p[2]}",
        f"{p[0]} followed by {p[1]} and {p[2]}",
        f"first {p[0]}, then {p[1]}, finally {p[2]}",
    ]


def scene_questions(events, classes, rng) -> list[tuple[str, str, str]]:
    "(kind, question, answer) triples: presence (yes/no), counting, and which comes first."
    present = [e["label"] for e in events]
    absent = [c for c in classes if c not in present]
    ask = (
        present[int(rng.integers(len(present)))]
        if (not absent or rng.uniform() < 0.5)
        else absent[int(rng.integers(len(absent)))]
    )
    qs = [
        ("present", f"is there {phrase(ask)} in this recording?", "yes" if ask in present else "no"),
        ("count", "how many sound events can you hear?", NUMBERS[len(events)]),
    ]
    if len(events) >= 2:
        a, b = events[0]["label"], events[1]["label"]
        x, y = (a, b) if rng.uniform() < 0.5 else (b, a)
        qs.append(("order", f"which comes first, the {x} or the {y}?", a))
    return qs


# ---- the recipe ------------------------------------------------------------------------------------------------------
def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    classes=None,
    heldout_classes=HELDOUT_CLASSES,
    n_per_class: int | None = None,
    n_scenes: int | None = None,
    clip_seconds: float = 1.5,
    scene_seconds: float = 3.0,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    "Write the synthetic dataset into `out`; returns the manifest path."
    classes = list(CLASSES if classes is None else classes)
    if unknown := [c for c in [*classes, *(heldout_classes or ())] if c not in GENERATORS]:
        raise ValueError(f"unknown synthetic classes {unknown}; choose from {list(CLASSES)}")
    unseen = [c for c in classes if c in set(heldout_classes or ())]
    seen = [c for c in classes if c not in unseen]
    if not seen:
        raise ValueError("every class is held out: nothing left to train on")
    n_per_class = n_per_class or (3 if quick else 30)
    n_scenes = n_scenes if n_scenes is not None else (12 if quick else 300)
    out = prepare_out(out, overwrite)
    (out / "audio" / "events").mkdir()
    (out / "audio" / "scenes").mkdir()
    items, bar = [], tqdm(total=len(classes) * n_per_class + n_scenes, desc="synthetic", unit="clip")

    for group, dataset in ((seen, "synthetic-classification"), (unseen, "synthetic-unseen-classification")):
        labels = [c for c in group for _ in range(n_per_class)]
        for j, (label, split) in enumerate(zip(labels, stratified_splits(labels, (seed, dataset)))):
            i = j % n_per_class
            x, word = make_event(label, clip_seconds, rng_for(seed, "event", label, i), sample_rate)
            path = write_wav(
                out / "audio" / "events" / f"{label.replace(' ', '_')}-{i:03d}.wav",
                x * rng_for(seed, "gain", label, i).uniform(0.3, 0.9)
                + 0.003 * rng_for(seed, "floor", label, i).standard_normal(len(x)),
                sample_rate,
            )  # faint noise floor
            items.append(
                Item(
                    f"{label.replace(' ', '_')}-{i:03d}",
                    str(path),
                    task="classification",
                    prompt="what is this sound?",
                    answer=label,
                    split=split,
                    dataset=dataset,
                    options=list(group),
                    extra={"pitch": word} if word else {},
                )
            )
            bar.update()

    order = list(range(n_scenes))
    rng_for(seed, "scene-split").shuffle(order)
    n_tr, n_va, _ = split_counts(n_scenes)
    scene_split = {s: "train" if r < n_tr else "val" if r < n_tr + n_va else "test" for r, s in enumerate(order)}
    for s in range(n_scenes):
        rng = rng_for(seed, "scene", s)
        wave, events = make_scene(seen, scene_seconds, rng, sample_rate)
        path = str(write_wav(out / "audio" / "scenes" / f"scene-{s:04d}.wav", wave, sample_rate))
        caps = captions(events)
        ev = [{k: e[k] for k in ("label", "start", "end")} for e in events]
        items.append(
            Item(
                f"scene-{s:04d}-caption",
                path,
                task="captioning",
                prompt="describe the sound in a sentence.",
                answer=caps[0],
                references=caps[1:],
                split=scene_split[s],
                dataset="synthetic-captioning",
                extra={"events": ev},
            )
        )
        for kind, q, a in scene_questions(events, seen, rng):
            items.append(
                Item(
                    f"scene-{s:04d}-{kind}",
                    path,
                    task="aqa",
                    prompt=q,
                    answer=a,
                    split=scene_split[s],
                    dataset="synthetic-aqa",
                    extra={"events": ev},
                )
            )
        bar.update()
    bar.close()
    write_readme(
        out,
        f"""# synthetic sounds (data_recipes.synthetic, seed {seed})
Procedural numpy sound events at {sample_rate} Hz, 16-bit WAV. Datasets in manifest.jsonl:
- synthetic-classification: {len(seen)} seen classes x {n_per_class} clips of {clip_seconds} s: {", ".join(seen)}
- synthetic-unseen-classification: held-out classes ({", ".join(unseen) or "none"}). Never train on it: its train split
  is the shot pool for in-context learning, its test split the queries.
- synthetic-captioning / synthetic-aqa: {n_scenes} scenes of {scene_seconds} s mixing 1-3 seen events.
Licence: generated, public domain (CC0).""",
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(
        build,
        __doc__,
        [
            (("--n-per-class",), {"type": int, "dest": "n_per_class"}),
            (("--n-scenes",), {"type": int, "dest": "n_scenes"}),
            (("--clip-seconds",), {"type": float, "dest": "clip_seconds"}),
        ],
    )
