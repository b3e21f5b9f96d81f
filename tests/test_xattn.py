"The text x window mask against a brute-force construction; the gated block against hand-computed references."

import random
import pytest, torch
from audioflamingo_lab.xattn import media_attention_mask, GatedCrossAttentionBlock
from audioflamingo_lab.audio_layers import AudioTransformer

AUDIO = 7


def brute_mask(ids, media_mask, audios_before=None, rule="cumulative"):
    "The rule spelled out token by token: after the k-th <audio>, real windows of audios 0..k (immediate: of audio k)."
    B, T = len(ids), len(ids[0])
    _, A, n = media_mask.shape
    out = torch.zeros(B, T, A * n, dtype=torch.bool)
    for b in range(B):
        seen = 0 if audios_before is None else int(audios_before[b])
        for t in range(T):
            if ids[b][t] == AUDIO:
                seen += 1
            for k in range(seen):
                if rule == "immediate" and k != seen - 1:
                    continue
                for j in range(n):
                    if media_mask[b, k, j]:
                        out[b, t, k * n + j] = True
    return out


def random_layout(rng, B, T, A, n, counts):
    ids = [[rng.choice([1, 2, 3, 4]) for _ in range(T)] for _ in range(B)]
    media_mask = torch.zeros(B, A, n, dtype=torch.bool)
    for b, c in enumerate(counts):
        for pos in sorted(rng.sample(range(T), c)):
            ids[b][pos] = AUDIO
        for k in range(c):
            media_mask[b, k, : rng.randint(1, n)] = True  # padded windows at the end
    return ids, media_mask


@pytest.mark.parametrize("rule", ["cumulative", "immediate"])
@pytest.mark.parametrize("counts", [[0], [1], [2], [8], [0, 1, 2, 8], [3, 3], [8, 0]])
def test_mask_matches_brute_force(counts, rule):
    rng = random.Random(sum(counts) * 31 + len(counts))
    A, n, T = max(max(counts), 1), 4, 24
    ids, media_mask = random_layout(rng, len(counts), T, A, n, counts)
    got = media_attention_mask(torch.tensor(ids), AUDIO, media_mask, rule=rule)
    assert torch.equal(got, brute_mask(ids, media_mask, rule=rule))


@pytest.mark.parametrize("rule", ["cumulative", "immediate"])
def test_mask_with_audios_before_equals_the_tail_of_the_full_mask(rule):
    rng = random.Random(3)
    ids, media_mask = random_layout(rng, 4, 30, 8, 3, [8, 2, 0, 5])
    full = media_attention_mask(torch.tensor(ids), AUDIO, media_mask, rule=rule)
    for cut in (1, 10, 29):
        before = torch.tensor([sum(t == AUDIO for t in row[:cut]) for row in ids])
        tail = [row[cut:] for row in ids]
        got = media_attention_mask(torch.tensor(tail), AUDIO, media_mask, audios_before=before, rule=rule)
        assert torch.equal(got, full[:, cut:]) and torch.equal(got, brute_mask(tail, media_mask, before, rule))


def test_unknown_mask_rule_is_refused():
    with pytest.raises(ValueError, match="rule must be one of"):
        media_attention_mask(torch.tensor([[AUDIO]]), AUDIO, torch.ones(1, 1, 1, dtype=torch.bool), rule="latest")


def test_mask_af1_examples_apart_from_the_two_changes():
    # AF1: tokens at/after the k-th <audio> see audios 0..k (kept); text before the first <audio> sees audio 0 (changed:
    # nothing); no <audio> crashes (changed: all False). One audio of 16 windows, 10 real.
    media_mask = torch.zeros(1, 2, 16, dtype=torch.bool)
    media_mask[0, 0, :10] = True
    media_mask[0, 1, :16] = True
    ids = torch.tensor([[2, 5, AUDIO, 5, 5, AUDIO, 5]])
    m = media_attention_mask(ids, AUDIO, media_mask)
    assert not m[0, :2].any()
    assert m[0, 2:5, :10].all() and not m[0, 2:5, 10:].any()
    assert m[0, 5:, :10].all() and not m[0, 5:, 10:16].any() and m[0, 5:, 16:].all()
    assert not media_attention_mask(torch.tensor([[2, 5, 5]]), AUDIO, media_mask).any()


