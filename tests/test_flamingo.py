"The wrapped LM against the plain LM (gates at 0) and cached against uncached decoding (gates open)."

import copy
import pytest, torch
from audioflamingo_lab.flamingo import Flamingo, _build_lm, build_model
from audioflamingo_lab.flamingo_config import FlamingoConfig
from audioflamingo_lab.lm_wrap import XAttnDecoderLayer
from audioflamingo_lab.template import token_ids
from audioflamingo_lab.inference import generate_text

SMALL = dict(
    xattn_heads=2,
    xattn_dim_head=16,
    xattn_ff_mult=2,
    media_dim=32,
    audio_depth=1,
    audio_heads=2,
    audio_ffn=64,
    encoder=None,
    encoder_dim=24,
    max_windows=4,
    max_audios=8,
)
LMS = {
    "llama": dict(
        model_type="llama",
        vocab_size=None,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
    ),
    "opt": dict(
        model_type="opt",
        vocab_size=None,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=128,
        max_position_embeddings=256,
        word_embed_proj_dim=64,
    ),
    "gpt2": dict(model_type="gpt2", vocab_size=None, n_embd=64, n_layer=2, n_head=4, n_positions=256),
}


def make(kind="llama", xattn_every=1, seed=0, media_attention="cumulative"):
    torch.manual_seed(seed)
    config = FlamingoConfig(lm_config=LMS[kind], xattn_every=xattn_every, media_attention=media_attention, **SMALL)
    lm, tok = _build_lm(config)
    plain = copy.deepcopy(lm).eval()
    return Flamingo(config, lm, tok).eval(), plain


def open_gates(model, attn=0.8, ff=0.3):
    with torch.no_grad():
        for _, l in model.xattn_layers():
            l.xattn.alpha_attn.fill_(attn)
            l.xattn.alpha_ff.fill_(ff)


def prompt(model, n_audios, length, seed):
    "Random text ids with n <audio> tokens spread over it, BOS first; plus random window embeddings."
    g = torch.Generator().manual_seed(seed)
    ids = token_ids(model.tokenizer)
    specials = set(ids.values())
    body = [t for t in torch.randint(10, len(model.tokenizer), (length,), generator=g).tolist() if t not in specials]
    pos = sorted(torch.randperm(len(body), generator=g)[:n_audios].tolist())
    for p in pos:
        body[p] = ids["audio"]
    emb = torch.randn(1, max(n_audios, 1), 4, model.config.encoder_dim, generator=g)
    mask = torch.zeros(1, max(n_audios, 1), 4, dtype=torch.bool)
    for k in range(n_audios):
        mask[0, k, : 1 + k % 4] = True
    return [ids["bos"]] + body, emb, mask


@pytest.mark.parametrize("kind", ["llama", "opt", "gpt2"])
def test_gates_zero_equal_plain_lm(kind):
    model, plain = make(kind, xattn_every=1 if kind != "gpt2" else 2)
    assert len(model.xattn_layers()) == (2 if kind != "gpt2" else 1)
    rows = [prompt(model, n, 20, seed=n) for n in (0, 2)]
    T = max(len(r[0]) for r in rows)
    input_ids = torch.full((2, T), model.token_ids["pad"])
    am = torch.zeros(2, T, dtype=torch.long)
    for b, (ids, _, _) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        am[b, : len(ids)] = 1
    emb = torch.randn(2, 2, 4, 24)
    mask = torch.zeros(2, 2, 4, dtype=torch.bool)
    mask[1] = rows[1][2][0]
    labels = input_ids.masked_fill(am == 0, -100)
    with torch.no_grad():
        out = model(input_ids, am, labels=labels, audio_embeds=emb, media_mask=mask)
        ref = plain(input_ids=input_ids, attention_mask=am, labels=labels)
    assert torch.allclose(out.logits, ref.logits, atol=1e-5) and torch.allclose(out.loss, ref.loss, atol=1e-5)
    open_gates(model)
    with torch.no_grad():
        opened = model(input_ids, am, audio_embeds=emb, media_mask=mask).logits
    assert not torch.allclose(opened, ref.logits, atol=1e-3)  # the blocks really are in the path


