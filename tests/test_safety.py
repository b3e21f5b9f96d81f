"Issue 15: never lose a user's file, never run a checkpoint's code, never score or train on garbage silently."

import json, os, warnings
from pathlib import Path
import numpy as np, pytest, soundfile as sf, torch
from audioflamingo_lab.core import Item, Episode

HOSTILE = "is it <audio> or </s> or <SEP> then <|endofchunk|> <s> <pad>?"


@pytest.fixture(scope="module")
def tiny():
    from audioflamingo_lab.flamingo import build_model

    torch.manual_seed(0)
    return build_model("tiny").eval()


def _specials(ids, tokenizer):
    return [t for t in ids if t in set(tokenizer.all_special_ids)]


# -- user text never becomes a control token ---------------------------------------------------------------------------
def test_manifest_text_never_becomes_special_tokens(tmp_path, tiny):
    from audioflamingo_lab.manifest import read_manifest
    from audioflamingo_lab.template import render, token_ids

    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32) + 0.1, 16000)
    rec = dict(id="x", audio="a.wav", task="aqa", split="train", dataset="d", prompt=HOSTILE, answer=HOSTILE)
    (tmp_path / "m.jsonl").write_text(json.dumps(rec) + "\n")
    (item,) = read_manifest(tmp_path / "m.jsonl")
    r = render(item, tiny.tokenizer)
    ids = token_ids(tiny.tokenizer)
    assert (
        r.input_ids.count(ids["audio"]) == 1
        and r.input_ids.count(ids["sep"]) == 1
        and r.input_ids.count(ids["eoc"]) == 1
    )
    assert r.input_ids.count(ids["eos"]) == 1 and r.input_ids.count(ids["bos"]) == 1  # only the template's own
    assert HOSTILE.lower() in tiny.tokenizer.decode(r.input_ids)  # the text survives as text


def test_chat_question_never_becomes_special_tokens(tiny):
    from audioflamingo_lab.chat import ChatSession
    from audioflamingo_lab.template import token_ids

    s = ChatSession(tiny, audio=None, max_new_tokens=2)
    p = s.prompt(HOSTILE)
    assert token_ids(tiny.tokenizer)["audio"] not in p.input_ids  # no phantom audio slot
    s.ask(HOSTILE)  # and the turn runs
    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 2).astype(np.float32)
    s = ChatSession(tiny, audio=wave, max_new_tokens=2)
    s.ask(HOSTILE)  # was "row 0 has 2 <audio> tokens"
    assert len(s.turns) == 1


def test_generate_text_and_widgets_never_see_special_tokens(tiny):
    from audioflamingo_lab.attention_explorer import episodes_batch
    from audioflamingo_lab.template import token_ids
    from audioflamingo_lab.inference import generate_text

    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 2).astype(np.float32)
    generate_text(tiny, HOSTILE, audio=wave, max_new_tokens=2)  # was: 2 <audio> tokens for 1 audio
    generate_text(tiny, HOSTILE, max_new_tokens=2)
    ep = Episode(query=Item(id="q", audio=None, prompt=HOSTILE, answer=HOSTILE))
    batch = episodes_batch(tiny, [ep])
    assert (batch["input_ids"] == token_ids(tiny.tokenizer)["audio"]).sum() == 0


# -- manifests: encodings, duplicate keys, huge error lists ------------------------------------------------------------
def _rec(i, **kw):
    return {
        "id": f"i{i}",
        "audio": None,
        "task": "aqa",
        "split": "train",
        "dataset": "d",
        "prompt": "p",
        "answer": "a",
        **kw,
    }


def test_manifest_utf8_bom_is_accepted(tmp_path):
    from audioflamingo_lab.manifest import read_manifest

    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + (json.dumps(_rec(0)) + "\n" + json.dumps(_rec(1)) + "\n").encode())
    assert [it.id for it in read_manifest(p)] == ["i0", "i1"]


