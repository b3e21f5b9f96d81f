"""Shot selection (random from train only, retrieved, order, determinism) and the AF1 interleaving rules on rendered
episodes."""

import shutil
import numpy as np, pytest
from audioflamingo_lab.core import Item, Episode
from audioflamingo_lab.icl import RandomShots, RetrievedShots, NoShots, make_episode, make_episodes, file_key
from audioflamingo_lab.rag import ClipIndex, l2_normalize


@pytest.fixture
def pool(tmp_path):
    "10 train files (train3 also listed a 2nd time, train0 copied under another name) and 3 val, 2 test items."
    items = []
    for i in range(10):
        p = tmp_path / f"train{i}.wav"
        p.write_bytes(f"train audio {i}".encode())
        items.append(Item(f"train{i}", str(p), prompt="what is it?", answer=f"answer {i}", options=["x", "y"]))
    items.append(Item("train3_b", items[3].audio, answer="answer 3, second caption"))
    shutil.copy(items[0].audio, tmp_path / "renamed.wav")
    items.append(Item("train0_copy", str(tmp_path / "renamed.wav"), answer="a0"))
    for s, n in (("val", 3), ("test", 2)):
        for i in range(n):
            p = tmp_path / f"{s}{i}.wav"
            p.write_bytes(f"{s} audio {i}".encode())
            items.append(Item(f"{s}{i}", str(p), split=s, answer=f"{s} answer {i}"))
    return items


def test_random_shots_only_train_never_query_or_its_file(pool):
    sel = RandomShots(pool, k=6, seed=3)
    train_ids = {it.id for it in pool if it.split == "train"}
    for q in pool:
        shots = sel(q)
        assert len(shots) == 6 and {s.id for s in shots} <= train_ids and q.id not in {s.id for s in shots}
        keys = [file_key(s.audio) for s in shots]
        assert file_key(q.audio) not in keys and len(set(keys)) == len(keys)  # not the query's file, no file twice
    # the copy of train0 under another name is never a shot for train0 and vice versa
    assert all(
        "train0_copy" not in [s.id for s in sel(pool[0])] for sel in [RandomShots(pool, k=9, seed=s) for s in range(5)]
    )


def test_random_shots_deterministic_per_seed_and_query(pool):
    a, b, c = RandomShots(pool, k=4, seed=0), RandomShots(pool, k=4, seed=0), RandomShots(pool, k=4, seed=1)
    queries = pool[-5:]
    ids = lambda sel: [[s.id for s in sel(q)] for q in queries]
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert ids(a) == [[s.id for s in e.shots] for e in make_episodes(queries, a)]  # batched = one at a time
    assert len({tuple(x) for x in ids(a)}) > 1  # different queries, different draws
    with pytest.raises(ValueError, match="no similarity scores"):
        RandomShots(pool, order="similarity")
    with pytest.raises(ValueError, match="no train items"):
        RandomShots([it for it in pool if it.split != "train"])


def _index(pool):
    """Vectors on a circle: item i at angle i/10 (train0_copy shares train0's, train3_b train3's), so similarity is
    known."""
    ang = {it.id: i * 0.3 for i, it in enumerate(pool)}
    ang["train3_b"], ang["train0_copy"] = ang["train3"], ang["train0"]
    vec = np.array([[np.cos(ang[it.id]), np.sin(ang[it.id])] for it in pool], np.float32)
    return ClipIndex.from_vectors(pool, vec), vec


def test_retrieved_shots_order_and_determinism(pool):
    index, vec = _index(pool)
    q = pool[-1]  # test1
    by_sim = RetrievedShots(index, k=4, order="similarity")(q)
    hits = index.search([q], k=4)[0]
    assert [s.id for s in by_sim] == [h.item.id for h in hits][::-1]  # most similar last
    sims = [float(l2_normalize(vec[pool.index(s)]) @ l2_normalize(vec[-1])) for s in by_sim]
    assert sims == sorted(sims)
    sh = RetrievedShots(index, k=4, seed=7)
    assert sorted(s.id for s in sh(q)) == sorted(s.id for s in by_sim)  # shuffle: the same shots
    assert [s.id for s in sh(q)] == [s.id for s in RetrievedShots(index, k=4, seed=7)(q)]
    orders = {tuple(s.id for s in RetrievedShots(index, k=4, seed=s)(q)) for s in range(8)}
    assert len(orders) > 1  # the seed changes the order
    ep = make_episode(q, sh, k=3)
    assert ep.select == "rag" and len(ep.shots) == 3 and ep.items[-1] is q
    assert all(s.split == "train" for s in ep.shots)
    assert make_episode(q).select == "none" and make_episode(q, NoShots()).shots == []


# --- the AF1 interleaving rules, checked on episodes made by the selectors (template.render does the rendering) ---


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    template = pytest.importorskip("audioflamingo_lab.template")
    return template.build_tiny_tokenizer(save_dir=tmp_path_factory.mktemp("tok"))


def _answer_spans(r, tok):
    "Decoded runs of consecutive loss tokens."
    spans, cur = [], []
    for t, l in zip(r.input_ids, r.labels):
        if l != -100:
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    return [tok.decode(s) for s in spans]


@pytest.mark.parametrize("select", ["rag", "random"])
def test_rendered_episode_follows_af1_interleaving(pool, tok, select):
    from audioflamingo_lab.template import render, EOC

    index, _ = _index(pool)
    sel = RetrievedShots(index, k=3) if select == "rag" else RandomShots(pool, k=3, seed=0)
    q = Item("test1", pool[-1].audio, split="test", prompt="which?", answer="yes", options=["yes", "no"])
    ep = make_episode(q, sel)
    r = render(ep, tok, max_tokens=512)
    word = "similar" if select == "rag" else "random"
    assert f"Here are {word} examples. ".lower() in r.text.lower() and r.text.lower().count("here are") == 1
    assert r.text.count("OPTIONS") + r.text.count("options:") == 1  # options for the query only
    assert r.text.count(EOC) == 4 and r.text.rstrip().endswith(tok.eos_token)  # an EoC after every answer
    assert _answer_spans(r, tok) == [
        f"{it.answer.lower()}{EOC}" for it in ep.items
    ]  # loss on every answer, nothing else
    assert [a.id for a in r.audios] == [s.id for s in ep.shots] + ["test1"]


def test_truncation_drops_oldest_shots_never_the_query(pool, tok):
    from audioflamingo_lab.template import render

    index, _ = _index(pool)
    q = Item("test1", pool[-1].audio, split="test", prompt="describe the sound", answer="a long answer " * 3)
    ep = make_episode(q, RetrievedShots(index, k=7, order="similarity"))
    full = render(ep, tok, max_tokens=4096)
    short = render(ep, tok, max_tokens=len(full) - 5)
    assert 0 < short.dropped < 7 and len(short) <= len(full) - 5
    assert [a.id for a in short.audios] == [s.id for s in ep.shots[short.dropped :]] + [
        "test1"
    ]  # the newest shots stay
    assert _answer_spans(short, tok)[-1].startswith(q.answer.lower().strip())
