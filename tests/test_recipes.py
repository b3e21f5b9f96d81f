"""Every recipe builds in its quick setting, is deterministic for a seed, and writes a manifest that validates."""

import csv, hashlib, shutil, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pytest, soundfile as sf
from audioflamingo_lab.manifest import read_manifest
import data_recipes
from data_recipes import build


def tree_hash(folder) -> str:
    "sha256 over every file's relative path and bytes."
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def needs(binary):
    return pytest.mark.skipif(
        shutil.which(binary) is None, reason=f"needs `{binary}` (Debian package); the recipe says how to install it"
    )


# ---- synthetic -------------------------------------------------------------------------------------------------------
def test_synthetic_quick_is_deterministic_and_valid(tmp_path):
    a = build("synthetic", tmp_path / "a", quick=True, seed=0)
    b = build("synthetic", tmp_path / "b", quick=True, seed=0)
    c = build("synthetic", tmp_path / "c", quick=True, seed=1)
    assert tree_hash(a.parent) == tree_hash(b.parent) != tree_hash(c.parent)
    items = read_manifest(a)
    from data_recipes.synthetic import CLASSES, HELDOUT_CLASSES

    seen = [c for c in CLASSES if c not in HELDOUT_CLASSES]
    by_ds = {}
    for it in items:
        by_ds.setdefault(it.dataset, []).append(it)
    assert set(by_ds) == {
        "synthetic-classification",
        "synthetic-unseen-classification",
        "synthetic-captioning",
        "synthetic-aqa",
    }
    cls = by_ds["synthetic-classification"]
    assert len(CLASSES) >= 16 and sorted({i.answer for i in cls}) == sorted(seen)
    assert all(i.options == seen and i.answer in i.options for i in cls)
    assert {i.split for i in cls} == {"train", "val", "test"}
    for label in seen:  # stratified: every class in every split
        assert {i.split for i in cls if i.answer == label} == {"train", "val", "test"}
    unseen = by_ds["synthetic-unseen-classification"]
    assert sorted({i.answer for i in unseen}) == sorted(HELDOUT_CLASSES)
    # held-out classes never appear in what training sees
    for it in by_ds["synthetic-captioning"] + by_ds["synthetic-aqa"]:
        assert not {e["label"] for e in it.extra["events"]} & set(HELDOUT_CLASSES)
    for it in by_ds["synthetic-aqa"]:  # answers follow from the event list
        ev = it.extra["events"]
        if it.id.endswith("-count"):
            assert it.answer == ["zero", "one", "two", "three"][len(ev)]
        if it.id.endswith("-order"):
            assert it.answer == ev[0]["label"] and ev[0]["start"] < ev[1]["start"]
        if it.id.endswith("-present"):
            assert it.answer in ("yes", "no")
    x, sr = sf.read(cls[0].audio)
    assert sr == 16000 and x.ndim == 1 and len(x) == int(1.5 * sr) and sf.info(cls[0].audio).subtype == "PCM_16"


def test_synthetic_classes_differ_acoustically():
    "Every pair of classes differs in its average log spectrum more than two clips of one class do (on average)."
    from data_recipes.synthetic import CLASSES, make_event
    from data_recipes._common import rng_for

    def spec(label, i):
        x, _ = make_event(label, 1.0, rng_for(0, label, i))
        fr = np.lib.stride_tricks.sliding_window_view(x, 512)[::512] * np.hanning(512)
        S = np.log(np.abs(np.fft.rfft(fr)) ** 2 + 1e-6)
        return np.concatenate([S.mean(0), S.std(0)])

    F = {c: [spec(c, i) for i in range(3)] for c in CLASSES}
    within = np.mean([np.linalg.norm(F[c][0] - F[c][1]) for c in CLASSES])
    cent = {c: np.mean(F[c], 0) for c in CLASSES}
    nearest = min(
        np.linalg.norm(cent[a] - cent[b])
        for a in CLASSES
        for b in CLASSES
        if a < b and {a, b} != {"rising tone", "falling tone"}
    )
    assert nearest > 0.5 * within, (nearest, within)