def greedy_uncached(model, ids, emb, mask, steps):
    "Reference: re-run the full sequence through Flamingo.forward at every step."
    seq, logits = list(ids), []
    for _ in range(steps):
        with torch.no_grad():
            out = model(
                torch.tensor([seq]), audio_embeds=emb if mask.any() else None, media_mask=mask if mask.any() else None
            )
        step = out.logits[0, -1]
        logits.append(step)  # raw logits, as generate(output_logits=True)
        allowed = step.clone()
        allowed[model.token_ids["audio"]] = float("-inf")
        seq.append(int(allowed.argmax()))
    return seq[len(ids) :], torch.stack(logits)


@pytest.mark.parametrize("rule", ["cumulative", "immediate"])
@pytest.mark.parametrize("n_audios", [1, 2, 8])
def test_cached_greedy_equals_uncached_batched_left_padded(n_audios, rule):
    model, _ = make("llama", media_attention=rule)
    open_gates(model)
    rows = [prompt(model, n_audios, L, seed=10 * n_audios + L) for L in (12, 25)]
    T = max(len(r[0]) for r in rows)
    input_ids = torch.full((2, T), model.token_ids["pad"])
    am = torch.zeros(2, T, dtype=torch.long)
    for b, (ids, _, _) in enumerate(rows):
        input_ids[b, T - len(ids) :] = torch.tensor(ids)
        am[b, T - len(ids) :] = 1
    emb, mask = torch.cat([r[1] for r in rows]), torch.cat([r[2] for r in rows])
    out = model.generate(
        input_ids,
        am,
        audio_embeds=emb,
        media_mask=mask,
        max_new_tokens=6,
        do_sample=False,
        eos_token_id=None,
        output_logits=True,
        return_dict_in_generate=True,
    )
    for b, (ids, e, m) in enumerate(rows):
        tokens, logits = greedy_uncached(model, ids, e, m, 6)
        assert out.sequences[b, T:].tolist() == tokens
        got = torch.stack([l[b] for l in out.logits])
        assert torch.allclose(got, logits, atol=1e-4)
    # not vacuous: the last audio changes what the answer tokens see
    emb2 = emb.clone()
    emb2[:, n_audios - 1] += 3.0
    out2 = model.generate(
        input_ids,
        am,
        audio_embeds=emb2,
        media_mask=mask,
        max_new_tokens=6,
        do_sample=False,
        eos_token_id=None,
        output_logits=True,
        return_dict_in_generate=True,
    )
    assert not torch.allclose(out2.logits[-1], out.logits[-1], atol=1e-3)


@pytest.mark.parametrize("n_audios", [2, 8])
def test_cached_beam_search_equals_uncached(n_audios):
    model, _ = make("opt")
    open_gates(model)
    ids, emb, mask = prompt(model, n_audios, 20, seed=n_audios)
    kw = dict(
        audio_embeds=emb,
        media_mask=mask,
        max_new_tokens=5,
        num_beams=3,
        num_return_sequences=2,
        do_sample=False,
        eos_token_id=None,
        output_scores=True,
        return_dict_in_generate=True,
    )
    a = model.generate(torch.tensor([ids]), use_cache=True, **kw)
    b = model.generate(torch.tensor([ids]), use_cache=False, **kw)
    assert torch.equal(a.sequences, b.sequences) and a.sequences.shape[0] == 2
    assert torch.allclose(a.sequences_scores, b.sequences_scores, atol=1e-4)


def test_sampling_multiple_sequences_and_text_only():
    model, _ = make("gpt2")
    open_gates(model)
    ids, emb, mask = prompt(model, 2, 15, seed=3)
    torch.manual_seed(0)
    out = model.generate(
        torch.tensor([ids]),
        audio_embeds=emb,
        media_mask=mask,
        max_new_tokens=4,
        do_sample=True,
        top_k=20,
        num_return_sequences=3,
        eos_token_id=None,
    )
    assert out.shape == (3, len(ids) + 4) and not (out[:, len(ids) :] == model.token_ids["audio"]).any()
    text_ids, _, _ = prompt(model, 0, 10, seed=4)
    assert model.generate(torch.tensor([text_ids]), max_new_tokens=3, eos_token_id=None).shape == (1, len(text_ids) + 3)


