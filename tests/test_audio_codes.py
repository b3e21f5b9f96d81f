"Audio codes (06d): the gate at 0 and gates-off give the plain LM; the codebook survives a checkpoint; clear errors."

import copy
import numpy as np
import pytest, torch
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.flamingo_config import FlamingoConfig
from audioflamingo_lab.audio_codes import AudioCodebook, fit_codebook
from audioflamingo_lab.fewshot_controls import gates_closed
from audioflamingo_lab.training import configure_trainable
from audioflamingo_lab.checkpoint import save_checkpoint, load_checkpoint, checkpoint_info


def coded_tiny(gate: float, books: int = 1, sizes: tuple = (), temperature: float = 0.0):
    torch.manual_seed(0)
    shape = dict(audio_codes=3, code_books=books, code_sizes=sizes, code_gate_init=gate, code_temperature=temperature)
    model = build_model("tiny", encoder=None, **shape).eval()
    vectors = torch.nn.functional.normalize(torch.randn(12, model.config.encoder_dim), dim=-1).numpy()
    model.codebook.fit(vectors)
    return model


def two_audio_batch(model):
    ids = model.token_ids
    words = model.tokenizer("dog", add_special_tokens=False).input_ids
    row = [ids["audio"], *words, ids["sep"], *words, ids["eoc"], ids["audio"], *words, ids["sep"]]
    emb = torch.randn(1, 2, 2, model.config.encoder_dim)
    return torch.tensor([row]), emb, torch.ones(1, 2, 2, dtype=torch.bool)


def open_closed_and_plain(model):
    "The two-audio batch, and its logits with the codes open, with every gate closed, and from the plain LM."
    input_ids, emb, mask = two_audio_batch(model)
    with torch.no_grad():
        opened = model(input_ids, audio_embeds=emb, media_mask=mask).logits
        with gates_closed(model):
            closed = model(input_ids, audio_embeds=emb, media_mask=mask).logits
        text_only = copy.deepcopy(model.lm)(input_ids).logits
    return (input_ids, emb, mask), opened, closed, text_only


def test_gates_off_with_codes_is_the_plain_lm():
    model = coded_tiny(gate=4.0)
    (input_ids, _, _), opened, closed, text_only = open_closed_and_plain(model)
    assert torch.allclose(closed, text_only, atol=1e-5)
    assert not torch.allclose(opened, text_only, atol=1e-3)  # the open codes change what the LM reads
    sep = int((input_ids[0] == model.token_ids["sep"]).nonzero()[0])
    assert torch.allclose(opened[0, :sep], text_only[0, :sep], atol=1e-5)  # nothing changes before the first <SEP>


def test_the_code_follows_the_query_audio():
    model = coded_tiny(gate=20.0)
    input_ids, emb, mask = two_audio_batch(model)
    far = -model.codebook.centroids[:1]  # a clip opposite to code 0 gets another code
    swapped = emb.clone()
    swapped[0, 1] = model.codebook.centroids[0]
    codes_a = model.codebook.assign(swapped, mask)
    swapped[0, 1] = far
    codes_b = model.codebook.assign(swapped, mask)
    assert codes_a.shape == (1, 2, 1)  # (batch, audios, books)
    assert codes_a[0, 1, 0] == 0 and codes_b[0, 1, 0] != 0 and codes_a[0, 0, 0] == codes_b[0, 0, 0]


def test_two_code_books_change_two_tokens_per_clip_and_close_with_the_gates(tmp_path):
    model = coded_tiny(gate=4.0, books=2, sizes=(4, 3))  # books of different sizes: 7 centroid rows
    (input_ids, emb, mask), opened, closed, text_only = open_closed_and_plain(model)
    assert model.codebook.assign(emb, mask).shape == (1, 2, 2)
    assert torch.allclose(closed, text_only, atol=1e-5)
    first_code = int((input_ids[0] == model.token_ids["sep"]).nonzero()[0]) - 1  # book 0 sits in front of <SEP>
    assert torch.allclose(opened[0, :first_code], text_only[0, :first_code], atol=1e-5)
    assert not torch.allclose(opened[0, first_code], text_only[0, first_code], atol=1e-3)
    again = load_checkpoint(save_checkpoint(configure_trainable(model, "pretrain"), tmp_path / "m.safetensors")).eval()
    assert again.codebook.sizes == (4, 3) and torch.equal(again.codebook.centroids, model.codebook.centroids)
    with torch.no_grad():
        assert torch.allclose(again(input_ids, audio_embeds=emb, media_mask=mask).logits, opened, atol=1e-5)


