"""Retrieval: exclusions against a brute-force reference, save/load checks, approximate recall, clip embeddings,
interleaved manifests."""

import json, shutil
import numpy as np, pytest, torch, faiss
from torch import nn
from audioflamingo_lab.core import Item
from audioflamingo_lab.audio import load_audio, sliding_windows
from audioflamingo_lab.encoders import WindowEncoder
from audioflamingo_lab.icl import file_key, episodes_from_interleaved
from audioflamingo_lab.manifest import write_manifest, read_manifest
from audioflamingo_lab.faiss_index import IndexParams, make_faiss_index, recall_at_k, tune_recall
from audioflamingo_lab.rag import ClipIndex, IndexMismatch, embed_clips, l2_normalize, write_interleaved_manifest
from conftest import write_tone


class FakeEncoder(WindowEncoder):
    "Deterministic window encoder: a fixed random projection of each window's magnitude spectrum; counts forward calls."

    sample_rate, window_s, hop_s, dim = 4000, 0.5, 0.25, 16

    def __init__(self, key="fake-v1"):
        super().__init__()
        self.key, self.calls = key, 0
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(int(self.window_s * self.sample_rate) // 2 + 1, self.dim, generator=g))

    def forward(self, windows):
        self.calls += 1
        return torch.fft.rfft(windows, dim=-1).abs() @ self.proj

    def cache_key(self):
        return self.key


def brute_force(train, vecs, query, qvec, k):
    "Reference search: score every train item, drop self / same path / same bytes / repeated clip, sort."
    order = sorted(range(len(train)), key=lambda i: (-float(vecs[i] @ qvec), i))
    out, seen = [], set()
    for i in order:
        it = train[i]
        if it.id == query.id or it.audio == query.audio or file_key(it.audio) == file_key(query.audio):
            continue
        if (file_key(it.audio), it.audio_start, it.audio_duration) in seen:
            continue
        seen.add((file_key(it.audio), it.audio_start, it.audio_duration))
        out.append(file_key(it.audio))
    return out[:k]  # files, not ids: which caption of a twice-listed file comes back is a tie


@pytest.fixture
def dataset(tmp_path):
    """Tones at 12 pitches (train), a byte copy of tone0 under another name, a 2nd caption of tone1's file, val/test
    items."""
    items = [
        Item(f"t{i}", str(write_tone(tmp_path / f"t{i}.wav", 1.0, 4000, 200 + 40 * i)), answer=f"tone {i}")
        for i in range(12)
    ]
    shutil.copy(tmp_path / "t0.wav", tmp_path / "copy.wav")
    items.append(Item("copy_of_t0", str(tmp_path / "copy.wav"), answer="tone 0 again"))
    items.append(Item("t1_caption2", items[1].audio, answer="tone 1, other caption"))
    items.append(Item("v0", str(write_tone(tmp_path / "v0.wav", 1.0, 4000, 215)), split="val", answer="val tone"))
    items.append(Item("x0", str(write_tone(tmp_path / "x0.wav", 1.0, 4000, 255)), split="test", answer="test tone"))
    manifest = write_manifest(items, tmp_path / "manifest.jsonl")
    return tmp_path, read_manifest(manifest), manifest


def test_search_excludes_self_copies_nontrain_and_matches_brute_force(dataset):
    _, items, manifest = dataset
    enc = FakeEncoder()
    index = ClipIndex.build(manifest, enc)
    train = [it for it in items if it.split == "train"]
    assert [it.id for it in index.items] == [it.id for it in train]  # only train is indexed
    vecs = embed_clips(train, enc)
    results = index.search(items, k=5)
    for q, hits in zip(items, results):
        ids = [h.item.id for h in hits]
        assert len(ids) == 5 and q.id not in ids and not {"v0", "x0"} & set(ids)
        if q.id in ("t0", "copy_of_t0"):
            assert not {"t0", "copy_of_t0"} & set(ids)  # a byte copy is the same file
        if q.id in ("t1", "t1_caption2"):
            assert not {"t1", "t1_caption2"} & set(ids)
        assert not ("t1" in ids and "t1_caption2" in ids)  # one file listed twice appears once
        assert [file_key(h.item.audio) for h in hits] == brute_force(train, vecs, q, embed_clips([q], enc)[0], 5)
        ref = {it.id: v for it, v in zip(train, vecs)}
        qv = embed_clips([q], enc)[0]
        assert np.allclose([h.score for h in hits], [ref[i] @ qv for i in ids], atol=1e-5)
    assert set(h.item.id for h in index.search(["%s" % items[0].audio], k=3)[0]).isdisjoint({"t0", "copy_of_t0"})
    assert "t2" not in [h.item.id for h in index.search([items[0]], k=5, exclude={"t2"})[0]]


def test_search_refetches_when_filters_leave_too_few(tmp_path):
    "Many copies of the query's file rank first: with no over-fetch margin the index must search deeper."
    src = write_tone(tmp_path / "q.wav", 0.6, 4000, 300)
    items = [Item("q", str(src))]
    for i in range(6):
        shutil.copy(src, tmp_path / f"dup{i}.wav")
        items.append(Item(f"dup{i}", str(tmp_path / f"dup{i}.wav")))
    items += [Item(f"o{i}", str(write_tone(tmp_path / f"o{i}.wav", 0.6, 4000, 500 + 100 * i))) for i in range(4)]
    index = ClipIndex.build(items, FakeEncoder())
    index.overfetch = 0
    (hits,) = index.search([items[0]], k=3)
    assert [h.item.id for h in hits] and all(h.item.id.startswith("o") for h in hits) and len(hits) == 3


def test_save_load_same_results_and_refuses_mismatch(dataset):
    root, items, manifest = dataset
    enc = FakeEncoder()
    index = ClipIndex.build(manifest, enc, kind="hnsw", ef_search=32)
    index.save(root / "idx")
    again = ClipIndex.load(root / "idx", manifest=manifest, encoder=enc)
    assert again.params.kind == "hnsw" and again.meta["pooling"] == "mean"
    a, b = index.search(items, k=4), again.search(items, k=4)
    assert [[(h.item.id, round(h.score, 5)) for h in r] for r in a] == [
        [(h.item.id, round(h.score, 5)) for h in r] for r in b
    ]
    meta = json.loads((root / "idx" / "meta.json").read_text())
    assert meta["encoder"] == {"name": "FakeEncoder", "cache_key": "fake-v1"} and meta["manifest"]["hash"]
    assert meta["file_sha256"][0] == file_key(items[0].audio) and [d["split"] for d in meta["items"]] == ["train"] * 14
    with pytest.raises(FileExistsError, match="already saved"):
        index.save(root / "idx")
    with pytest.raises(IndexMismatch, match="cache key fake-v1.*fake-v2"):
        ClipIndex.load(root / "idx", encoder=FakeEncoder("fake-v2"))
    with open(manifest, "a") as f:
        f.write(
            json.dumps(
                {
                    "id": "new",
                    "audio": "t3.wav",
                    "task": "captioning",
                    "split": "train",
                    "dataset": "",
                    "prompt": "",
                    "answer": "x",
                }
            )
            + "\n"
        )
    with pytest.raises(IndexMismatch, match="manifest changed"):
        ClipIndex.load(root / "idx", manifest=manifest)
    with pytest.raises(IndexMismatch, match="manifest changed"):
        write_interleaved_manifest(manifest, again, 2, root / "inter.jsonl")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        ClipIndex.load(root / "nothing")


def test_loaded_index_without_encoder_needs_vectors_for_new_queries(dataset):
    root, items, manifest = dataset
    ClipIndex.build(manifest, FakeEncoder()).save(root / "idx")
    bare = ClipIndex.load(root / "idx")
    assert bare.search([items[2]], k=2)[0]  # an indexed item reuses its stored vector
    with pytest.raises(ValueError, match="'v0'.*no encoder"):
        bare.search([items[-2]], k=2)
    with pytest.raises(ValueError, match="text-only"):
        bare.search([Item("txt", None)], k=2)


def _clustered(n, d, rng, centres=64, spread=0.2):
    c = l2_normalize(rng.standard_normal((centres, d)))
    return l2_normalize(c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d)) / np.sqrt(d) * 4)


