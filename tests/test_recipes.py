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
        if p.is_file(): h.update(p.relative_to(folder).as_posix().encode()); h.update(p.read_bytes())
    return h.hexdigest()

def needs(binary):
    return pytest.mark.skipif(shutil.which(binary) is None, reason=f"needs `{binary}` (Debian package); the recipe says how to install it")

# ---- synthetic --------------------------------------------------------------------------------------------------------
def test_synthetic_quick_is_deterministic_and_valid(tmp_path):
    a = build("synthetic", tmp_path / "a", quick=True, seed=0)
    b = build("synthetic", tmp_path / "b", quick=True, seed=0)
    c = build("synthetic", tmp_path / "c", quick=True, seed=1)
    assert tree_hash(a.parent) == tree_hash(b.parent) != tree_hash(c.parent)
    items = read_manifest(a)
    from data_recipes.synthetic import CLASSES, HELDOUT_CLASSES
    seen = [c for c in CLASSES if c not in HELDOUT_CLASSES]
    by_ds = {}
    for it in items: by_ds.setdefault(it.dataset, []).append(it)
    assert set(by_ds) == {"synthetic-classification", "synthetic-unseen-classification", "synthetic-captioning", "synthetic-aqa"}
    cls = by_ds["synthetic-classification"]
    assert len(CLASSES) >= 16 and sorted({i.answer for i in cls}) == sorted(seen)
    assert all(i.options == seen and i.answer in i.options for i in cls)
    assert {i.split for i in cls} == {"train", "val", "test"}
    for label in seen:                                   # stratified: every class in every split
        assert {i.split for i in cls if i.answer == label} == {"train", "val", "test"}
    unseen = by_ds["synthetic-unseen-classification"]
    assert sorted({i.answer for i in unseen}) == sorted(HELDOUT_CLASSES)
    # held-out classes never appear in what training sees
    for it in by_ds["synthetic-captioning"] + by_ds["synthetic-aqa"]:
        assert not {e["label"] for e in it.extra["events"]} & set(HELDOUT_CLASSES)
    for it in by_ds["synthetic-aqa"]:                    # answers follow from the event list
        ev = it.extra["events"]
        if it.id.endswith("-count"): assert it.answer == ["zero", "one", "two", "three"][len(ev)]
        if it.id.endswith("-order"): assert it.answer == ev[0]["label"] and ev[0]["start"] < ev[1]["start"]
        if it.id.endswith("-present"): assert it.answer in ("yes", "no")
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
    nearest = min(np.linalg.norm(cent[a] - cent[b]) for a in CLASSES for b in CLASSES if a < b and {a, b} != {"rising tone", "falling tone"})
    assert nearest > 0.5 * within, (nearest, within)

def test_synthetic_options_and_refusals(tmp_path):
    m = build("synthetic", tmp_path / "s", quick=True, classes=["whistle", "knock", "bell"], heldout_classes=["bell"], n_scenes=3)
    items = read_manifest(m)
    assert {i.answer for i in items if i.dataset == "synthetic-classification"} == {"whistle", "knock"}
    assert len({i.audio for i in items if i.task != "classification"}) == 3
    with pytest.raises(FileExistsError, match="overwrite=True"): build("synthetic", tmp_path / "s", quick=True)
    (tmp_path / "s" / "mine.txt").write_text("user data")
    build("synthetic", tmp_path / "s", quick=True, overwrite=True, n_scenes=1)
    assert (tmp_path / "s" / "mine.txt").read_text() == "user data"          # overwrite removes only recipe files
    with pytest.raises(ValueError, match="unknown synthetic classes"): build("synthetic", tmp_path / "t", classes=["dog"])
    with pytest.raises(ValueError, match="unknown recipe"): build("nope", tmp_path / "u")
    assert set(data_recipes.RECIPES) == {"synthetic", "instruments", "speech", "sound_effects", "byo", "dialogue"}

def test_synthetic_command_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "data_recipes.synthetic", "--out", str(tmp_path / "cli"), "--quick",
                        "--seed", "3", "--n-scenes", "2", "--n-per-class", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]) == tmp_path / "cli" / "manifest.jsonl"
    assert len(read_manifest(tmp_path / "cli" / "manifest.jsonl")) > 20