def test_manifest_invalid_utf8_names_file_and_line(tmp_path):
    from audioflamingo_lab.manifest import read_manifest, ManifestError

    p = tmp_path / "latin1.jsonl"
    p.write_bytes(
        (json.dumps(_rec(0)) + "\n").encode()
        + json.dumps(_rec(1, answer="café"), ensure_ascii=False).encode("latin-1")
        + b"\n"
    )
    with pytest.raises(ManifestError) as e:
        read_manifest(p)
    assert f"{p}:2: (encoding): not valid UTF-8" in str(e.value)


def test_manifest_utf16_is_refused_by_name(tmp_path):
    from audioflamingo_lab.manifest import read_manifest

    p = tmp_path / "u16.jsonl"
    p.write_bytes((json.dumps(_rec(0)) + "\n").encode("utf-16"))
    with pytest.raises(ValueError, match=f"{p}: the manifest is UTF-16 encoded"):
        read_manifest(p)


def test_manifest_duplicate_json_key_names_line(tmp_path):
    from audioflamingo_lab.manifest import read_manifest, ManifestError

    p = tmp_path / "dup.jsonl"
    p.write_text(json.dumps(_rec(0)) + "\n" + json.dumps(_rec(1))[:-1] + ', "answer": "other"}\n')
    with pytest.raises(ManifestError, match=f"{p}:2: answer: key given twice"):
        read_manifest(p)


def test_manifest_huge_error_list_is_capped(tmp_path):
    from audioflamingo_lab.manifest import read_manifest, ManifestError

    p = tmp_path / "bad.jsonl"
    p.write_text("not json\n" * 100_000)
    with pytest.raises(ManifestError) as e:
        read_manifest(p)
    msg = str(e.value)
    assert len(msg) < 20_000 and len(e.value.problems) == 100_000
    assert f"{p}:1: (json)" in msg and "and 99950 more problem(s) on 99950 more line(s)" in msg
    with pytest.warns(UserWarning) as w:
        read_manifest(p, skip_bad=True)
    assert len(str(w[0].message)) < 2_000


# -- audio: truncated files, near-silence, long files ------------------------------------------------------------------
def test_truncated_wav_warns(tmp_path):
    from audioflamingo_lab.audio import load_audio

    sf.write(tmp_path / "full.wav", np.random.default_rng(0).normal(0, 0.1, 16000 * 3), 16000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes(
        (tmp_path / "full.wav").read_bytes()[: 44 + 16000 * 2]
    )  # header says 3 s, 1 s left
    with pytest.warns(UserWarning, match=r"cut.wav: truncated file: the header promises 3.00 s, only 1.00 s"):
        x = load_audio(tmp_path / "cut.wav", 16000)
    assert len(x) == 16000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(tmp_path / "full.wav", 16000)  # a whole file does not warn


def test_near_silence_is_not_normalised_to_full_scale(tmp_path):
    from audioflamingo_lab.audio import load_audio

    dither = np.random.default_rng(0).integers(-1, 2, 16000) / 32768  # ±1 LSB of 16-bit dither
    sf.write(tmp_path / "dither.wav", dither, 16000, subtype="PCM_16")
    assert np.abs(load_audio(tmp_path / "dither.wav", 16000)).max() < 0.02  # was 1.0: full-scale noise
    tone = 0.01 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)  # a quiet (-40 dBFS) tone is still scaled
    sf.write(tmp_path / "quiet.wav", tone, 16000, subtype="FLOAT")
    assert abs(np.abs(load_audio(tmp_path / "quiet.wav", 16000)).max() - 1) < 1e-3
    sf.write(tmp_path / "zero.wav", np.zeros(1600), 16000)
    assert (load_audio(tmp_path / "zero.wav", 16000) == 0).all()


