"Inference preparation (text + audio -> tensors) against brute-force constructions; the model itself does no I/O."

import numpy as np, pytest, soundfile as sf, torch
from audioflamingo_lab.audio import load_audio, sliding_windows
from audioflamingo_lab.core import Episode, Item, seed_everything
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.flamingo import Flamingo, build_model
from audioflamingo_lab.inference import (
    AudioFlamingoProcessor,
    audio_embeds,
    generate_text,
    model_device,
    question_episode,
)
from audioflamingo_lab.template import render
from conftest import write_tone


@pytest.fixture(scope="module")
def model():
    seed_everything(0)
    m = build_model("tiny").eval()
    with torch.no_grad():  # open gates: the audio changes the answers, so a wrong clip would show
        for _, layer in m.xattn_layers():
            layer.xattn.alpha_attn.fill_(0.8)
            layer.xattn.alpha_ff.fill_(0.3)
    return m


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    return [
        str(write_tone(folder / f"c{k}.wav", seconds=s, freq=f))
        for k, (s, f) in enumerate([(3.0, 440.0), (10.0, 660.0), (8.0, 330.0)])
    ]


def test_the_model_class_does_no_io():
    for name in ("generate_text", "load_audio_embeds", "_device"):
        assert not hasattr(Flamingo, name)


def test_audio_embeds_stacks_each_clip_encoded_by_hand(model, clips):
    emb, mask = audio_embeds(model, clips[:2])
    enc = model.encoder
    for a, path in enumerate(clips[:2]):
        windows, m = sliding_windows(
            load_audio(path, enc.sample_rate),
            enc.sample_rate,
            enc.window_s,
            enc.hop_s,
            max_windows=model.config.max_windows,
        )
        assert torch.equal(mask[0, a], m)
        with torch.no_grad():
            by_hand = enc(windows[m][None])[0]
        assert torch.allclose(emb[0, a, m], by_hand, atol=1e-5) and not emb[0, a, ~m].any()
    wave = sf.read(clips[0], dtype="float32")[0]
    wave_emb, wave_mask = audio_embeds(model, [wave])
    windows, m = sliding_windows(wave, enc.sample_rate, enc.window_s, enc.hop_s, max_windows=model.config.max_windows)
    with torch.no_grad():
        by_hand = enc(windows[m][None])[0]
    assert torch.equal(wave_mask[0, 0], m) and torch.allclose(wave_emb[0, 0, m], by_hand, atol=1e-6)
    assert emb.device == model_device(model)


def brute_force(model, episodes, media_of, with_answer, padding_side, task_prefix=True):
    "Each episode rendered, each of its audios fetched, everything padded into zero tensors by loops."
    rendered = [
        render(e, model.tokenizer, model.config.max_tokens, with_answer=with_answer, task_prefix=task_prefix)
        for e in episodes
    ]
    media = [[media_of(item) for item in r.audios] for r in rendered]
    T, A = max(len(r.input_ids) for r in rendered), max(len(m) for m in media)
    n = max(x.shape[0] for m in media for x, _ in m)
    feature = next(x for m in media for x, _ in m).shape[1:]
    ids = torch.full((len(episodes), T), model.tokenizer.pad_token_id)
    attention, x_all = torch.zeros(len(episodes), T, dtype=torch.long), torch.zeros(len(episodes), A, n, *feature)
    mask = torch.zeros(len(episodes), A, n, dtype=torch.bool)
    for b, r in enumerate(rendered):
        start = T - len(r.input_ids) if padding_side == "left" else 0
        ids[b, start : start + len(r.input_ids)] = torch.tensor(r.input_ids)
        attention[b, start : start + len(r.input_ids)] = 1
        for a, (x, m) in enumerate(media[b]):
            x_all[b, a, : len(x)], mask[b, a, : len(m)] = x, m
    return ids, attention, x_all, mask


@pytest.mark.parametrize(
    "use_cache,with_answer,padding_side",
    [(False, True, "right"), (False, False, "left"), (True, True, "right"), (True, False, "left")],
)
def test_episodes_batch_equals_brute_force(model, clips, tmp_path, use_cache, with_answer, padding_side):
    shots = [Item(id=f"s{k}", audio=clips[k], prompt="what is it?", answer=f"tone {k}") for k in range(2)]
    episodes = [
        Episode(Item(id="q", audio=clips[2], prompt="what is it?", answer="a low tone"), shots=shots),
        Episode(Item(id="t", audio=None, prompt="say hi", answer="hi")),
        Episode(Item(id="p", audio=clips[0], prompt="describe.", answer="a beep")),
    ]
    cache = EmbeddingCache(tmp_path / "cache", model.encoder) if use_cache else None
    processor = AudioFlamingoProcessor.from_model(model)
    batch, rendered = processor.episodes(episodes, cache, with_answer=with_answer, padding_side=padding_side)
    enc = model.encoder

    def media_of(item):
        if use_cache:
            return cache.get(item.audio)
        return sliding_windows(
            load_audio(item.audio, enc.sample_rate),
            enc.sample_rate,
            enc.window_s,
            enc.hop_s,
            max_windows=model.config.max_windows,
        )

    ids, attention, x_all, mask = brute_force(model, episodes, media_of, with_answer, padding_side)
    assert torch.equal(batch["input_ids"], ids) and torch.equal(batch["attention_mask"], attention)
    assert torch.equal(batch["audio_embeds" if use_cache else "audio"], x_all) and torch.equal(
        batch["media_mask"], mask
    )
    assert [r.input_ids for r in rendered] == [
        render(e, model.tokenizer, with_answer=with_answer).input_ids for e in episodes
    ]


