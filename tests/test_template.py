import random
import pytest
from audioflamingo_lab.core import Item, Episode
from audioflamingo_lab.template import (
    AUDIO,
    EOC,
    SEP,
    add_audio_tokens,
    build_tiny_tokenizer,
    render,
    render_chat,
    collate_rendered,
    token_ids,
)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(save_dir=tmp_path_factory.mktemp("tok"))


def enc(tok, s):
    return tok.encode(s, add_special_tokens=False)


def af1_scan_labels(input_ids, ids):
    "Independent reference: the AF1 rule (mask until <SEP>, keep through <|endofchunk|>), minus its </s> quirk."
    labels, on = [], False
    for t in input_ids:
        if t == ids["sep"]:
            labels.append(-100)
            on = True
        elif on:
            labels.append(t)
            on = t != ids["eoc"]
        else:
            labels.append(-100)
    return labels


def test_single_sample_hand_built(tok):
    ids = token_ids(tok)
    it = Item(id="a", audio="/x.wav", task="captioning", prompt="Describe the sound.", answer="A Dog barks.")
    r = render(it, tok, task_prefix=True)
    prompt = (
        [ids["bos"]]
        + enc(tok, "The task is audio captioning. ")
        + [ids["audio"]]
        + enc(tok, "describe the sound.\nAnswer:")
        + [ids["sep"]]
    )
    answer = enc(tok, "a dog barks.") + [ids["eoc"]]
    assert r.input_ids == prompt + answer + [ids["eos"]]
    assert r.labels == [-100] * len(prompt) + answer + [-100]
    assert r.labels == af1_scan_labels(r.input_ids, ids)
    assert (
        r.text
        == "<s>The task is audio captioning. <audio>describe the sound.\nAnswer:<SEP>a dog barks.<|endofchunk|></s>"
    )
    assert [a.id for a in r.audios] == ["a"]
    g = render(it, tok, task_prefix=False, with_answer=False)
    assert (
        g.text == "<s><audio>describe the sound.\nAnswer:<SEP>"
        and g.input_ids[-1] == ids["sep"]
        and set(g.labels) == {-100}
    )


def test_prefix_probability_uses_rng(tok):
    it = Item(id="a", audio="/x.wav", prompt="p", answer="a")
    with_prefix = [
        render(it, tok, task_prefix=0.5, rng=random.Random(s)).text.startswith("<s>The task") for s in range(40)
    ]
    assert 5 < sum(with_prefix) < 35
    assert render(it, tok, task_prefix=0.5).text == render(it, tok, task_prefix=0.5).text  # deterministic without rng


def test_four_shot_icl_hand_built(tok):
    ids = token_ids(tok)
    shots = [
        Item(id=f"s{i}", audio=f"/s{i}.wav", prompt="Classify.", answer=f"label {i}", options=["z", "y"])
        for i in range(4)
    ]
    q = Item(id="q", audio="/q.wav", task="classification", prompt="Classify.", answer="y", options=["z", "y"])
    r = render(Episode(query=q, shots=shots, select="random"), tok, task_prefix=False)
    exp_ids, exp_lab = [ids["bos"]] + enc(tok, "Here are random examples. "), None
    exp_lab = [-100] * len(exp_ids)
    for i in range(4):
        p = [ids["audio"]] + enc(tok, "classify.\nAnswer:") + [ids["sep"]]
        a = enc(tok, f"label {i}") + [ids["eoc"]]
        exp_ids += p + a
        exp_lab += [-100] * len(p) + a
    p = [ids["audio"]] + enc(tok, "classify.\nOPTIONS:\n - y.\n - z.\nAnswer:") + [ids["sep"]]
    a = enc(tok, "y") + [ids["eoc"]]
    exp_ids += p + a + [ids["eos"]]
    exp_lab += [-100] * len(p) + a + [-100]
    assert r.input_ids == exp_ids and r.labels == exp_lab
    assert r.labels == af1_scan_labels(r.input_ids, ids)
    assert r.text.count("OPTIONS") == 1 and [a.id for a in r.audios] == ["s0", "s1", "s2", "s3", "q"]
    assert render(Episode(query=q, shots=shots, select="rag"), tok).text.startswith("<s>Here are similar examples. ")


