"""Pretrained weights from pip packages: cache, SmolLM2 (+ the small Flamingo at gate 0), aiSFX (aisfx_encoder), the
CTranslate2 reader and Whisper (whisper_tiny)."""

import difflib, json, struct
import numpy as np, pytest, torch
import torch.nn.functional as F

pre = pytest.importorskip(
    "audioflamingo_lab.pretrained", reason="audioflamingo_lab.pretrained needs audioflamingo_lab.encoders (02)"
)
ae = pytest.importorskip("audioflamingo_lab.aisfx_encoder", reason="the aiSFX encoder (13a) needs pretrained (13)")
wt = pytest.importorskip("audioflamingo_lab.whisper_tiny", reason="the Whisper encoder (13b) needs pretrained (13)")


def need(name):
    return pytest.mark.skipif(not pre.have_weights(name), reason=f"{name} weights not installed ({pre.INSTALL_HINT})")


# -- locating weights and the build-once cache -------------------------------------------------------------------------
def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(pre.WEIGHT_FILES, "ghost", ("no_such_weight_pkg_xyz", "w.bin", "MIT"))
    with pytest.raises(pre.MissingWeightsError, match="no_such_weight_pkg_xyz.*requirements-pretrained.txt"):
        pre.weight_file("ghost")
    assert not pre.have_weights("ghost")


def test_build_cache_once_rebuilds_on_new_key_and_never_overwrites_foreign_dirs(tmp_path):
    calls = []

    def build(tmp):
        calls.append(1)
        (tmp / "w.txt").write_text(str(len(calls)))

    target = tmp_path / "cache"
    pre.build_cache_once(target, {"sha256": "a"}, build)
    pre.build_cache_once(target, {"sha256": "a"}, build)
    assert calls == [1] and json.loads((target / "source.json").read_text()) == {"sha256": "a"}
    pre.build_cache_once(target, {"sha256": "b"}, build)
    assert (target / "w.txt").read_text() == "2"

    def broken(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        pre.build_cache_once(target, {"sha256": "c"}, broken)
    assert (target / "w.txt").read_text() == "2"  # the old cache survives a failed rebuild
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="user.*source.json"):
        pre.build_cache_once(tmp_path / "user", {"sha256": "a"}, build)
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "user"]  # no temporary folders left


def test_load_hf_lm_offline_error_names_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="opt-iml-max-1.3b.*load_smollm2"):
        pre.load_hf_lm("facebook/opt-iml-max-1.3b")


# -- SmolLM2 -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2():
    if not pre.have_weights("smollm2"):
        pytest.skip(f"smollm2 weights not installed ({pre.INSTALL_HINT})")
    return pre.load_smollm2()


PROMPT = "The capital of France is"


@need("smollm2")
def test_smollm2_completes_paris_and_reads_its_cache(smollm2, monkeypatch):
    lm, tok = smollm2
    ids = tok(PROMPT, return_tensors="pt")
    out = lm.generate(**ids, max_new_tokens=3, do_sample=False)
    assert tok.decode(out[0, ids.input_ids.shape[1] :]).startswith(" Paris")
    stamp = json.loads((pre.cache_root() / pre.SMOLLM2_CACHE_NAME / "source.json").read_text())
    assert stamp == pre.file_fingerprint(pre.weight_file("smollm2"))
    monkeypatch.setattr(pre, "_convert_smollm2", lambda *a: pytest.fail("converted again instead of reading the cache"))
    pre.load_smollm2()


@need("smollm2")
def test_small_flamingo_at_gate_zero_is_smollm2(smollm2):
    flamingo = pytest.importorskip("audioflamingo_lab.flamingo", reason="flamingo (06) not built yet")
    lm, tok = smollm2
    model = flamingo.build_model("small", encoder=None).eval()  # precomputed embeddings: no encoder needed
    assert all(abs(g["attn"] if isinstance(g, dict) and "attn" in g else 0.0) == 0 for g in model.gate_values())
    ids = tok(PROMPT, return_tensors="pt")
    with torch.no_grad():
        plain = lm(**ids).logits
        ours = model(ids.input_ids, ids.attention_mask).logits[..., : plain.shape[-1]]
    assert (ours - plain).abs().max() < 1e-4
    # with an audio in the sequence, zero gates still leave the text logits unchanged
    audio_id = model.tokenizer.convert_tokens_to_ids("<audio>")
    with_audio = torch.cat([torch.tensor([[audio_id]]), ids.input_ids], 1)
    emb = torch.randn(1, 1, 2, model.config.encoder_dim)
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    with torch.no_grad():
        a = model(with_audio, torch.ones_like(with_audio), audio_embeds=emb, media_mask=mask).logits
        b = model(with_audio, torch.ones_like(with_audio)).logits
    assert (a - b).abs().max() < 1e-4
    out = model.generate(ids.input_ids, ids.attention_mask, max_new_tokens=3, do_sample=False)
    assert model.tokenizer.decode(out[0, ids.input_ids.shape[1] :]).startswith(" Paris")