def test_processor_call_equals_brute_force_and_the_model_runs_on_it(model, clips):
    processor = AudioFlamingoProcessor.from_model(model)
    wave = sf.read(clips[0], dtype="float32")[0]
    batch = processor(
        text=["what is it?", "hello", "and this?"], audio=[wave, None, clips[1]], task="aqa", padding_side="left"
    )
    episodes = [
        Episode(Item(id=f"sample{k}", audio=None if a is None else f"audio{k}", prompt=p, task="aqa"))
        for k, (p, a) in enumerate([("what is it?", wave), ("hello", None), ("and this?", clips[1])])
    ]
    enc = model.encoder
    waves = {"audio0": wave, "audio2": load_audio(clips[1], enc.sample_rate)}

    def media_of(item):
        return sliding_windows(waves[item.audio], enc.sample_rate, enc.window_s, enc.hop_s, max_windows=16)

    ids, attention, x_all, mask = brute_force(model, episodes, media_of, False, "left")
    assert torch.equal(batch["input_ids"], ids) and torch.equal(batch["attention_mask"], attention)
    assert torch.equal(batch["audio"], x_all) and torch.equal(batch["media_mask"], mask)
    with torch.no_grad():
        assert model(**batch).logits.shape[:2] == ids.shape


def old_generate_text(model, prompt, audio=None, answers=None, task=None, **decoding):
    "The reference: what `Flamingo.generate_text` did, written out (items -> episode -> render -> embeddings)."
    audios = [] if audio is None else list(audio) if isinstance(audio, (list, tuple)) else [audio]
    answers = list(answers or [])
    items = [
        Item(
            id=f"audio{k}",
            audio=f"audio{k}" if audios else None,
            prompt=prompt,
            task=task or "captioning",
            answer=(answers[k] if k < len(answers) else ""),
        )
        for k in range(max(len(audios), 1))
    ]
    r = render(
        Episode(query=items[-1], shots=items[:-1], select="random"),
        model.tokenizer,
        max_tokens=model.config.max_tokens,
        with_answer=False,
        task_prefix=task is not None,
    )
    audios = audios[r.dropped :]
    ids = torch.tensor([r.input_ids])
    embs, masks = [], []
    for path in audios:
        e, m = model.encoder.encode_file(path, max_windows=model.config.max_windows)
        embs.append(e)
        masks.append(m)
    kw = dict(audio_embeds=torch.stack(embs)[None], media_mask=torch.stack(masks)[None]) if audios else {}
    out = model.generate(ids, torch.ones_like(ids), **kw, **decoding)
    return model.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip(), r


@pytest.mark.parametrize("n_shots,task", [(0, None), (1, "aqa"), (2, None)])
def test_generate_text_equals_the_old_method(model, clips, n_shots, task):
    audio = clips[-1] if n_shots == 0 else clips[:n_shots] + [clips[-1]]
    answers = [f"tone {k}" for k in range(n_shots)]
    want, _ = old_generate_text(model, "what is it?", audio, answers, task, max_new_tokens=4, min_new_tokens=4)
    assert generate_text(model, "what is it?", audio, answers, task, max_new_tokens=4, min_new_tokens=4) == want
    assert (
        generate_text(model, "what is it?", max_new_tokens=3)
        == old_generate_text(model, "what is it?", max_new_tokens=3)[0]
    )


def test_generate_text_leaves_out_the_clips_of_shots_truncation_dropped(model, clips, monkeypatch):
    long_answer = " ".join(["word"] * 200)
    small = build_model("tiny", max_tokens=120).eval()
    seen = {}

    def fake_generate(ids, attention_mask, audio_embeds=None, media_mask=None, **kw):
        seen.update(ids=ids, emb=audio_embeds, mask=media_mask)
        return ids

    monkeypatch.setattr(small, "generate", fake_generate)
    generate_text(small, "what is it?", clips, answers=[long_answer, "short"])
    r = render(
        question_episode("what is it?", 3, [long_answer, "short"]),
        small.tokenizer,
        120,
        with_answer=False,
        task_prefix=False,
    )
    assert r.dropped == 1 and seen["ids"][0].tolist() == r.input_ids
    emb, mask = audio_embeds(small, clips[1:])  # the first shot's clip is gone with its shot
    assert torch.equal(seen["emb"], emb) and torch.equal(seen["mask"], mask)


def test_generate_text_errors(model, clips):
    with pytest.raises(ValueError, match="pass answers for the first 1"):
        generate_text(model, "q", clips[:2])
    no_encoder = build_model("tiny", encoder=None)
    with pytest.raises(ValueError, match="no window encoder"):
        generate_text(no_encoder, "q", clips[0])


def test_widgets_and_fewshot_batches_are_the_processors(model, clips):
    from audioflamingo_lab.attention_explorer import episodes_batch

    episodes = [Episode(Item(id="q", audio=clips[0], prompt="what is it?", answer="a tone"))]
    batch = episodes_batch(model, episodes, encoder=model.encoder)
    want, _ = AudioFlamingoProcessor.from_model(model).episodes(episodes, with_answer=True)
    assert batch.keys() == want.keys() and batch["ids"] == want["ids"]
    assert all(torch.equal(batch[k], want[k]) for k in want if k != "ids")