def test_synthetic_options_and_refusals(tmp_path):
    m = build(
        "synthetic",
        tmp_path / "s",
        quick=True,
        classes=["whistle", "knock", "bell"],
        heldout_classes=["bell"],
        n_scenes=3,
    )
    items = read_manifest(m)
    assert {i.answer for i in items if i.dataset == "synthetic-classification"} == {"whistle", "knock"}
    assert len({i.audio for i in items if i.task != "classification"}) == 3
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build("synthetic", tmp_path / "s", quick=True)
    (tmp_path / "s" / "mine.txt").write_text("user data")
    build("synthetic", tmp_path / "s", quick=True, overwrite=True, n_scenes=1)
    assert (tmp_path / "s" / "mine.txt").read_text() == "user data"  # overwrite removes only recipe files
    with pytest.raises(ValueError, match="unknown synthetic classes"):
        build("synthetic", tmp_path / "t", classes=["dog"])
    with pytest.raises(ValueError, match="unknown recipe"):
        build("nope", tmp_path / "u")
    assert set(data_recipes.RECIPES) == {
        "synthetic",
        "instruments",
        "speech",
        "sound_effects",
        "byo",
        "dialogue",
        "many_classes",
        "spoken_languages",
    }


def test_synthetic_command_line(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_recipes.synthetic",
            "--out",
            str(tmp_path / "cli"),
            "--quick",
            "--seed",
            "3",
            "--n-scenes",
            "2",
            "--n-per-class",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]) == tmp_path / "cli" / "manifest.jsonl"
    assert len(read_manifest(tmp_path / "cli" / "manifest.jsonl")) > 20


# ---- the recipes that need Debian tools ------------------------------------------------------------------------------
@needs("fluidsynth")
def test_instruments_quick(tmp_path):
    kw = dict(quick=True, families=["keyboard", "bass", "flute"], n_per_family=3, n_phrases=2)
    a = build("instruments", tmp_path / "a", seed=0, **kw)
    b = build("instruments", tmp_path / "b", seed=0, **kw)
    c = build("instruments", tmp_path / "c", seed=1, **kw)
    assert tree_hash(a.parent) == tree_hash(b.parent) != tree_hash(c.parent)
    items = read_manifest(a)
    fam = [i for i in items if i.dataset == "instruments-family"]
    assert sorted({i.answer for i in fam}) == ["bass", "flute", "keyboard"] and {i.split for i in fam} == {
        "train",
        "val",
        "test",
    }
    import pretty_midi

    for i in items:
        if i.dataset == "instruments-pitch":
            assert i.answer == pretty_midi.note_number_to_name(i.extra["pitch"])
        if i.dataset == "instruments-velocity":
            assert (i.answer == "loud") == (i.extra["velocity"] >= 100)
    # the note is really there: the loudest spectral peak sits near the fundamental or a harmonic of it
    x, sr = sf.read(fam[0].audio)
    assert np.abs(x).max() > 0.01
    loud = [i for i in items if i.dataset == "instruments-velocity" and i.answer == "loud"]
    soft = [i for i in items if i.dataset == "instruments-velocity" and i.answer == "soft"]
    if loud and soft:  # velocity survives rendering (no per-clip normalisation)
        rms = lambda it: float(np.sqrt((sf.read(it.audio)[0] ** 2).mean()))
        assert np.median([rms(i) for i in loud]) > np.median([rms(i) for i in soft])


@needs("espeak-ng")
def test_speech_quick(tmp_path):
    a = build("speech", tmp_path / "a", quick=True, seed=0, n_per_word=2, languages=["en", "de"])
    b = build("speech", tmp_path / "b", quick=True, seed=0, n_per_word=2, languages=["en", "de"])
    c = build("speech", tmp_path / "c", quick=True, seed=5, n_per_word=2, languages=["en", "de"])
    assert tree_hash(a.parent) == tree_hash(b.parent) != tree_hash(c.parent)
    items = read_manifest(a)
    assert {i.dataset for i in items} == {
        "speech-keywords",
        "speech-digits",
        "speech-language",
        "speech-speaker",
        "speech-captioning",
    }
    from data_recipes.speech import KEYWORDS, DIGITS

    assert sorted({i.answer for i in items if i.dataset == "speech-keywords"}) == sorted(KEYWORDS)
    assert sorted({i.answer for i in items if i.dataset == "speech-digits"}) == sorted(DIGITS)
    assert {i.answer for i in items if i.dataset == "speech-language"} <= {"English", "German"}
    for i in items:
        assert i.answer in i.options or i.task == "captioning"
        if i.dataset == "speech-digits":
            assert DIGITS.index(i.answer) == int(i.extra["text"])


