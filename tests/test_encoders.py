import multiprocessing as mp, os, warnings
import numpy as np, pytest, soundfile as sf, torch
import torch.nn.functional as F
from audioflamingo_lab.encoders import (
    ENCODERS,
    EmbeddingCache,
    MelConvEncoder,
    WindowEncoder,
    build_encoder,
    encoder_factory,
    register_encoder,
    LogMel,
    weights_digest,
)
from audioflamingo_lab.audio import num_windows
from audioflamingo_lab.clap_htsat import ClapHTSATEncoder
from audioflamingo_lab.core import AudioError


def noise_file(path, seconds, sr=16000, seed=0):
    x = np.random.default_rng(seed).normal(0, 0.2, int(seconds * sr)).astype(np.float32)
    sf.write(str(path), x, sr, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def mel():
    return MelConvEncoder()


# ---------------------------------------------------------------- interface, registry, mel encoder
def test_registry():
    assert {"mel", "clap-htsat"} <= set(ENCODERS)
    with pytest.raises(KeyError, match="unknown encoder 'nope'.*mel"):
        build_encoder("nope")

    @register_encoder("_test_const")
    class Const(WindowEncoder):
        dim = 3

        def __init__(self, value=1.0):
            super().__init__()
            self.value = value

        def forward(self, w):
            return torch.full((*w.shape[:2], 3), self.value)

    try:
        e = build_encoder("_test_const", value=2.0)
        assert e(torch.zeros(2, 5, 10)).shape == (2, 5, 3) and e.value == 2.0
    finally:
        ENCODERS.pop("_test_const")


def test_registry_is_a_lazy_table_without_an_import_cycle():
    "encoders never imports the weight encoders (they import it): listing names imports nothing, building imports once."
    import ast, subprocess, sys
    from pathlib import Path
    import audioflamingo_lab.encoders as encoders_module

    tree = ast.parse(Path(encoders_module.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not any(m in name for name in imported for m in ("pretrained", "aisfx_encoder", "whisper_tiny"))
    code = (
        "import sys; from audioflamingo_lab.encoders import available_encoders, encoder_factory\n"
        "names = available_encoders()\n"
        "assert {'aisfx', 'whisper-tiny', 'mel'} <= set(names)\n"
        "assert not {'audioflamingo_lab.aisfx_encoder', 'audioflamingo_lab.whisper_tiny'} & set(sys.modules)\n"
        "from audioflamingo_lab import aisfx_encoder, whisper_tiny\n"
        "assert encoder_factory('aisfx') is aisfx_encoder.AisfxEncoder\n"
        "assert encoder_factory('whisper-tiny') is whisper_tiny.WhisperTinyEncoder\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert encoder_factory("mel") is MelConvEncoder and encoder_factory("clap-htsat") is ClapHTSATEncoder


def test_mel_encoder_shapes_and_independence(mel):
    x = torch.randn(2, 3, 7 * 16000) * 0.1
    with torch.no_grad():
        y = mel(x)
        single = torch.cat([mel(x[b : b + 1, i : i + 1]) for b in range(2) for i in range(3)]).reshape(2, 3, -1)
    assert y.shape == (2, 3, 256) and torch.isfinite(y).all()
    torch.testing.assert_close(y, single, atol=1e-5, rtol=1e-5)
    assert not mel.training and not any(p.requires_grad for p in mel.parameters())
    mel.train()
    assert not mel.training  # frozen stays in eval mode
    trainable = MelConvEncoder(frozen=False, dim=32)
    trainable.train()
    assert trainable.training and trainable(x[:, :1]).requires_grad


def test_logmel_matches_numpy_reference():
    """Centered reflect-padded periodic-Hann STFT, power 2, HTK mel, 10*log10 (torchaudio MelSpectrogram +
    AmplitudeToDB)."""
    sig = np.random.default_rng(0).normal(0, 0.3, 9600).astype(np.float32)
    lm = LogMel(48000, 1024, 480, 64, 50, 14000, db=True)
    ours = lm(torch.from_numpy(sig)[None])[0].numpy()
    padded = np.pad(sig.astype(np.float64), 512, mode="reflect")
    frames = np.stack([padded[i * 480 : i * 480 + 1024] for i in range(1 + len(sig) // 480)])
    power = np.abs(np.fft.rfft(frames * np.hanning(1025)[:-1], axis=1)) ** 2
    fb = lm.fb.numpy().astype(np.float64)
    assert fb.shape == (64, 513) and (fb >= 0).all() and fb[:, 0].sum() == 0  # 50 Hz floor: no DC weight
    ref = 10 * np.log10(np.maximum(power @ fb.T, 1e-10)).T
    assert ours.shape == ref.shape == (64, 21)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_cache_key_depends_on_config_and_weights(mel):
    assert MelConvEncoder().cache_key() == mel.cache_key()
    assert MelConvEncoder(seed=1).cache_key() != mel.cache_key()
    assert MelConvEncoder(dim=128).cache_key() != mel.cache_key()
    other = MelConvEncoder()
    with torch.no_grad():
        other.proj.bias.add_(1e-3)
    assert other.cache_key() != mel.cache_key()


def test_encode_file_pads_and_masks(tmp_path, mel):
    p = noise_file(tmp_path / "a.wav", 10, sr=44100)  # resampled to 16 kHz inside
    emb, mask = mel.encode_file(p)
    assert emb.shape == (16, 256) and mask.tolist() == [True] * 3 + [False] * 13
    assert (emb[3:] == 0).all() and emb[:3].abs().sum() > 0
    emb2, mask2 = mel.encode_file(p, max_windows=None)
    assert emb2.shape == (3, 256) and mask2.all()
    torch.testing.assert_close(emb2, emb[:3])
    seg, m = mel.encode_file(p, start=1.0, duration=2.0)
    assert m.sum() == 1
    with pytest.raises(AudioError, match="missing.wav"):
        mel.encode_file(tmp_path / "missing.wav")


class Evil:
    "A pickled object: a weights-only load must refuse the file."


# ---------------------------------------------------------------- LAION-CLAP HTSAT (few windows: ~1 s each here)
@pytest.fixture(scope="module")
def clap():
    return ClapHTSATEncoder()


@pytest.fixture(scope="module")
def clap_windows():
    return torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (1, 2, 7 * 48000)).astype(np.float32))


@pytest.fixture(scope="module")
def clap_out(clap, clap_windows):
    with torch.no_grad():
        return clap(clap_windows)


def test_htsat_builds_offline_and_shapes(clap, clap_windows, clap_out, tmp_path):
    assert clap.sample_rate == 48000 and clap.dim == 512
    assert clap_out.shape == (1, 2, 512)
    torch.testing.assert_close(clap_out.norm(dim=-1), torch.ones(1, 2))
    with torch.no_grad():
        one = clap(clap_windows[:, 1:2])
    assert one.shape == (1, 1, 512)
    torch.testing.assert_close(one[0, 0], clap_out[0, 1], atol=1e-5, rtol=1e-4)  # windows are independent
    emb, mask = clap.encode_file(noise_file(tmp_path / "short.wav", 0.5, sr=22050))  # 1 real window, padded to 16
    assert emb.shape == (16, 512) and mask.sum() == 1 and (emb[1:] == 0).all()


def test_htsat_checkpoint_roundtrip_and_pooled(clap, clap_windows, clap_out, tmp_path):
    seen = []
    hook = clap.audio_branch.register_forward_hook(lambda m, i, o: seen.append(o["embedding"].detach()))
    with torch.no_grad():
        torch.testing.assert_close(clap(clap_windows), clap_out, atol=0, rtol=0)  # deterministic
    hook.remove()
    ckpt = clap.laion_state_dict()
    ckpt["state_dict"]["module.text_branch.embeddings.word_embeddings.weight"] = torch.zeros(
        3, 2
    )  # other towers: ignored
    ckpt["state_dict"]["module.logit_scale_a"] = torch.tensor(1.0)
    ckpt["epoch"] = 3
    path = tmp_path / "laion.pt"
    torch.save(ckpt, path)
    pooled = ClapHTSATEncoder(output="pooled", seed=1, checkpoint=str(path))  # other init, then the saved weights
    assert pooled.dim == 768
    with torch.no_grad():
        got = pooled(clap_windows)
    assert got.shape == (1, 2, 768)
    torch.testing.assert_close(got[0], seen[0], atol=0, rtol=0)  # identical to the source tower
    # pooled -> projection MLP -> L2 is the projection output of the encoder the checkpoint came from
    torch.testing.assert_close(F.normalize(pooled.audio_projection(got), dim=-1), clap_out, atol=1e-6, rtol=1e-5)
    assert weights_digest(pooled) == weights_digest(clap)
    assert pooled.cache_key() != clap.cache_key()  # same weights, other output


def test_htsat_checkpoint_refuses_bad_keys(clap, tmp_path):
    good = clap.laion_state_dict()["state_dict"]

    def attempt(state, name="bad.pt"):
        torch.save({"state_dict": state}, tmp_path / name)
        return clap.load_checkpoint(tmp_path / name)

    with pytest.raises(KeyError, match=r"bad\.pt.*unexpected.*audio_branch\.bogus\.weight"):
        attempt({**good, "module.audio_branch.bogus.weight": torch.zeros(1)})
    missing = dict(good)
    missing.pop("module.audio_projection.2.bias")
    with pytest.raises(KeyError, match=r"missing.*audio_projection\.2\.bias"):
        attempt(missing)
    shaped = {**good, "module.audio_projection.2.bias": torch.zeros(7)}
    with pytest.raises(ValueError, match=r"audio_projection\.2\.bias has shape \(7,\)"):
        attempt(shaped)
    torch.save({"state_dict": good, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: not a loadable weights-only"):
        clap.load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        clap.load_checkpoint(tmp_path / "nope.pt")
    # the refused loads left the weights untouched
    torch.testing.assert_close(
        clap.laion_state_dict()["state_dict"]["module.audio_projection.2.bias"], good["module.audio_projection.2.bias"]
    )


def test_htsat_fusion_variant(clap, tmp_path, clap_windows):
    fusion = ClapHTSATEncoder(fusion=True)
    with torch.no_grad():
        out = fusion(clap_windows[:, :1])
    assert out.shape == (1, 1, 512) and torch.isfinite(out).all()
    torch.save(clap.laion_state_dict(), tmp_path / "nonfusion.pt")  # a non-fusion checkpoint lacks the fusion layers
    with pytest.raises(KeyError, match=r"missing.*fusion"):
        fusion.load_checkpoint(tmp_path / "nonfusion.pt")


# ---------------------------------------------------------------- the cache
class Counted:
    "Count real forwards of an encoder with a hook (independent of the cache's own counter)."

    def __init__(self, enc):
        self.n = 0
        enc.register_forward_hook(lambda *a: setattr(self, "n", self.n + 1))


@pytest.fixture
def clips(tmp_path):
    return [noise_file(tmp_path / f"c{i}.wav", s, seed=i) for i, s in enumerate([0.5, 8, 12])]


def test_cache_hits_and_identical(tmp_path, clips):
    enc = MelConvEncoder(dim=64)
    counter = Counted(enc)
    cache = EmbeddingCache(tmp_path / "cache", enc)
    first = cache.get_many(clips, progress=False)
    assert cache.encoder_calls == counter.n == 3 and len(cache) == 3
    second = EmbeddingCache(tmp_path / "cache", enc).get_many(clips, progress=False)  # a fresh object, same disk
    assert counter.n == 3  # second pass: zero encoder forwards
    for (e1, m1), (e2, m2), p in zip(first, second, clips):
        ref, rm = enc.encode_file(p)
        assert torch.equal(e1, e2) and torch.equal(m1, m2) and torch.equal(e1, ref) and torch.equal(m1, rm)
        assert e2.dtype == torch.float32 and m2.dtype == torch.bool and e2.shape == (16, 64)
    assert [int(m.sum()) for _, m in first] == [num_windows(s) for s in (0.5, 8, 12)]
    # segments and other window settings are different entries
    cache.get(clips[2], start=1.0, duration=3.0)
    assert cache.encoder_calls == 4
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cache_key_tracks_file_contents_and_encoder(tmp_path, clips):
    enc = MelConvEncoder(dim=64)
    cache = EmbeddingCache(tmp_path / "cache", enc)
    e1 = cache.entry(clips[1])
    noise_file(clips[1], 8, seed=99)  # same path, new contents
    assert cache.entry(clips[1]) != e1
    assert EmbeddingCache(tmp_path / "cache", MelConvEncoder(dim=64, seed=5)).entry(clips[1]) != cache.entry(clips[1])
    assert EmbeddingCache(tmp_path / "cache", enc, max_windows=8).entry(clips[1]) != cache.entry(clips[1])


def test_cache_entries_do_not_depend_on_the_callers_autocast(tmp_path, clips):
    # a bf16 demo and a float32 demo share one cache folder: the key has no precision, so neither may leak into it
    enc = MelConvEncoder(dim=64)
    x = torch.randn(1, 2, 7 * 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = enc(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not torch.equal(enc(x).float(), reference)  # autocast does reach a plain forward
    plain = EmbeddingCache(tmp_path / "fp32", enc).get(clips[1])[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_bf16 = EmbeddingCache(tmp_path / "bf16", enc).get(clips[1])[0]
    assert under_bf16.dtype == torch.float32 and torch.equal(under_bf16, plain)


def test_truncated_entry_is_recomputed(tmp_path, clips):
    enc = MelConvEncoder(dim=64)
    cache = EmbeddingCache(tmp_path / "cache", enc)
    good, mask = cache.get(clips[1])
    entry = cache.entry(clips[1])
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # a half-written file
    with pytest.warns(UserWarning, match="corrupt cache entry"):
        again, m2 = cache.get(clips[1])
    assert cache.encoder_calls == 2 and torch.equal(again, good) and torch.equal(m2, mask)
    with warnings.catch_warnings():  # repaired: read back without complaint
        warnings.simplefilter("error")
        fixed, _ = EmbeddingCache(tmp_path / "cache", enc).get(clips[1])
    assert torch.equal(fixed, good) and len(entry.read_bytes()) == len(data)
    entry.write_bytes(b"\x00" * 40)
    with pytest.warns(UserWarning, match="corrupt"):
        cache.get(clips[1])
    assert cache.encoder_calls == 3


def test_interrupted_write_leaves_no_entry(tmp_path, clips, monkeypatch):
    cache = EmbeddingCache(tmp_path / "cache", MelConvEncoder(dim=64))

    def boom(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.get(clips[0])
    monkeypatch.undo()
    assert not cache.entry(clips[0]).exists() and not list((tmp_path / "cache").rglob("*.tmp"))
    cache.get(clips[0])
    assert cache.entry(clips[0]).exists()


def _worker(root, paths, q):
    torch.set_num_threads(1)  # as DataLoader workers do (no forked OpenMP pool)
    cache = EmbeddingCache(root, MelConvEncoder(dim=64))
    out = [cache.get(p)[0] for p in paths]
    q.put([o.sum().item() for o in out])


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_cache_several_processes(tmp_path, clips):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(tmp_path / "cache", clips[:2], q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert results[0] == results[1]
    cache = EmbeddingCache(tmp_path / "cache", MelConvEncoder(dim=64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no corrupt entry anywhere
        got = [cache.get(p)[0].sum().item() for p in clips[:2]]
    assert cache.encoder_calls == 0 and got == results[0]


def test_htsat_sixteen_real_windows(clap, clap_windows):
    "A full forward of 16 real windows (the AF1 maximum, 33.25 s): (1, 16, 512), each window encoded on its own."
    w = torch.from_numpy(np.random.default_rng(1).normal(0, 0.1, (1, 16, 7 * 48000)).astype(np.float32))
    w[0, :2] = clap_windows[0]
    with torch.no_grad():
        out = clap(w)
    assert out.shape == (1, 16, 512) and torch.isfinite(out).all()
    with torch.no_grad():
        ref = clap(clap_windows)
    assert torch.allclose(out[0, :2], ref[0], atol=1e-5)  # windows do not see each other