@pytest.mark.parametrize("kind,knob", [("ivf", "nprobe"), ("hnsw", "ef_search")])
def test_approximate_recall_at_8_against_exact(kind, knob):
    rng = np.random.default_rng(0)
    data, queries = _clustered(4000, 32, rng), _clustered(200, 32, np.random.default_rng(1))
    params = IndexParams(kind, **{knob: 1})
    index = make_faiss_index(data, params)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :8]  # brute-force exact top-8
    _, got = index.search(queries, 8)
    manual = np.mean([len(set(t) & set(g)) / 8 for t, g in zip(truth, got)])
    assert abs(recall_at_k(index, data, queries, 8) - manual) < 1e-9
    r = tune_recall(index, params, data, queries, k=8, target=0.95)
    assert r >= 0.95 and getattr(params, knob) > 1
    assert recall_at_k(make_faiss_index(data), data, queries, 8) == 1.0


def test_clip_index_ivf_kind_searches_like_flat_when_probing_all(dataset):
    _, items, manifest = dataset
    enc = FakeEncoder()
    flat, ivf = ClipIndex.build(manifest, enc), ClipIndex.build(manifest, enc, kind="ivf", nlist=2, nprobe=2)
    assert [[h.item.id for h in r] for r in flat.search(items, 3)] == [
        [h.item.id for h in r] for r in ivf.search(items, 3)
    ]
    with pytest.raises(ValueError, match="kind must be"):
        ClipIndex.build(manifest, enc, kind="lsh")