@pytest.mark.skipif(
    not Path("/usr/share/tuxpaint/stamps").is_dir(), reason="needs Debian package tuxpaint-stamps-default"
)
def test_sound_effects_quick(tmp_path):
    a = build("sound_effects", tmp_path / "a", quick=True, seed=0, limit=6)
    b = build("sound_effects", tmp_path / "b", quick=True, seed=0, limit=6)
    c = build("sound_effects", tmp_path / "c", quick=True, seed=1, limit=6)
    assert tree_hash(a.parent) == tree_hash(b.parent) != tree_hash(c.parent)
    items = read_manifest(a)
    caps = [i for i in items if i.task == "captioning"]
    assert len(caps) == 6 and all("GPL-2" in i.extra["license"] for i in items)
    for i in caps:  # the caption is the first line of the stamp's .txt
        txt = (Path("/usr/share/tuxpaint/stamps") / i.extra["source"]).with_suffix(".txt").read_text().splitlines()[0]
        assert txt.lower().startswith(i.answer.lower())
    assert "GPL" in (a.parent / "README.md").read_text() and (a.parent / "audio" / "LICENSE-tuxpaint-stamps").is_file()


# ---- bring your own --------------------------------------------------------------------------------------------------
def test_byo_labels_reports_bad_rows_and_splits(tmp_path, tone):
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = [("file", "label")]
    for lab, f in (("dog", 300), ("cat", 600)):
        for k in range(5):
            tone(f"clips/{lab}{k}.wav", seconds=0.1, freq=f + k)
            rows.append((f"{lab}{k}.wav", lab))
    (clips / "broken.wav").write_text("not audio")
    good = clips / "labels.csv"
    with open(good, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    m = build("byo", tmp_path / "out", csv=str(good))
    items = read_manifest(m)
    assert len(items) == 10 and all(i.options == ["cat", "dog"] for i in items)
    for lab in ("cat", "dog"):
        assert sorted(i.split for i in items if i.answer == lab) == ["test", "train", "train", "train", "val"]
    assert items[0].audio == str((clips / "dog0.wav").resolve()) and items[0].dataset == "clips"
    # bad rows: reported all at once with their CSV line numbers
    bad = clips / "bad.csv"
    with open(bad, "w", newline="") as f:
        csv.writer(f).writerows(rows + [("missing.wav", "dog"), ("cat1.wav", " "), ("broken.wav", "cat"), ("", "dog")])
    from audioflamingo_lab.manifest import ManifestError

    with pytest.raises(ManifestError) as e:
        build("byo", tmp_path / "out2", csv=str(bad))
    assert {(l, f) for l, f, _ in e.value.problems} == {(12, "file"), (13, "label"), (14, "file"), (15, "file")}
    assert f"{bad}:12: file: not found" in str(e.value) and not (tmp_path / "out2").exists()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m2 = build("byo", tmp_path / "out2", csv=str(bad), skip_bad=True)
    assert "skipped 4 bad row(s) on line(s) 12, 13, 14, 15" in str(w[0].message) and len(read_manifest(m2)) == 10
    with pytest.raises(FileExistsError):
        build("byo", tmp_path / "out2", csv=str(bad), skip_bad=True)
    hdr = clips / "hdr.csv"
    hdr.write_text("path,name\nx.wav,dog\n")
    with pytest.raises(ManifestError, match="file,label"):
        build("byo", tmp_path / "out3", csv=str(hdr))


def test_byo_captions_group_references_and_copy(tmp_path, tone):
    (tmp_path / "c").mkdir()
    for k in range(4):
        tone(f"c/{k}.wav", seconds=0.1)
    (tmp_path / "c" / "caps.csv").write_text(
        "file,caption\n0.wav,a tone\n0.wav,a beep\n1.wav,a hum\n2.wav,x\n3.wav,y\n"
    )
    m = build("byo", tmp_path / "out", csv=str(tmp_path / "c" / "caps.csv"), copy=True, dataset="mine")
    items = read_manifest(m)
    assert [(i.answer, i.references) for i in items] == [("a tone", ["a beep"]), ("a hum", []), ("x", []), ("y", [])]
    assert all(Path(i.audio).parent == (tmp_path / "out" / "audio").resolve() for i in items)
    assert sorted(i.split for i in items) == ["test", "train", "train", "val"] and {i.task for i in items} == {
        "captioning"
    }


# ---- dialogue --------------------------------------------------------------------------------------------------------
def test_dialogue_from_synthetic(tmp_path):
    src = build("synthetic", tmp_path / "syn", quick=True, n_per_class=1, n_scenes=4)
    a = build("dialogue", tmp_path / "a", source=src)
    b = build("dialogue", tmp_path / "b", source=src)
    assert a.read_bytes() == b.read_bytes()
    source = {i.id: i for i in read_manifest(src)}
    items = read_manifest(a)
    assert items and all(i.task == "dialogue" and len(i.turns) >= 2 for i in items)
    from data_recipes.synthetic import HELDOUT_CLASSES

    for d in items:
        srcs = [source[s] for s in d.extra["source_ids"]]
        assert {s.audio for s in srcs} == {d.audio} and {s.split for s in srcs} == {d.split}
        assert not any(s.answer in HELDOUT_CLASSES for s in srcs)  # unseen classes stay unheard
        answers = " ".join(t["assistant"] for t in d.turns)
        assert any(s.answer.rstrip(".") in answers for s in srcs)
    # with no source it builds the synthetic recipe inside its own folder
    c = build("dialogue", tmp_path / "c", quick=True)
    assert (tmp_path / "c" / "audio" / "synthetic" / "manifest.jsonl").is_file() and len(read_manifest(c)) > 10


# ---- the three sound classes the pretrained-encoder notebooks check against ------------------------------------------
@needs("espeak-ng")
def test_speak_without_a_voice_variant_is_the_languages_own_voice(tmp_path):
    from data_recipes.speech import speak

    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(tmp_path / "own.wav"), "hello"], check=True)
    own, sr = sf.read(tmp_path / "own.wav")
    assert sr == 22050 and np.array_equal(speak("hello", "en-us", None, 140, 50, sr), own)  # 50: espeak's own pitch
    assert not np.array_equal(speak("hello", "en-us", "f3", 140, 50, sr), own)