# -- aiSFX -------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aisfx():
    if not pre.have_weights("aisfx"):
        pytest.skip(f"aisfx weights not installed ({pre.INSTALL_HINT})")
    return ae.AisfxEncoder()


@need("aisfx")
def test_aisfx_checkpoint_loads_every_key_without_pickled_code(aisfx):
    state, heads = ae.load_aisfx_checkpoint()
    assert set(aisfx.net.state_dict()) == set(state) and len(heads) == 9
    for k, v in aisfx.net.state_dict().items():
        assert torch.equal(v, state[k]), k


@need("aisfx")
def test_aisfx_cnn_matches_the_packages_own_model(aisfx):
    cnn2d = pytest.importorskip("aisfx.models.cnn2d", reason="the aisfx package's reference model code")
    state, heads = ae.load_aisfx_checkpoint()
    ref = cnn2d.EmbeddingNet("max", 3, 1, 64)
    ref.load_state_dict({k[len("embedding_net.") :]: v for k, v in state.items() if k.startswith("embedding_net.")})
    blocks = torch.rand(3, 100, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(aisfx.net(blocks), ref.eval()(blocks), atol=1e-5)


@need("aisfx")
def test_aisfx_window_embedding_is_mean_of_block_embeddings(aisfx):
    g = torch.Generator().manual_seed(1)
    windows = torch.randn(1, 2, 7 * 44100, generator=g) * 0.1
    with torch.no_grad():
        out = aisfx(windows)
        blocks = aisfx.blocks(windows[0, 1:])  # reference: blocks one by one
        ref = torch.stack([aisfx.net(blocks[:, i]) for i in range(blocks.shape[1])]).mean(0)[0]
    assert out.shape == (1, 2, 512) and blocks.shape[1:] == (5, 100, 96)
    assert torch.allclose(out[0, 1], ref, atol=1e-5)
    assert aisfx.cache_key().startswith("aisfx-") and "w7.0" in aisfx.cache_key()


@need("aisfx")
def test_aisfx_separates_real_sound_classes(aisfx, tmp_path):
    import shutil

    if not (shutil.which("espeak-ng") and shutil.which("fluidsynth")):
        pytest.skip("needs espeak-ng and fluidsynth (apt-get install)")
    from audioflamingo_lab.audio import load_audio, sliding_windows

    from data_recipes.sound_classes import make_sound_classes

    classes = make_sound_classes(tmp_path, per_class=3, seconds=3.0)
    paths = [p for ps in classes.values() for p in ps]
    labels = [k for k, ps in classes.items() for _ in ps]
    windows = torch.stack([sliding_windows(load_audio(p, 44100, duration=7.0), 44100, max_windows=1)[0] for p in paths])
    with torch.no_grad():
        emb = aisfx(windows)[:, 0]
    sep = ae.class_separation(emb, labels)
    assert sep["within"] > sep["between"] + 0.3 and sep["loo_1nn_accuracy"] >= 0.8


def test_class_separation_on_hand_built_points():
    emb = torch.tensor([[1.0, 0], [1, 0.1], [-1, 0], [-1, -0.1]])
    sep = ae.class_separation(emb, ["a", "a", "b", "b"])
    assert sep["loo_1nn_accuracy"] == 1.0 and sep["within"] > 0.9 and sep["between"] < -0.9 and sep["chance"] == 0.5
    assert ae.class_separation(emb, ["a", "b", "a", "b"])["loo_1nn_accuracy"] == 0.0


# -- CTranslate2 reader ------------------------------------------------------------------------------------------------
def _ct2_string(s):
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def _ct2_file(path, variables: dict, aliases=()):
    "A hand-built CTranslate2 v6 file: {name: (dtype_id, np.ndarray)}."
    out = struct.pack("<I", 6) + _ct2_string("TestSpec") + struct.pack("<II", 1, len(variables))
    for name, (dtype_id, arr) in variables.items():
        out += _ct2_string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<BI", dtype_id, arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(_ct2_string(a) + _ct2_string(t) for a, t in aliases)
    path.write_bytes(out)
    return path


def test_read_ct2_hand_built_file_with_int8_scales_and_aliases(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    scale = (127 / np.abs(w).max(1)).astype(np.float32)
    q = np.round(w * scale[:, None]).astype(np.int8)
    half = rng.standard_normal((2, 5)).astype(np.float16)
    path = _ct2_file(
        tmp_path / "model.bin",
        {"a/weight": (1, q), "a/weight_scale": (0, scale), "b/h": (4, half), "n": (2, np.array(6, dtype=np.int16))},
        aliases=[("c/w", "b/h")],
    )
    spec, v = wt.read_ct2(path)
    assert spec == "TestSpec" and set(v) == {"a/weight", "b/h", "n", "c/w"}
    assert torch.allclose(v["a/weight"], torch.from_numpy(w), atol=np.abs(w).max() / 127)
    assert (
        v["b/h"].dtype == torch.float16
        and torch.equal(v["b/h"], torch.from_numpy(half))
        and torch.equal(v["c/w"], v["b/h"])
    )
    assert int(v["n"]) == 6
    raw = wt.read_ct2(path, dequantize=False)[1]
    assert raw["a/weight"].dtype == torch.int8 and "a/weight_scale" in raw


def test_read_ct2_truncated_file_names_the_file(tmp_path):
    path = _ct2_file(tmp_path / "model.bin", {"x": (0, np.ones((8, 8), np.float32))})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="model.bin.*truncated"):
        wt.read_ct2(path)
    (tmp_path / "bad.bin").write_bytes(struct.pack("<I", 99) + b"\0" * 8)
    with pytest.raises(ValueError, match="bad.bin.*version 99"):
        wt.read_ct2(tmp_path / "bad.bin")


# -- Whisper tiny.en ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def whisper_enc():
    if not pre.have_weights("whisper-tiny"):
        pytest.skip(f"whisper-tiny weights not installed ({pre.INSTALL_HINT})")
    return wt.WhisperTinyEncoder()


@need("whisper-tiny")
def test_whisper_encoder_loads_strict_with_every_ct2_encoder_variable(whisper_enc):
    _, ct2 = wt.read_ct2(pre.weight_file("whisper-tiny"))
    sd = whisper_enc.encoder.state_dict()
    mapped = wt._whisper_state_dict(ct2, "encoder", "")
    assert set(sd) == set(mapped)
    n_ct2 = sum(v.numel() for k, v in ct2.items() if k.startswith("encoder/") and v.dim() > 0)
    n_k_bias = 4 * 384  # the all-zero key biases CT2 adds, Whisper has none
    assert sum(v.numel() for v in sd.values()) == n_ct2 - n_k_bias
    c = whisper_enc.encoder.config
    assert (c.d_model, c.encoder_layers, c.encoder_attention_heads, c.num_mel_bins, c.max_source_positions) == (
        384,
        4,
        6,
        80,
        1500,
    )


@need("whisper-tiny")
def test_whisper_windows_are_encoded_alone_and_padding_is_silence(whisper_enc):
    from audioflamingo_lab.audio import sliding_windows

    g = torch.Generator().manual_seed(0)
    wave = torch.randn(16000 * 8, generator=g) * 0.1  # 8 s: 2 real windows, padded to 3 slots
    windows, mask = sliding_windows(wave, 16000, 7.0, 1.75, max_windows=3)
    assert mask.tolist() == [True, True, False]
    with torch.no_grad():
        out = whisper_enc(windows[None])
        ref = whisper_enc.encode_wave([windows[1], torch.zeros(100)])  # reference: one window at a time
    assert out.shape == (1, 3, 384) and ref.shape == (2, 1500, 384)
    assert torch.allclose(out[0, 1], ref[0, :350].mean(0), atol=1e-4)
    assert torch.allclose(out[0, 2], ref[1, :350].mean(0), atol=1e-4)
    assert not torch.allclose(out[0, 0], out[0, 1], atol=1e-2)
    assert whisper_enc.cache_key().startswith("whisper-tiny-")


@need("whisper-tiny")
def test_whisper_transcribes_espeak_speech():
    import shutil

    if not shutil.which("espeak-ng"):
        pytest.skip("needs espeak-ng (apt-get install espeak-ng)")
    from data_recipes.speech import speak

    model, tok = wt.load_whisper()
    wave = speak("It is going to rain this afternoon in the city.", "en-us", None, 140, 50, 16000)
    text = wt.transcribe(model, tok, wave, max_tokens=24)
    assert (
        difflib.SequenceMatcher(None, "it is going to rain this afternoon in the city.", text.lower()).ratio() > 0.7
    ), text
