import random
import pytest
import torch
from audioflamingo_lab.core import Item, Episode, stable_seed
from audioflamingo_lab.template import build_tiny_tokenizer, render, token_ids
from audioflamingo_lab.icl import RandomShots
from audioflamingo_lab.datamodule import EpisodeDataset, collate, blend_indices, BlendSampler, AudioFlamingoDataModule


class CountingCache:
    """A test double of encoders.EmbeddingCache: a deterministic embedding per (file, start, duration), memoised,
    counting encoder calls."""

    def __init__(self, dim=6, max_windows=4):
        self.dim, self.max_windows, self.store, self.encoder_calls = dim, max_windows, {}, 0

    def get(self, path, start=None, duration=None):
        key = (str(path), start, duration)
        if key not in self.store:
            self.encoder_calls += 1
            n = 1 + stable_seed(path) % self.max_windows
            emb = torch.zeros(self.max_windows, self.dim)
            emb[:n] = float(stable_seed(path) % 97)
            self.store[key] = (emb, torch.arange(self.max_windows) < n)
        return self.store[key]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(save_dir=tmp_path_factory.mktemp("tok"))


def items(prefix, n, split="train"):
    return [
        Item(
            id=f"{prefix}{i}",
            audio=f"/data/{prefix}{i}.wav",
            task="classification",
            prompt="what is it?",
            answer=["dog", "rain", "siren"][i % 3],
            split=split,
        )
        for i in range(n)
    ]


def test_collate_matches_hand_built(tok):
    cache = CountingCache()
    a, b, c = items("x", 3)
    ep = Episode(query=b, shots=[a], select="random")
    samples = [
        {"rendered": render(ep, tok), "media": [cache.get(a.audio), cache.get(b.audio)], "media_key": "audio_embeds"},
        {"rendered": render(c, tok), "media": [cache.get(c.audio)], "media_key": "audio_embeds"},
    ]
    pad = token_ids(tok)["pad"]
    batch = collate(samples, pad)
    r0, r1 = samples[0]["rendered"], samples[1]["rendered"]
    T = max(len(r0), len(r1))
    want_ids = torch.full((2, T), pad)
    want_lab = torch.full((2, T), -100)
    want_att = torch.zeros(2, T, dtype=torch.long)
    for i, r in enumerate((r0, r1)):
        want_ids[i, : len(r)] = torch.tensor(r.input_ids)
        want_lab[i, : len(r)] = torch.tensor(r.labels)
        want_att[i, : len(r)] = 1
    want_emb = torch.zeros(2, 2, 4, 6)
    want_mask = torch.zeros(2, 2, 4, dtype=torch.bool)
    for (bi, ai), it in {(0, 0): a, (0, 1): b, (1, 0): c}.items():
        e, m = cache.get(it.audio)
        want_emb[bi, ai], want_mask[bi, ai] = e, m
    assert torch.equal(batch["input_ids"], want_ids) and torch.equal(batch["labels"], want_lab)
    assert torch.equal(batch["attention_mask"], want_att)
    assert torch.equal(batch["audio_embeds"], want_emb) and torch.equal(batch["media_mask"], want_mask)
    assert not batch["media_mask"][1, 1].any()  # sample 1 has one audio: its second row is empty
    assert batch["ids"] == [b.id, c.id] and "audio" not in batch
    # one <audio> token per media row that has windows
    n_audio = (batch["input_ids"] == token_ids(tok)["audio"]).sum(1)
    assert n_audio.tolist() == batch["media_mask"].any(-1).sum(1).tolist() == [2, 1]


def test_collate_left_padding_and_text_only(tok):
    txt = Item(id="t", audio=None, task="aqa", prompt="say yes", answer="yes")
    samples = [
        {"rendered": render(txt, tok, with_answer=False), "media": [], "media_key": "audio_embeds"},
        {"rendered": render(items("y", 1)[0], tok, with_answer=False), "media": [], "media_key": "audio_embeds"},
    ]
    batch = collate(samples, 0, padding_side="left")
    assert batch["attention_mask"][:, -1].tolist() == [1, 1] and "media_mask" not in batch