def test_three_turn_dialogue_hand_built(tok):
    ids = token_ids(tok)
    turns = [
        {"user": "What is it?", "assistant": "A siren."},
        {"user": "Near?", "assistant": "Far away."},
        {"user": "Moving?", "assistant": "Yes, it passes."},
    ]
    it = Item(id="d", audio="/d.wav", task="dialogue", turns=turns)
    r = render(it, tok)
    exp_ids = [ids["bos"]] + enc(tok, "The task is dialog. ") + [ids["audio"]]
    exp_lab = [-100] * len(exp_ids)
    for t in turns:
        p = enc(tok, f"user: {t['user'].lower()} \nassistant: ") + [ids["sep"]]
        a = enc(tok, t["assistant"].lower()) + [ids["eoc"]]
        exp_ids += p + a + [ids["eos"]] + enc(tok, "\n")
        exp_lab += [-100] * len(p) + a + [-100] * (1 + len(enc(tok, "\n")))
    assert r.input_ids == exp_ids and r.labels == exp_lab
    assert r.labels == af1_scan_labels(r.input_ids, ids)
    nxt = render_chat(turns, tok, next_user="Again?", audio="/d.wav")
    assert nxt.input_ids[: len(r)] == r.input_ids and nxt.text.endswith("user: again? \nassistant: <SEP>")
    assert [a.audio for a in nxt.audios] == ["/d.wav"]
    gen = render(it, tok, with_answer=False)  # inference on the last turn
    assert gen.text.endswith("user: moving? \nassistant: <SEP>") and "yes, it passes" not in gen.text


def test_truncation_drops_oldest_shots_keeps_query(tok):
    shots = [
        Item(id=f"s{i}", audio=f"/s{i}.wav", prompt="Describe the sound.", answer="a dog barks " * 3) for i in range(4)
    ]
    q = Item(id="q", audio="/q.wav", prompt="Describe the sound.", answer="rain")
    full = render(Episode(q, shots, "rag"), tok)
    for cut, kept in [(len(full), 4), (len(full) - 1, 3)]:
        r = render(Episode(q, shots, "rag"), tok, max_tokens=cut)
        assert (
            len(r) <= cut
            and r.dropped == 4 - kept
            and [a.id for a in r.audios] == [f"s{i}" for i in range(4 - kept, 4)] + ["q"]
        )
        assert r.text.endswith("<audio>describe the sound.\nAnswer:<SEP>rain<|endofchunk|></s>")
    solo = render(Episode(q, shots, "rag"), tok, max_tokens=len(render(q, tok)) + 1)
    assert solo.dropped == 4 and solo.text == render(q, tok).text  # no shots left: a plain single sample


def test_over_long_query_raises_naming_item(tok):
    q = Item(id="clip-42", audio="/q.wav", prompt="describe " * 200, answer="x")
    with pytest.raises(ValueError, match=r"clip-42.*max_tokens=64"):
        render(Episode(q, [Item(id="s", audio="/s.wav", prompt="p", answer="a")]), tok, max_tokens=64)


def test_text_only_item(tok):
    ids = token_ids(tok)
    r = render(Item(id="t", audio=None, prompt="Say hi.", answer="hi"), tok, task_prefix=False)
    assert (
        ids["audio"] not in r.input_ids and r.audios == [] and r.text == "<s>say hi.\nAnswer:<SEP>hi<|endofchunk|></s>"
    )


def test_options_only_for_query(tok):
    s = Item(id="s", audio="/s.wav", prompt="Which?", answer="b", options=["b", "a"])
    q = Item(id="q", audio="/q.wav", prompt="Which?", answer="a", options=["b.", "a"])
    r = render(Episode(q, [s, s]), tok)
    assert r.text.count("OPTIONS") == 1 and r.text.endswith(
        "which?\nOPTIONS:\n - a.\n - b.\nAnswer:<SEP>a<|endofchunk|></s>"
    )