def test_long_audio_decodes_only_the_windows(tmp_path):
    "A 10-minute 48 kHz stereo file: encoding it reads only the 33.25 s the 16 windows keep."
    import tracemalloc
    from audioflamingo_lab.audio import load_windows, load_audio, sliding_windows

    sr, secs = 48000, 600
    with sf.SoundFile(tmp_path / "long.wav", "w", sr, 2, subtype="PCM_16") as f:
        for k in range(secs // 60):
            t = np.arange(60 * sr) / sr + 60 * k
            f.write(np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)], 1))
    tracemalloc.start()
    with pytest.warns(
        UserWarning, match=r"600.00 s is longer than the 33.25 s that 16 windows cover; dropping the last 566.75 s"
    ):
        w, m = load_windows(tmp_path / "long.wav", 16000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full = 600 * 48000 * 2 * 4  # 230 MB of float32 if decoded in full
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB for 33 s of audio"
    assert w.shape == (16, 7 * 16000) and m.all() and full > 3 * peak
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sliding_windows(load_audio(tmp_path / "long.wav", 16000, duration=40.0), 16000)[0]
    assert torch.allclose(w[:, :-200], ref[:, :-200], atol=1e-4)  # the same windows (resampling edge aside)


def test_encoder_reads_only_the_windows(tmp_path, monkeypatch):
    from audioflamingo_lab import audio
    from audioflamingo_lab.encoders import build_encoder

    sf.write(tmp_path / "long.wav", np.random.default_rng(0).normal(0, 0.1, 16000 * 120), 16000)
    seen = []
    real = audio.load_audio
    monkeypatch.setattr(audio, "load_audio", lambda *a, **k: seen.append(k.get("max_seconds")) or real(*a, **k))
    with pytest.warns(UserWarning, match="dropping the last"):
        emb, mask = build_encoder("mel").encode_file(tmp_path / "long.wav", max_windows=4)
    assert seen == [pytest.approx(7 + 3 * 1.75)] and mask.all() and emb.shape[0] == 4


# -- embedding cache: content hash and finiteness ----------------------------------------------------------------------
def _corrupt_entry(cache, path, change):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    entry = cache.entry(path)
    with safe_open(str(entry), "pt") as f:
        meta = f.metadata()
    d = load_file(str(entry))
    change(d["emb"])
    save_file(d, str(entry), metadata=meta)
    return entry


@pytest.mark.parametrize(
    "change",
    [lambda e: e.__setitem__((0, 0), float("nan")), lambda e: e.__setitem__((1, 3), e[1, 3] * 1.5 + 0.25)],
    ids=["nan", "flipped"],
)
def test_cache_entry_with_nan_or_corrupted_floats_is_recomputed(tmp_path, change):
    from audioflamingo_lab.encoders import build_encoder, EmbeddingCache

    sf.write(tmp_path / "a.wav", np.random.default_rng(0).normal(0, 0.1, 16000 * 9), 16000)
    cache = EmbeddingCache(tmp_path / "cache", build_encoder("mel"))
    good, _ = cache.get(tmp_path / "a.wav")
    _corrupt_entry(cache, tmp_path / "a.wav", change)
    with pytest.warns(UserWarning, match=r"corrupt cache entry .* \((NaN|content hash mismatch)"):
        again, _ = cache.get(tmp_path / "a.wav")
    assert torch.equal(again, good) and cache.encoder_calls == 2


# -- run folders: never delete or overwrite what a run did not write ---------------------------------------------------
def test_overwrite_deletes_only_what_the_run_wrote(tmp_path):
    from audioflamingo_lab.run_folder import prepare_run_dir, folder_lock

    run, _ = prepare_run_dir(tmp_path / "run", config={"seed": 0})
    for d in ("checkpoints", "gates", "logs"):
        (run / d).mkdir()
    (run / "checkpoints/last.ckpt").write_bytes(b"c")
    (run / "model.safetensors").write_bytes(b"m")
    (run / "my-notes.txt").write_text("precious")
    (run / "my-data").mkdir()
    (run / "my-data/clip.wav").write_bytes(b"w")
    with folder_lock(run), pytest.raises(FileExistsError, match=r"holds files no run wrote \(my-data, my-notes.txt\)"):
        prepare_run_dir(run, overwrite=True, config={"seed": 0})
    assert (run / "my-notes.txt").read_text() == "precious" and (run / "my-data/clip.wav").exists()
    assert (run / "model.safetensors").exists()  # nothing was deleted
    (run / "my-notes.txt").unlink()
    import shutil

    shutil.rmtree(run / "my-data")
    with folder_lock(run):
        assert prepare_run_dir(run, overwrite=True, config={"seed": 1}) == (run, None)
    assert sorted(p.name for p in run.iterdir()) == [".afl-run.json", "config.yaml"]


def test_a_users_folder_is_not_a_run(tmp_path):
    from audioflamingo_lab.run_folder import prepare_run_dir

    (tmp_path / "config.yaml").write_text("my: own config\n")
    with pytest.raises(FileExistsError, match=r"is not empty and is not an afl run folder \(it holds config.yaml\)"):
        prepare_run_dir(tmp_path, config={"seed": 0})
    assert (tmp_path / "config.yaml").read_text() == "my: own config\n" and sorted(os.listdir(tmp_path)) == [
        "config.yaml"
    ]


def test_a_run_of_an_older_version_is_still_a_run(tmp_path):
    import yaml
    from audioflamingo_lab.run_folder import prepare_run_dir, run_files

    config = {"model": {}, "data": {}, "optim": {}, "trainer": {}, "seed": 0}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"step": 1}, tmp_path / "checkpoints/last.ckpt")
    assert run_files(tmp_path) is not None
    assert prepare_run_dir(tmp_path, config=config)[1] == tmp_path / "checkpoints/last.ckpt"