def test_collate_raw_windows_of_different_lengths(tok):
    w1, w2 = torch.randn(3, 10), torch.randn(2, 10)
    samples = [
        {"rendered": render(it, tok), "media": [(w, torch.ones(len(w), dtype=torch.bool))], "media_key": "audio"}
        for it, w in zip(items("z", 2), (w1, w2))
    ]
    batch = collate(samples, 0)
    assert batch["audio"].shape == (2, 1, 3, 10) and torch.equal(batch["audio"][1, 0, :2], w2)
    assert batch["media_mask"][:, 0].tolist() == [[True] * 3, [True, True, False]]


def test_dataset_icl_draws_are_seeded(tok):
    train = items("p", 12)
    sel = RandomShots(train, k=3)
    ds = EpisodeDataset(train, tok, cache=CountingCache(), selector=sel, icl_prob=0.5, k_range=(1, 3), seed=1)
    first = [ds[i]["rendered"].input_ids for i in range(len(ds))]
    assert first == [ds[i]["rendered"].input_ids for i in range(len(ds))]
    n_audios = [len(ds[i]["media"]) for i in range(len(ds))]
    assert min(n_audios) == 1 and 2 <= max(n_audios) <= 4  # some ICL (1-3 shots), some single
    with pytest.raises(ValueError, match="needs a shot selector"):
        EpisodeDataset(train, tok, icl_prob=0.3)


def test_blend_counts_and_determinism():
    sizes, weights = [10, 5, 3], [2.0, 0.4, 1.0]
    for epoch in range(3):
        idx = blend_indices(sizes, weights, epoch, seed=7)
        counts = [sum(lo <= i < lo + n for i in idx) for lo, n in zip([0, 10, 15], sizes)]
        assert counts == [20, 2, 3]
        assert all(idx.count(i) == 2 for i in range(10))  # two full passes
        assert sorted(i for i in idx if i >= 15) == [15, 16, 17]  # one full pass
    fractional = [i for e in range(5) for i in blend_indices(sizes, weights, e, seed=7) if 10 <= i < 15]
    assert sorted(fractional) == sorted(list(range(10, 15)) * 2)  # 0.4 x 5 epochs = 2 passes, each item twice
    assert blend_indices(sizes, weights, 1, seed=7) == blend_indices(sizes, weights, 1, seed=7)
    assert blend_indices(sizes, weights, 1, seed=7) != blend_indices(sizes, weights, 1, seed=8)
    with pytest.raises(ValueError, match="2 datasets but 1 weights"):
        blend_indices([1, 2], [1.0])


def make_dm(tok, cache, seed=0):
    a, b = items("a", 6) + items("av", 2, "val"), items("b", 4)
    return AudioFlamingoDataModule([(a, 1.0), (b, 0.5)], tok, cache=cache, batch_size=3, seed=seed)


def batches(dm, epoch):
    dm.sampler.set_epoch(epoch)
    return [b for b in dm.train_dataloader()]


def test_datamodule_deterministic_and_cache_only(tok):
    cache = CountingCache()
    dm = make_dm(tok, cache)
    dm.prepare_data()
    dm.setup("fit")
    assert cache.encoder_calls == 6 + 2 + 4  # every distinct file once, val included
    e0 = batches(dm, 0)
    assert sum(len(b["ids"]) for b in e0) == 6 + 2
    assert sorted(i for b in e0 for i in b["ids"] if i.startswith("b")) != []
    e1 = batches(dm, 1)
    assert cache.encoder_calls == 12  # two epochs: zero encoder forwards
    dm2 = make_dm(tok, CountingCache())
    dm2.setup("fit")
    again = batches(dm2, 0)
    assert [b["ids"] for b in again] == [b["ids"] for b in e0]
    assert all(
        torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["audio_embeds"], y["audio_embeds"])
        for x, y in zip(again, e0)
    )
    assert [b["ids"] for b in e1] != [b["ids"] for b in e0]
    val = list(dm.val_dataloader())
    assert [i for b in val for i in b["ids"]] == ["av0", "av1"]