@needs("fluidsynth")
def test_render_plays_the_drum_kit_from_its_bank():
    from data_recipes.instruments import DRUM_KIT, render

    snare = render([(38, 100, 0.0, 0.1)], 0, 1.0, bank=DRUM_KIT)
    piano = render([(38, 100, 0.0, 0.1)], 0, 1.0)
    assert len(snare) == len(piano) == 16000 and np.abs(snare).max() > 0.05
    spectrum = lambda x: np.abs(np.fft.rfft(x[:4000]))
    flatness = lambda x: np.exp(np.log(spectrum(x) + 1e-9).mean()) / spectrum(x).mean()
    assert flatness(snare) > 3 * flatness(piano)  # a snare is noise-like, a piano note (D2) is a few harmonics


@needs("fluidsynth")
@needs("espeak-ng")
def test_sound_classes_are_three_classes_of_wav_files_made_the_same_each_time(tmp_path):
    from data_recipes.sound_classes import make_sound_classes

    a = make_sound_classes(tmp_path / "a", per_class=2, seconds=2.0)
    b = make_sound_classes(tmp_path / "b", per_class=2, seconds=2.0)
    assert list(a) == ["speech", "drums", "notes"] and all(len(paths) == 2 for paths in a.values())
    for kind in ("drums", "notes"):
        for path in a[kind]:
            x, sr = sf.read(path)
            assert sr == 44100 and len(x) == 3 * 44100 and np.abs(x).max() > 0.05  # 2 s of notes + 1 s of release
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")