def test_lock_being_written_is_not_taken(tmp_path):
    "An empty lock file is its holder between create and write: a second process must not take it as stale."
    from audioflamingo_lab.run_folder import folder_lock, LOCK

    (tmp_path / LOCK).write_text("")
    with pytest.raises(RuntimeError, match="in use by another afl process"):
        with folder_lock(tmp_path):
            pass
    assert (tmp_path / LOCK).exists()
    os.utime(tmp_path / LOCK, (0, 0))  # empty for ages: its writer died
    with folder_lock(tmp_path):
        assert (tmp_path / LOCK).read_text() == str(os.getpid())


def test_lock_appears_with_its_owner(tmp_path, monkeypatch):
    "The lock file never exists empty: it is linked into place after the pid is written."
    from audioflamingo_lab import run_folder

    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append(Path(src).read_text())
        real_link(src, dst)
        seen.append(Path(dst).read_text())

    monkeypatch.setattr(run_folder.os, "link", link)
    with run_folder.folder_lock(tmp_path):
        pass
    assert seen == [str(os.getpid())] * 2


# -- checkpoints: never run their code, never trust their numbers ------------------------------------------------------
def _tiny_ckpt(tmp_path, name="c.safetensors", **kw):
    from audioflamingo_lab.flamingo import build_model
    from audioflamingo_lab.training import configure_trainable
    from audioflamingo_lab.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = configure_trainable(build_model("tiny", encoder=None), "pretrain")
    return model, save_checkpoint(model, tmp_path / name, **kw)


def _rewrite_meta(path, out, change_meta=None, change_tensors=None):
    from safetensors import safe_open
    from safetensors.torch import save_file, load_file

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    if change_meta:
        change_meta(meta)
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, str(out), metadata=meta)
    return out


def _set_config(**fields):
    def change(meta):
        c = json.loads(meta["config"])
        for k, v in fields.items():
            if "." in k:
                c[k.split(".")[0]][k.split(".")[1]] = v
            else:
                c[k] = v
        meta["config"] = json.dumps(c)

    return change


