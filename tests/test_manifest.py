import json, warnings
import pytest
from audioflamingo_lab.core import Item
from audioflamingo_lab.manifest import ManifestError, read_manifest, write_manifest, manifest_hash, check_record


def rec(**kw):
    r = {
        "id": "a",
        "audio": "a.wav",
        "task": "captioning",
        "prompt": "describe",
        "answer": "a dog barks",
        "split": "train",
        "dataset": "d",
    }
    r.update(kw)
    return {k: v for k, v in r.items() if v is not ...}


def write_lines(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


@pytest.fixture
def folder(tmp_path, tone):
    (tmp_path / "clips").mkdir()
    for n in ("a", "b", "c"):
        tone(f"clips/{n}.wav", seconds=0.1)
    return tmp_path


def test_every_bad_line_is_reported_with_line_and_field(folder):
    lines = [
        rec(id="ok", audio="clips/a.wav"),  # 1 good
        "",  # 2 blank: ignored
        '{"id": "x", "audio": ',  # 3 bad json
        rec(id="m", audio="clips/b.wav", answer=...),  # 4 missing answer
        rec(id="s", audio="clips/b.wav", split="dev"),  # 5 unknown split
        rec(id="ok", audio="clips/c.wav"),  # 6 duplicate id
        rec(id="f", audio="clips/nothere.wav"),  # 7 missing audio
        rec(id="d", audio="clips/a.wav", task="dialogue", answer=""),  # 8 dialogue without turns
        rec(id="e", audio="clips/a.wav", answer="  "),  # 9 empty answer
        rec(id="o", audio="clips/a.wav", options="dog"),  # 10 options not a list
        rec(id="t", audio="clips/a.wav", audio_duration=-1),  # 11 bad duration
        rec(id=7, audio="clips/a.wav"),  # 12 id not a string
        "[1, 2]",  # 13 not an object
        rec(
            id="g",
            audio="clips/b.wav",
            task="dialogue",
            answer=...,
            prompt=...,
            turns=[{"user": "hi", "assistant": "yo"}],
        ),  # 14 good
        rec(id="tt", audio="clips/a.wav", task="dialogue", turns=[{"user": "hi"}]),  # 15 bad turn
    ]
    path = write_lines(folder / "m.jsonl", lines)
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    got = {(ln, fld) for ln, fld, _ in e.value.problems}
    assert got == {
        (3, "(json)"),
        (4, "answer"),
        (5, "split"),
        (6, "id"),
        (7, "audio"),
        (8, "turns"),
        (9, "answer"),
        (10, "options"),
        (11, "audio_duration"),
        (12, "id"),
        (13, "(line)"),
        (15, "turns[0]"),
    }
    msg = str(e.value)
    assert f"{path}: 12 bad lines" in msg and f"{path}:6: id: duplicate id 'ok' (first on line 1)" in msg
    assert f"{path}:5: split: unknown split 'dev'" in msg and "nothere.wav" in msg

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        items = read_manifest(path, skip_bad=True)
    assert [i.id for i in items] == ["ok", "g"]
    assert len(w) == 1 and "skipped 12 bad line(s): 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15" in str(w[0].message)
    assert str(path) in str(w[0].message)


def test_audio_check_can_be_turned_off_and_paths_resolve(folder):
    (folder / "sub").mkdir()
    path = write_lines(
        folder / "sub" / "m.jsonl",
        [rec(id="a", audio="../clips/a.wav"), rec(id="b", audio="../clips/zz.wav", extra_field=[1])],
    )
    with pytest.raises(ManifestError):
        read_manifest(path)
    items = read_manifest(path, check_audio=False)
    assert items[0].audio == str((folder / "clips" / "a.wav").resolve())
    assert items[1].extra == {"extra_field": [1]}


def test_round_trip_and_split_filter(folder, tmp_path):
    items = [
        Item(
            "a",
            str(folder / "clips/a.wav"),
            task="classification",
            prompt="what?",
            answer="tone",
            options=["tone", "noise"],
            split="train",
            dataset="toy",
            audio_start=0.0,
            audio_duration=0.05,
            references=["a tone"],
            extra={"k": {"x": 1}},
        ),
        Item(
            "b", str(folder / "clips/b.wav"), task="aqa", prompt="is it loud?", answer="no", split="test", dataset="toy"
        ),
        Item("c", None, task="dialogue", split="val", dataset="toy", turns=[{"user": "u", "assistant": "a"}]),
    ]
    path = write_manifest(items, folder / "out" / "manifest.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["audio"] == "../clips/a.wav" and first["k"] == {"x": 1} and first["audio_start"] == 0.0
    assert read_manifest(path) == items
    assert [i.id for i in read_manifest(path, split=["test", "val"])] == ["b", "c"]
    with pytest.raises(ValueError, match="unknown split"):
        read_manifest(path, split="dev")
    h = manifest_hash(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_manifest(items[:1], path)
    assert manifest_hash(path) == h  # untouched
    write_manifest(items[:1], path, overwrite=True)
    assert manifest_hash(path) != h and len(read_manifest(path)) == 1


def test_write_refuses_bad_items(tmp_path):
    items = [
        Item("a", None, answer="x", dataset="d"),
        Item("a", None, answer="", dataset="d"),
        Item("b", None, split="dev", answer="y"),
    ]
    with pytest.raises(ManifestError) as e:
        write_manifest(items, tmp_path / "m.jsonl")
    assert {(n, f) for n, f, _ in e.value.problems} == {(2, "answer"), (2, "id"), (3, "split")}
    assert not (tmp_path / "m.jsonl").exists()


def test_check_record_accepts_text_only_and_unknown_task():
    assert check_record(rec(audio=None, task="music_qa")) == []