def test_mask_rejects_more_audio_tokens_than_audios():
    with pytest.raises(ValueError, match="row 0 has 2 <audio> tokens"):
        media_attention_mask(torch.tensor([[AUDIO, AUDIO]]), AUDIO, torch.ones(1, 1, 2, dtype=torch.bool))


def reference_block(block, x, media, mask):
    "The block written out with explicit loops over heads and a softmax over allowed windows only."
    a = block.attn
    h, d = a.heads, a.dim_head
    q = a.to_q(a.norm(x))
    k, v = a.to_kv(media).chunk(2, -1)
    out = torch.zeros(x.shape[0], x.shape[1], h * d)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            allowed = mask[b, t].nonzero().flatten()
            if len(allowed) == 0:
                continue
            for i in range(h):
                s = slice(i * d, (i + 1) * d)
                w = (k[b, allowed, s] @ q[b, t, s] / d**0.5).softmax(0)
                out[b, t, s] = w @ v[b, allowed, s]
    x = x + torch.tanh(block.alpha_attn) * a.to_out(out)
    return x + torch.tanh(block.alpha_ff) * block.ff(x)


def test_block_matches_reference_and_empty_rows_add_nothing():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(32, 16, heads=2, dim_head=8, ff_mult=2)
    ids, media_mask = random_layout(random.Random(1), 3, 10, 2, 3, [2, 1, 0])
    mask = media_attention_mask(torch.tensor(ids), AUDIO, media_mask)
    x, media = torch.randn(3, 10, 32), torch.randn(3, 6, 16)
    assert torch.equal(block(x, media, mask), x)  # gates at 0: identity
    with torch.no_grad():
        block.alpha_attn.fill_(0.7)
        block.alpha_ff.fill_(-0.4)
    ref = reference_block(block, x, media, mask)
    out, w = block(x, media, mask, return_attention=True)
    assert torch.allclose(block(x, media, mask), ref, atol=1e-5) and torch.allclose(out, ref, atol=1e-5)
    assert torch.isfinite(out).all() and w.shape == (3, 2, 10, 6)
    with torch.no_grad():
        block.alpha_ff.fill_(0.0)
    empty = ~mask.any(-1)
    assert empty.any() and torch.equal(block(x, media, mask)[empty], x[empty])
    assert torch.allclose(block(x, kv=block.project_media(media), mask=mask), block(x, media, mask))


def test_audio_layers_query_independent_of_shots_and_padding():
    torch.manual_seed(0)
    layers = AudioTransformer(16, 32, depth=2, heads=4, ffn=64, max_windows=6).eval()
    q, qm = torch.randn(1, 1, 6, 16), torch.tensor([[[True, True, True, False, False, False]]])
    shots, sm = torch.randn(1, 3, 6, 16), torch.rand(1, 3, 6) < 0.7
    sm[..., 0] = True
    with torch.no_grad():
        for grad_mode in (False, True):
            with torch.set_grad_enabled(grad_mode):
                alone = layers(q, qm)[0, 0]
                after = layers(torch.cat([shots, q], 1), torch.cat([sm, qm], 1))[0, -1]
                noisy = q.clone()
                noisy[0, 0, 3:] = 100.0
                assert torch.allclose(alone, after, atol=1e-5)
                assert torch.allclose(alone, layers(noisy, qm)[0, 0], atol=1e-5)
                assert (alone[3:] == 0).all() and torch.isfinite(alone).all()


def test_audio_layers_fully_padded_audio_is_zero_and_grads_finite():
    layers = AudioTransformer(8, 8, depth=1, heads=2, ffn=16, max_windows=4, positions="learned", norm_first=True)
    x = torch.randn(2, 2, 4, 8, requires_grad=True)
    m = torch.zeros(2, 2, 4, dtype=torch.bool)
    m[0, 0, :2] = True
    out = layers(x, m)
    assert (out[0, 1] == 0).all() and (out[1] == 0).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="max_windows"):
        layers(torch.randn(1, 1, 5, 8))