def test_checkpoint_naming_a_local_folder_with_code_is_refused(tmp_path, monkeypatch):
    "A local tokenizer/LM folder with custom code: never built, never asked about, never run."
    from audioflamingo_lab.checkpoint import load_checkpoint

    evil = tmp_path / "evil_lm"
    evil.mkdir()
    sentinel = tmp_path / "ran.txt"
    (evil / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil",
                "auto_map": {
                    "AutoConfig": "code.EvilConfig",
                    "AutoModelForCausalLM": "code.Evil",
                    "AutoTokenizer": ["code.Tok", None],
                },
            }
        )
    )
    (evil / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["code.Tok", None]}}))
    (evil / "code.py").write_text(f"open({str(sentinel)!r}, 'w').write('ran')\n")
    _, path = _tiny_ckpt(tmp_path)
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("loading a checkpoint asked whether to run code"))
    for field in ("tokenizer", "lm_name"):
        bad = _rewrite_meta(path, tmp_path / f"{field}.safetensors", _set_config(**{field: str(evil)}))
        with pytest.raises(
            ValueError, match=rf"{bad}: metadata: config field {field} = .* (names a local folder|is not a preset)"
        ):
            load_checkpoint(bad)
    monkeypatch.chdir(tmp_path)  # a relative name that is a local folder
    bad = _rewrite_meta(path, tmp_path / "rel.safetensors", _set_config(tokenizer="evil_lm"))
    with pytest.raises(ValueError, match="names a local folder"):
        load_checkpoint(bad)
    assert not sentinel.exists()


def test_checkpoint_naming_a_hub_repo_with_code_is_refused(tmp_path, monkeypatch):
    from audioflamingo_lab.checkpoint import load_checkpoint

    hub = tmp_path / "hub"
    snap = hub / "models--someone--codey" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (hub / "models--someone--codey" / "refs").mkdir()
    (hub / "models--someone--codey" / "refs" / "main").write_text("0" * 40)
    (snap / "config.json").write_text(json.dumps({"auto_map": {"AutoModelForCausalLM": "m.M"}}))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_CACHE", str(hub))
    _, path = _tiny_ckpt(tmp_path)
    bad = _rewrite_meta(path, tmp_path / "hub.safetensors", _set_config(lm_name="someone/codey"))
    with pytest.raises(ValueError, match=r"config field lm_name = 'someone/codey' carries custom code"):
        load_checkpoint(bad)


@pytest.mark.parametrize(
    "field,value",
    [
        ("lm_config.hidden_size", 65536),
        ("lm_config.num_hidden_layers", 10_000),
        ("media_dim", 10**9),
        ("audio_ffn", -1),
        ("xattn_heads", "8"),
        ("lm_config.vocab_size", 900_000),
    ],
)
def test_checkpoint_sizes_are_bounded_before_allocating(tmp_path, monkeypatch, field, value):
    from audioflamingo_lab import training, checkpoint

    _, path = _tiny_ckpt(tmp_path)
    bad = _rewrite_meta(path, tmp_path / "big.safetensors", _set_config(**{field: value}))
    if field == "lm_config.vocab_size":  # in bounds alone; too big together
        bad = _rewrite_meta(bad, bad, _set_config(**{"lm_config.hidden_size": 8192, "lm_config.num_hidden_layers": 64}))
    monkeypatch.setattr(checkpoint, "_build", lambda c: pytest.fail("built a model from a tampered config"))
    with pytest.raises(ValueError, match=rf"{bad}: metadata: config field {field.split('.')[0]}"):
        checkpoint.load_checkpoint(bad)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("config", "{not json", "metadata field config is not valid JSON"),
        ("trainable", "[]", "metadata field trainable must be a JSON dict"),
        ("extra", None, "metadata field extra is missing"),
        ("full", "yes", "metadata field full = 'yes'"),
    ],
)
def test_bad_checkpoint_metadata_names_file_and_field(tmp_path, key, value, message):
    from audioflamingo_lab.checkpoint import load_checkpoint

    _, path = _tiny_ckpt(tmp_path)

    def change(meta):
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value

    bad = _rewrite_meta(path, tmp_path / "meta.safetensors", change)
    with pytest.raises(ValueError, match=rf"{bad}: {message}"):
        load_checkpoint(bad)


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    from audioflamingo_lab.checkpoint import load_checkpoint, tensors_hash

    _, path = _tiny_ckpt(tmp_path)

    def nan(t):
        t["audio_layers.layers.layers.0.linear1.weight"][0, 0] = float("nan")

    bad = _rewrite_meta(path, tmp_path / "nan.safetensors", change_tensors=nan)
    with pytest.raises(
        ValueError, match=r"nan.safetensors: tensor audio_layers.layers.layers.0.linear1.weight holds 1 NaN/inf"
    ):
        load_checkpoint(bad)
    no_hash = _rewrite_meta(bad, tmp_path / "nan2.safetensors", change_meta=lambda m: m.pop("sha256"))  # an older file
    with pytest.raises(ValueError, match=r"holds 1 NaN/inf"):
        load_checkpoint(no_hash)