def test_add_audio_tokens_resizes_and_is_idempotent(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, GPT2Config, GPT2LMHeadModel

    raw = Tokenizer(models.WordLevel({"a": 0, "b": 1, "</s>": 2}, unk_token="a"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    t = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>")
    lm = GPT2LMHeadModel(
        GPT2Config(vocab_size=3, n_embd=8, n_layer=1, n_head=2, n_positions=16, tie_word_embeddings=True)
    )
    old = lm.get_input_embeddings().weight[:3].clone()
    out = add_audio_tokens(t, lm)
    assert (
        len(t) == 7 and lm.get_input_embeddings().num_embeddings == 7 and out["pad"] == t.convert_tokens_to_ids("<pad>")
    )
    assert lm.get_output_embeddings().weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()  # still tied
    assert (lm.get_input_embeddings().weight[:3] == old).all()
    assert add_audio_tokens(t, lm) == out and len(t) == 7 and lm.get_input_embeddings().num_embeddings == 7
    assert t.decode([out["audio"], 0], skip_special_tokens=True) == "a"


def test_tokenizer_cached_and_deterministic(tmp_path):
    a = build_tiny_tokenizer(["a tabla plays a fast rhythm"], vocab_size=600, save_dir=tmp_path / "a")
    b = build_tiny_tokenizer(["a tabla plays a fast rhythm"], vocab_size=600, save_dir=tmp_path / "b")
    assert a.get_vocab() == b.get_vocab() and len(list((tmp_path / "a").iterdir())) == 1
    assert all(x in a.get_vocab() for x in (AUDIO, EOC, SEP, "<s>", "</s>", "<pad>", "<unk>"))
    text = "Ünïcode ✓ tabla"
    assert a.decode(a.encode(text, add_special_tokens=False)) == text


def test_collate_padding(tok):
    ids = token_ids(tok)
    r1 = render(Item(id="1", audio="/1.wav", prompt="p", answer="long answer here"), tok)
    r2 = render(Item(id="2", audio="/2.wav", prompt="p", answer="x"), tok)
    b = collate_rendered([r1, r2], ids["pad"])
    assert (
        b["attention_mask"][1].sum() == len(r2)
        and (b["input_ids"][1, len(r2) :] == ids["pad"]).all()
        and b["ids"] == ["1", "2"]
    )
    bl = collate_rendered([r1, r2], ids["pad"], padding_side="left")
    assert bl["input_ids"][1, -len(r2) :].tolist() == r2.input_ids and (bl["labels"][1, : -len(r2)] == -100).all()
    with pytest.raises(ValueError, match="padding_side"):
        collate_rendered([r1], 0, padding_side="middle")


def test_inferable_shot_loss_trains_only_repeated_labels():
    "Relabelled episodes: a shot's new name is in the loss only if an earlier shot showed it; the query always is."
    from audioflamingo_lab.core import Episode, Item
    from audioflamingo_lab.template import build_tiny_tokenizer, render, EOC

    tok = build_tiny_tokenizer()
    names = ["dax", "wug", "dax", "blick", "wug"]
    shots = [Item(f"s{i}", f"/a{i}.wav", prompt="what is it?", answer=n) for i, n in enumerate(names)]
    query = Item("q", "/q.wav", prompt="what is it?", answer="blick", options=["blick", "dax", "wug"])
    trained = lambda ep: tok.decode(
        [t for t, l in zip(*(lambda r: (r.input_ids, r.labels))(render(ep, tok))) if l != -100]
    )
    assert trained(Episode(query, shots, "balanced", shot_loss="inferable")) == f"dax{EOC}wug{EOC}blick{EOC}"
    assert trained(Episode(query, shots, "balanced")).count(EOC) == 6  # AF1: every answer
    with pytest.raises(ValueError, match="shot_loss must be"):
        render(Episode(query, shots, shot_loss="some"), tok)