def test_past_key_values_continuation_with_audios_before():
    model, _ = make("llama")
    open_gates(model)
    ids, emb, mask = prompt(model, 2, 20, seed=5)
    x = torch.tensor([ids])
    with torch.no_grad():
        full = model(x, audio_embeds=emb, media_mask=mask).logits
        first = model(x[:, :9], audio_embeds=emb, media_mask=mask, use_cache=True, audios_before=torch.tensor([0]))
        rest = model(
            x[:, 9:],
            audio_embeds=emb,
            media_mask=mask,
            past_key_values=first.cache,
            use_cache=True,
            audios_before=first.audios_seen,
        )
    assert torch.allclose(torch.cat([first.logits, rest.logits], 1), full, atol=1e-4)
    with pytest.raises(ValueError, match="audios_before"):
        model(x[:, 9:], audio_embeds=emb, media_mask=mask, past_key_values=first.cache)


def test_errors_and_hook_after_resize():
    model, _ = make("llama")
    ids, emb, mask = prompt(model, 2, 20, seed=6)
    with pytest.raises(ValueError, match="row 0 has 2 <audio> tokens but 1 audios"):
        m1 = mask.clone()
        m1[0, 1] = False
        model(torch.tensor([ids]), audio_embeds=emb, media_mask=m1)
    with pytest.raises(ValueError, match="left-padded"):
        model.generate(
            torch.tensor([ids]), torch.tensor([[1] * (len(ids) - 1) + [0]]), audio_embeds=emb, media_mask=mask
        )
    with pytest.raises(ValueError, match="no window encoder"):
        model(torch.tensor([ids]), audio=torch.randn(1, 2, 4, 100), media_mask=mask)
    open_gates(model)
    model.lm.resize_token_embeddings(len(model.tokenizer) + 8, mean_resizing=False)  # replaces the embedding module
    test = lambda use_cache: model.generate(
        torch.tensor([ids]),
        audio_embeds=emb,
        media_mask=mask,
        max_new_tokens=4,
        do_sample=False,
        eos_token_id=None,
        use_cache=use_cache,
    )
    assert torch.equal(test(True), test(False))


def test_cross_attentions_and_gradients():
    model, _ = make("llama")
    ids, emb, mask = prompt(model, 2, 20, seed=7)
    x = torch.tensor([ids])
    maps = model.cross_attention({"input_ids": x, "audio_embeds": emb, "media_mask": mask})
    first = ids.index(model.token_ids["audio"])
    assert len(maps) == 2 and maps[0].shape == (1, 2, len(ids), 8)
    assert (maps[0][0, :, :first] == 0).all() and torch.allclose(maps[0][0, :, first:].sum(-1), torch.ones(1))
    model.train()
    out = model(x, labels=x, audio_embeds=emb, media_mask=mask)
    out.loss.backward()
    block = model.xattn_layers()[0][1].xattn
    assert block.alpha_attn.grad.abs() > 0 and block.alpha_ff.grad.abs() > 0  # gates learn from step one
    assert all(isinstance(l, XAttnDecoderLayer) for _, l in model.xattn_layers())


def test_build_model_presets_without_encoder():
    model = build_model("tiny", encoder=None)
    assert model.config == FlamingoConfig.from_name("tiny", encoder=None) and len(model.xattn_layers()) == 4
    assert model.lm.config._attn_implementation == "sdpa"
    assert generate_text(model, "hello", max_new_tokens=2, do_sample=False) is not None


def test_immediate_rule_hides_earlier_audios_from_the_cross_attention():
    "Immediate: tokens after the last <audio> put no cross-attention on earlier audios' windows; cumulative: they do."
    for rule in ("immediate", "cumulative"):
        model, _ = make("llama", media_attention=rule)
        open_gates(model)
        ids, emb, mask = prompt(model, 3, 20, seed=5)
        last = max(i for i, t in enumerate(ids) if t == model.token_ids["audio"])
        maps = model.cross_attention({"input_ids": torch.tensor([ids]), "audio_embeds": emb, "media_mask": mask})
        earlier = torch.stack([m[0, :, last:, : 2 * 4].sum() for m in maps]).sum()  # slots of audios 0 and 1
        assert (float(earlier) == 0.0) == (rule == "immediate"), rule