def test_checkpoint_with_corrupted_floats_is_refused(tmp_path):
    from audioflamingo_lab.checkpoint import load_checkpoint

    _, path = _tiny_ckpt(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x40  # one flipped bit in the last tensor's bytes
    (tmp_path / "flip.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"flip.safetensors: the tensors do not match the checkpoint's content hash"):
        load_checkpoint(tmp_path / "flip.safetensors")
    load_checkpoint(path)  # the intact file loads


def test_a_different_lm_is_refused_by_name(tmp_path, monkeypatch):
    "A checkpoint whose LM is rebuilt (not stored) must meet the same LM it was trained on."
    import dataclasses
    from audioflamingo_lab import training, checkpoint
    from audioflamingo_lab.flamingo import build_model

    torch.manual_seed(0)
    model = training.configure_trainable(build_model("tiny", encoder=None), "pretrain")
    model.config = dataclasses.replace(model.config, lm_name="someone/the-lm")  # as if it came from the hub
    path = checkpoint.save_checkpoint(model, tmp_path / "rebuilt.safetensors")
    assert not checkpoint.checkpoint_info(path)["full"] and checkpoint.checkpoint_info(path)["lm_fingerprint"]

    def rebuild(seed):
        def build(config):
            torch.manual_seed(seed)
            m = build_model("tiny", encoder=None)
            m.config = dataclasses.replace(m.config, lm_name="someone/the-lm")
            return m

        return build

    monkeypatch.setattr(checkpoint, "_build", rebuild(0))
    checkpoint.load_checkpoint(path)  # the same LM: loads
    monkeypatch.setattr(checkpoint, "_build", rebuild(1))  # the hub repo changed under that name
    with pytest.raises(ValueError, match=r"trained on the LM 'someone/the-lm' \(fingerprint \w+\), but the LM built"):
        checkpoint.load_checkpoint(path)


# -- a full disk while writing last.ckpt -------------------------------------------------------------------------------
def _full_disk(monkeypatch):
    "Fault injection: every write of checkpoint bytes to disk stops half-way with ENOSPC (a copy across file systems"
    "like Lightning's temp-file move, or a direct torch.save into a file)."
    import errno, shutil

    def move(src, dst):  # what a cross-device move does: copy, then run out of space
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    real_save = torch.save

    def save(obj, f, *a, **k):
        import io

        if isinstance(f, io.BufferedWriter):  # a real file (not Lightning's in-memory buffer)
            buf = io.BytesIO()
            real_save(obj, buf, *a, **k)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(shutil, "move", move)
    monkeypatch.setattr(torch, "save", save)


def test_full_disk_during_last_ckpt_keeps_the_good_one(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from audioflamingo_lab.checkpoint import AtomicCheckpointIO

    good, new = {"step": 4, "w": torch.arange(1000.0)}, {"step": 8, "w": torch.arange(2000.0)}
    for name, io in (("lightning", TorchCheckpointIO()), ("atomic", AtomicCheckpointIO())):
        last = tmp_path / name / "last.ckpt"
        io.save_checkpoint(good, last)
        with monkeypatch.context() as m:
            _full_disk(m)
            with pytest.raises(OSError):
                io.save_checkpoint(new, last)
        readable = True
        try:
            torch.load(last, weights_only=True)
        except Exception:
            readable = False
        if name == "lightning":
            assert not readable  # the bug this guards against: half a last.ckpt
        else:
            assert readable and torch.load(last, weights_only=True)["step"] == 4
            assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temp file left behind
    io = AtomicCheckpointIO()
    io.save_checkpoint(new, last)
    assert (
        torch.load(last, weights_only=True)["step"] == 8
        and torch.load(last.with_name("last.ckpt.prev"), weights_only=True)["step"] == 4
    )


def test_last_ckpt_exists_at_every_instant_of_a_save(tmp_path, monkeypatch):
    "The previous version is kept through a hard link first: a kill between two renames cannot lose last.ckpt."
    from audioflamingo_lab.checkpoint import AtomicCheckpointIO

    last, io = tmp_path / "last.ckpt", AtomicCheckpointIO()
    io.save_checkpoint({"step": 4}, last)
    real_replace, seen = os.replace, []

    def replace(src, dst):
        seen.append(last.exists())
        real_replace(src, dst)
        seen.append(last.exists())

    monkeypatch.setattr(os, "replace", replace)
    io.save_checkpoint({"step": 8}, last)
    assert len(seen) == 4 and all(seen)  # two renames, last.ckpt there before and after each
    assert torch.load(last, weights_only=True)["step"] == 8
    assert torch.load(last.with_name("last.ckpt.prev"), weights_only=True)["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.prev"]  # no link or temp file left


def test_unreadable_last_ckpt_resumes_from_the_previous_good_one(tmp_path):
    from audioflamingo_lab.run_folder import prepare_run_dir

    run, _ = prepare_run_dir(tmp_path / "run", config={"seed": 0})
    (run / "checkpoints").mkdir()
    torch.save({"step": 4}, run / "checkpoints/last.ckpt.prev")
    torch.save({"step": 8, "w": torch.zeros(1000)}, run / "checkpoints/last.ckpt")
    data = (run / "checkpoints/last.ckpt").read_bytes()
    (run / "checkpoints/last.ckpt").write_bytes(data[: len(data) // 2])  # a disk-full leftover
    with pytest.warns(
        UserWarning,
        match=r"last.ckpt unreadable \(truncated: disk full during the write\?\); resuming from .*last.ckpt.prev",
    ):
        _, resume = prepare_run_dir(run, config={"seed": 0})
    assert resume == run / "checkpoints/last.ckpt.prev"
    (run / "checkpoints/last.ckpt.prev").unlink()
    with pytest.warns(UserWarning, match="no earlier good checkpoint: starting from step 0"):
        assert prepare_run_dir(run, config={"seed": 0})[1] is None


# -- training data: an empty split is refused; kill -> resume sees the same batches ------------------------------------
def _dm(tokenizer, train, batch_size=2, dim=128):
    from audioflamingo_lab.datamodule import AudioFlamingoDataModule
    from audioflamingo_lab.core import stable_seed

    class Embeddings:  # a stand-in for EmbeddingCache: fixed vectors per file
        def get(self, path, start=None, duration=None):
            g = torch.Generator().manual_seed(stable_seed("emb", path) % 2**31)
            return torch.randn(2, dim, generator=g), torch.ones(2, dtype=torch.bool)

    return AudioFlamingoDataModule(train=train, tokenizer=tokenizer, cache=Embeddings(), batch_size=batch_size, seed=3)


def _items(n, split="train"):
    words = ["a dog barks.", "rain falls.", "a bell rings.", "birds chirp.", "a car passes.", "people clap."]
    return [
        Item(id=f"{split}{i}", audio=f"/clips/{i}.wav", split=split, prompt="Describe the sound.", answer=words[i % 6])
        for i in range(n)
    ]


def test_empty_train_split_is_refused_naming_the_file(tmp_path, tiny):
    from audioflamingo_lab.manifest import write_manifest

    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"empty.jsonl: the train split is empty"):
        _dm(tiny.tokenizer, {str(tmp_path / "empty.jsonl"): 1.0}).setup("fit")
    only_val = write_manifest([Item(id="v", audio=None, split="val", prompt="p", answer="a")], tmp_path / "val.jsonl")
    with pytest.raises(ValueError, match=r"val.jsonl: the train split is empty"):
        _dm(tiny.tokenizer, {str(only_val): 1.0}).setup("fit")


def test_afl_train_on_an_empty_manifest_fails_and_writes_no_model(tmp_path):
    from audioflamingo_lab.run import train
    from audioflamingo_lab.run_config import DataSection, TrainerSection

    (tmp_path / "empty.jsonl").write_text("")
    data = DataSection(train={str(tmp_path / "empty.jsonl"): 1.0}, cache=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="empty.jsonl: the train split is empty"):
        train(
            out=str(tmp_path / "run"),
            data=data,
            trainer=TrainerSection(max_steps=2, accelerator="cpu", enable_progress_bar=False),
        )
    assert not (tmp_path / "run/model.safetensors").exists()


def _fit(tmp_path, name, max_steps, init_seed, callbacks=(), ckpt_path=None, every=None):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from audioflamingo_lab.core import seed_everything
    from audioflamingo_lab.flamingo import build_model
    from audioflamingo_lab.training import FlamingoModule
    from audioflamingo_lab.checkpoint import AtomicCheckpointIO

    seed_everything(init_seed)
    module = FlamingoModule(model=build_model("tiny", encoder=None), mode="pretrain", lr=3e-3)
    dm = _dm(module.model.tokenizer, [(_items(10), 1.0)])
    cbs = list(callbacks)
    if every:
        cbs.append(ModelCheckpoint(dirpath=tmp_path / name, save_last=True, every_n_train_steps=every, save_top_k=0))
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path / name,
        enable_checkpointing=bool(every),
        callbacks=cbs,
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, dm, ckpt_path=ckpt_path)
    return module, trainer


def test_kill_then_resume_equals_the_uninterrupted_run(tmp_path):
    "10 items, batch 2: 5 batches an epoch; killed after step 3 (mid-epoch), resumed to step 7 (into epoch 2)."
    from audioflamingo_lab.datamodule import SamplerCheckpoint

    straight, _ = _fit(tmp_path, "straight", 7, 1, [SamplerCheckpoint()])
    _fit(tmp_path, "killed", 3, 1, [SamplerCheckpoint()], every=3)
    last = tmp_path / "killed/last.ckpt"
    assert torch.load(last, weights_only=False)["callbacks"]["SamplerCheckpoint"] == {"epoch": 0, "consumed": 6}
    resumed, t = _fit(tmp_path, "resumed", 7, 5, [SamplerCheckpoint()], ckpt_path=last)  # another init: the ckpt wins
    assert t.global_step == 7
    for (n, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n
    restarted, _ = _fit(tmp_path, "restarted", 7, 5, [], ckpt_path=last)  # the old behaviour: data restarts
    assert any(not torch.allclose(p, q, atol=1e-6) for p, q in zip(straight.parameters(), restarted.parameters()))


def test_resumed_sampler_gives_each_ddp_rank_its_remaining_indices():
    "Under DDP Lightning wraps the sampler (rank r takes positions r, r+2, ...): a resume must keep that partition."
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from audioflamingo_lab.datamodule import BlendSampler

    def rank_order(sampler, rank):
        return list(DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False))

    full = {r: rank_order(BlendSampler([10, 7], [1.0, 2.0], seed=4), r) for r in (0, 1)}
    for r in (0, 1):
        s = BlendSampler([10, 7], [1.0, 2.0], seed=4)
        s.resume_at(0, 3 * 2 * 2)  # 3 batches of 2 on each of 2 ranks were trained
        assert rank_order(s, r)[: len(full[r]) - 6] == full[r][6:]  # each rank continues where it stopped