def test_soft_codes_at_a_tiny_temperature_are_the_hard_codes_and_close_with_the_gates(tmp_path):
    hard = coded_tiny(gate=4.0, books=2)
    (input_ids, emb, mask), hard_logits, _, _ = open_closed_and_plain(hard)
    soft = coded_tiny(gate=4.0, books=2, temperature=1e-6)  # the same seed: the same LM, centroids and words
    with torch.no_grad():
        assert torch.allclose(soft(input_ids, audio_embeds=emb, media_mask=mask).logits, hard_logits, atol=1e-5)
    warm = coded_tiny(gate=4.0, books=2, temperature=0.5)
    _, opened, closed, text_only = open_closed_and_plain(warm)
    assert torch.allclose(closed, text_only, atol=1e-5) and not torch.allclose(opened, hard_logits, atol=1e-3)
    again = load_checkpoint(save_checkpoint(configure_trainable(warm, "pretrain"), tmp_path / "m.safetensors")).eval()
    assert again.codebook.temperature == 0.5 and again.config.code_temperature == 0.5
    with torch.no_grad():
        assert torch.allclose(again(input_ids, audio_embeds=emb, media_mask=mask).logits, opened, atol=1e-5)


def test_soft_codes_decode_the_same_with_and_without_the_kv_cache():
    model = coded_tiny(gate=4.0, books=2, temperature=0.5)
    input_ids, emb, mask = two_audio_batch(model)
    greedy = dict(audio_embeds=emb, media_mask=mask, max_new_tokens=4, do_sample=False)
    cached = model.generate(input_ids, **greedy)
    uncached = model.generate(input_ids, **greedy, use_cache=False)
    assert torch.equal(cached, uncached)


def test_an_unfitted_codebook_is_a_clear_error():
    model = build_model("tiny", encoder=None, audio_codes=2)
    input_ids, emb, mask = two_audio_batch(model)
    with pytest.raises(RuntimeError, match="fit_codebook"):
        model(input_ids, audio_embeds=emb, media_mask=mask)
    with pytest.raises(ValueError, match="no audio codebook"):
        fit_codebook(build_model("tiny", encoder=None), [])
    with pytest.raises(ValueError, match="cannot fit 4 codes"):
        AudioCodebook(4, 2, vocab_size=100).fit(np.eye(2, dtype=np.float32))


def test_the_codebook_survives_a_checkpoint(tmp_path):
    model = configure_trainable(coded_tiny(gate=1.5), "pretrain")
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    again = load_checkpoint(path)
    assert torch.equal(again.codebook.centroids, model.codebook.centroids) and bool(again.codebook.fitted)
    assert float(again.codebook.alpha_code.detach()) == 1.5 and torch.equal(again.codebook.words, model.codebook.words)
    assert checkpoint_info(path)["config"]["audio_codes"] == 3


def test_a_trainable_only_checkpoint_keeps_the_codebook():
    config = FlamingoConfig.from_name("tiny", encoder=None, audio_codes=2)
    from audioflamingo_lab.training import _checkpoint_keys

    model = configure_trainable(build_model(config), "pretrain")
    keys = _checkpoint_keys(model, full=False)
    assert {"codebook.centroids", "codebook.words", "codebook.fitted", "codebook.alpha_code"} <= set(keys)


def test_a_frozen_code_gate_is_saved_and_loads(tmp_path):
    "With the new rows frozen the code gate is frozen too (07), but the checkpoint keeps it, as files made before did."
    model = configure_trainable(coded_tiny(gate=1.5), "pretrain", new_tokens=False)
    assert not model.codebook.alpha_code.requires_grad
    again = load_checkpoint(save_checkpoint(model, tmp_path / "m.safetensors"))
    assert float(again.codebook.alpha_code.detach()) == 1.5 and not again.codebook.alpha_code.requires_grad


def test_generation_never_writes_sep_or_audio():
    "A generated <SEP> would need code tokens in front of it (in the KV cache already): generate suppresses it."
    model = coded_tiny(gate=4.0, books=2)
    input_ids, emb, mask = two_audio_batch(model)
    head = model.lm.get_output_embeddings()
    bias = torch.zeros(head.out_features)
    bias[[model.token_ids["sep"], model.token_ids["audio"]]] = 100.0  # the LM would rather write them than anything
    head.bias = torch.nn.Parameter(bias)
    with torch.no_grad():
        out = model.generate(input_ids, audio_embeds=emb, media_mask=mask, max_new_tokens=4, do_sample=False)
    new = out[0, input_ids.shape[1] :].tolist()
    assert len(new) == 4 and model.token_ids["sep"] not in new and model.token_ids["audio"] not in new