# ---- many classes and the held-out spoken languages ---------------------------------------------------------------
@needs("fluidsynth")
@needs("espeak-ng")
def test_many_classes_quick_is_deterministic_and_valid(tmp_path):
    a = build("many_classes", tmp_path / "a", quick=True, seed=0)
    b = build("many_classes", tmp_path / "b", quick=True, seed=0)
    assert tree_hash(a.parent) == tree_hash(b.parent)
    items = read_manifest(a)
    sources = {it.extra["source"] for it in items}
    assert sources == {"instruments", "synthetic", "voices", "stamps"}
    assert all(it.answer in it.options and len(it.options) == 5 for it in items)
    for label in {it.answer for it in items}:  # every class has train clips to shoot from and a test clip
        splits = [it.split for it in items if it.answer == label]
        assert splits.count("train") >= 2 and "test" in splits
    assert len({hashlib.sha256(Path(it.audio).read_bytes()).hexdigest() for it in items}) == len(items)  # no copies


def test_spoken_languages_is_held_out_from_every_training_source(tmp_path):
    m = build("spoken_languages", tmp_path / "sl", quick=True, seed=0)
    items = read_manifest(m)
    from data_recipes.spoken_languages import LANGUAGES, VAL_LANGUAGES

    val = {it.answer for it in items if it.split == "val"}
    test = {it.answer for it in items if it.split == "test"}
    assert val == {LANGUAGES[c] for c in VAL_LANGUAGES} and test and not val & test  # disjoint language groups
    assert all(it.answer in it.options and set(it.options) in (val, test) for it in items)
    assert {it.split for it in items} == {"train", "val", "test"}
    used = {it.extra["source"] for it in items}
    assert all("_desc_" in s for s in used)
    from data_recipes.many_classes import stamp_sounds

    stamps = {str(ogg.relative_to(ogg.parents[len(ogg.parents) - 5])) for ogg, _ in stamp_sounds()}
    assert not used & stamps and not any("_desc" in s or "symbols/" in s for s in stamps)
    assert not {LANGUAGES[c] for c in LANGUAGES} & {"english"}
    assert len({hashlib.sha256(Path(it.audio).read_bytes()).hexdigest() for it in items}) == len(items)  # no copies


def test_spoken_languages_draws_distinct_recordings_and_shortens_a_small_language(tmp_path):
    "A recording filed under several stamps is drawn once: no query is a copy of a shot (Lithuanian: 88 files, 22)."
    from data_recipes.spoken_languages import LANGUAGES, build as build_languages

    stamps = tmp_path / "stamps"
    stamps.mkdir()
    for n, code in enumerate(LANGUAGES):
        for i in range(7 if code == "lt" else 12):
            tone = 0.3 * np.sin(np.arange(4000) * (0.01 + 0.002 * i + 0.0003 * n))
            sf.write(stamps / f"s{i}_desc_{code}.ogg", tone, 16000)
    for i in range(8):  # one Lithuanian recording under other stamp names
        (stamps / f"copy{i}_desc_lt.ogg").write_bytes((stamps / f"s{i % 3}_desc_lt.ogg").read_bytes())
    m = build_languages(tmp_path / "sl", n_pool=4, n_queries=6, root=stamps)
    items = read_manifest(m)
    assert len({hashlib.sha256(Path(it.audio).read_bytes()).hexdigest() for it in items}) == len(items)
    per = lambda lang, split: sum(it.answer == lang and it.split == split for it in items)
    assert per("lithuanian", "train") == 4 and per("lithuanian", "val") == 3  # 7 recordings: the pool, then 3 queries
    assert per("french", "train") == 4 and per("french", "test") == 6
    assert "lithuanian 4 + 3" in (tmp_path / "sl" / "README.md").read_text()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("a user's file")
    with pytest.raises(RuntimeError, match="lithuanian"):  # 7 recordings cannot give 6 pool clips and 2 queries
        build_languages(kept, n_pool=6, n_queries=6, root=stamps, overwrite=True)
    assert (kept / "mine.txt").read_text() == "a user's file"  # the failed build touched nothing