class SlowWindows(FakeEncoder):
    "2 s windows, 1 s hop: 16 windows cover 17 s, so the first 10 s and the whole clip differ."

    sample_rate, window_s, hop_s = 2000, 2.0, 1.0


def test_embed_clips_pooling_against_hand_computed(tmp_path):
    import soundfile as sf

    enc, sr = SlowWindows(), 2000
    t = np.arange(14 * sr) / sr
    wave = np.where(t < 10, np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 900 * t)).astype(np.float32) * 0.5
    sf.write(tmp_path / "long.wav", wave, sr)  # 10 s at 300 Hz, then 4 s at 900 Hz
    long = tmp_path / "long.wav"

    def reference(seconds):  # windows of the first `seconds`, mean, unit length
        w, m = sliding_windows(load_audio(long, sr, start=0, duration=seconds), sr, 2.0, 1.0, max_windows=16)
        with torch.no_grad():
            v = enc(w[None])[0][m].mean(0).numpy()
        return v / np.linalg.norm(v)

    mean, first = embed_clips([long], enc)[0], embed_clips([long], enc, pooling="first10s")[0]
    assert np.allclose(mean, reference(14.0), atol=1e-5) and np.allclose(first, reference(10.0), atol=1e-5)
    assert not np.allclose(mean, first, atol=1e-3)  # the last 4 s matter for "mean" only
    seg = Item("seg", str(long), audio_start=10.0, audio_duration=4.0)  # a segment item: only its own audio
    w, m = sliding_windows(load_audio(long, sr, start=10.0, duration=4.0), sr, 2.0, 1.0, max_windows=16)
    with torch.no_grad():
        ref = enc(w[None])[0][m].mean(0).numpy()
    assert np.allclose(embed_clips([seg], enc)[0], ref / np.linalg.norm(ref), atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        embed_clips([long], enc, pooling="max")
    with pytest.raises(ValueError, match="'t'.*text-only"):
        embed_clips([Item("t", None)], enc)


@pytest.mark.parametrize("which", ["fake", "mel"])
def test_embed_clips_second_call_does_no_encoder_work(tmp_path, which):
    from audioflamingo_lab.encoders import build_encoder

    enc = FakeEncoder()
    if which == "mel":  # the lab's real (tiny) encoder, calls counted
        enc = build_encoder("mel")
        enc.calls = 0
        enc.register_forward_pre_hook(lambda m, a: setattr(m, "calls", m.calls + 1))
    paths = [write_tone(tmp_path / f"c{i}.wav", 0.8, 4000, 300 + 50 * i) for i in range(3)]
    first = embed_clips(paths, enc, cache_root=tmp_path / "cache")
    calls = enc.calls
    assert calls > 0 and first.shape == (3, enc.dim)
    second = embed_clips(paths, enc, cache_root=tmp_path / "cache")
    assert enc.calls == calls and np.allclose(first, second, atol=1e-6)
    assert np.allclose(first, embed_clips(paths, enc), atol=1e-5)  # the cache gives what the encoder gives


def test_write_interleaved_manifest_rag_and_random(dataset):
    root, items, manifest = dataset
    index = ClipIndex.build(manifest, FakeEncoder())
    out = write_interleaved_manifest(manifest, index, 3, root / "rag.jsonl", order="similarity")
    lines = read_manifest(out)
    assert [l.id for l in lines] == [it.id for it in items]
    train_ids = {it.id for it in items if it.split == "train"}
    by_q = {q.id: hits for q, hits in zip(items, index.search(items, 3))}
    for l in lines:
        assert l.extra["select"] == "rag" and len(l.extra["shots"]) == 3 and set(l.extra["shots"]) <= train_ids
        assert l.extra["shots"] == [h.item.id for h in by_q[l.id]][::-1]  # most similar last
    with pytest.raises(FileExistsError):
        write_interleaved_manifest(manifest, index, 3, out)
    rnd = read_manifest(
        write_interleaved_manifest(manifest, None, 4, root / "rnd.jsonl", select="random", splits=["val", "test"])
    )
    assert [l.id for l in rnd] == ["v0", "x0"] and all(
        set(l.extra["shots"]) <= train_ids and l.extra["select"] == "random" for l in rnd
    )
    eps = episodes_from_interleaved(rnd, read_manifest(manifest, split="train"))
    assert [len(e.shots) for e in eps] == [4, 4] and all(e.select == "random" for e in eps)
