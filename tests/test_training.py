import pickle, shutil, subprocess
import pytest, torch
from audioflamingo_lab.core import Item, seed_everything
from audioflamingo_lab.template import render, collate_rendered, token_ids
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.training import (
    configure_trainable,
    group_counts,
    trainable_table,
    optimizer_groups,
    FlamingoModule,
    gate_logs,
    new_token_ids,
)
from audioflamingo_lab.checkpoint import save_checkpoint, load_checkpoint, checkpoint_info

ANSWERS = ["a dog barks twice.", "rain falls on a roof.", "a bell rings.", "birds chirp outdoors."]


def tiny(seed=0):
    seed_everything(seed)
    return build_model("tiny", encoder=None)  # window embeddings are fed directly


def make_batch(model, n=4, windows=2, seed=0):
    tok = model.tokenizer
    rs = [
        render(Item(id=f"i{i}", audio=f"/a{i}.wav", prompt="Describe the sound.", answer=ANSWERS[i % 4]), tok)
        for i in range(n)
    ]
    b = collate_rendered(rs, token_ids(tok)["pad"])
    g = torch.Generator().manual_seed(seed)
    b["audio_embeds"] = torch.randn(n, 1, windows, model.config.encoder_dim, generator=g)
    b["media_mask"] = torch.ones(n, 1, windows, dtype=torch.bool)
    return b


def fwd(model, b):
    return model(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        labels=b["labels"],
        audio_embeds=b["audio_embeds"],
        media_mask=b["media_mask"],
    )


def steps(model, b, n=3, lr=1e-2, wd=0.5):
    opt = torch.optim.AdamW(optimizer_groups(model, wd), lr=lr)
    for _ in range(n):
        opt.zero_grad()
        fwd(model, b).loss.backward()
        opt.step()


def test_groups_per_mode():
    m = tiny()
    for mode in ("pretrain", "sft"):
        c = group_counts(configure_trainable(m, mode))
        assert (
            c["encoder"][0] == 0
            and c["audio_layers"][0] == c["audio_layers"][1] > 0
            and c["xattn"][0] == c["xattn"][1] > 0
        )
        assert c["lm_new_tokens"][0] == c["lm_new_tokens"][1] > 0
        assert c["lm"][0] == (0 if mode == "pretrain" else c["lm"][1])
    c = group_counts(configure_trainable(tiny(), "lora"))
    assert c["lora"][0] > 0 and c["lm"][0] == 0 and c["lm_new_tokens"][0] > 0
    table = trainable_table(m)
    assert (
        "lm_new_tokens" in table
        and "xattn" in table
        and "audio_layers" in table
        and "trainable" in table.splitlines()[-1]
    )
    with pytest.raises(ValueError, match="mode must be"):
        configure_trainable(m, "everything")


def test_pretrain_moves_only_new_rows_with_weight_decay():
    m = configure_trainable(tiny(), "pretrain")
    b = make_batch(m)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    steps(m, b)
    emb = m.lm.get_input_embeddings().weight
    emb_name = next(n for n, p in m.named_parameters() if p is emb)
    new = new_token_ids(m)
    old = torch.ones(emb.shape[0], dtype=torch.bool)
    old[new] = False
    assert torch.equal(emb[old], before[emb_name][old])  # frozen rows: bit-identical
    assert not torch.equal(emb[new], before[emb_name][new])  # new rows learn
    for n, p in m.named_parameters():
        if n.startswith("lm.") and n != emb_name and "xattn" not in n and p.requires_grad is False:
            assert torch.equal(p, before[n]), n
        if n.startswith("encoder."):
            assert torch.equal(p, before[n]), n
    assert any(not torch.equal(p, before[n]) for n, p in m.named_parameters() if n.startswith("audio_layers."))
    assert any(v != 0 for v in gate_logs(m).values())


def test_sft_moves_old_rows_too():
    m = configure_trainable(tiny(), "sft")
    emb = m.lm.get_input_embeddings().weight
    before = emb.detach().clone()
    steps(m, make_batch(m), n=1)
    used = make_batch(m)["input_ids"].unique()
    old_used = [int(t) for t in used if int(t) not in new_token_ids(m)]
    assert not torch.equal(emb[old_used], before[old_used])


@pytest.mark.parametrize("mode", ["pretrain", "lora"])
def test_save_load_identical_logits(tmp_path, mode):
    m = configure_trainable(tiny(), mode)
    b = make_batch(m)
    steps(m, b, n=2, lr=1e-2)
    m.eval()
    p = save_checkpoint(m, tmp_path / "ck.safetensors", extra={"step": 2})
    m2 = load_checkpoint(p).eval()
    with torch.no_grad():
        assert torch.equal(fwd(m, b).logits, fwd(m2, b).logits)
    assert checkpoint_info(p)["extra"] == {"step": 2} and m2.checkpoint_extra == {"step": 2}


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickles_are_refused(tmp_path):
    canary = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(_Evil(str(canary))))
    with pytest.raises(ValueError, match="pickle"):
        load_checkpoint(evil)
    assert not canary.exists()
    ts = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, ts)
    with pytest.raises(ValueError, match=r"model\.pt.*pickle"):
        load_checkpoint(ts)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_checkpoint(junk)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    m = configure_trainable(tiny(), "pretrain")
    p = save_checkpoint(m, tmp_path / "ck.safetensors", full=True)
    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
    t = load_file(str(p))
    dropped = next(k for k in t if k.startswith("audio_layers."))
    save_file({k: v for k, v in t.items() if k != dropped}, str(tmp_path / "miss.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=f"missing keys.*{dropped}"):
        load_checkpoint(tmp_path / "miss.safetensors")
    save_file({**t, "bogus.weight": torch.zeros(1)}, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="unexpected keys.*bogus.weight"):
        load_checkpoint(tmp_path / "extra.safetensors")


def _trainer(tmp_path, max_steps, **kw):
    import lightning as L

    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        gradient_clip_val=1.0,
        **kw,
    )


def test_lightning_resume_matches_straight_run(tmp_path):
    m = tiny()
    b = make_batch(m)
    data = [{k: v[i : i + 2] for k, v in b.items()} for i in (0, 2)] * 4
    loader = lambda: torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)
    seed_everything(1)
    straight = FlamingoModule(model=tiny(), mode="sft", lr=1e-3, warmup_steps=2)
    _trainer(tmp_path / "a", 4, enable_checkpointing=False).fit(straight, loader())
    seed_everything(1)
    part = FlamingoModule(model=tiny(), mode="sft", lr=1e-3, warmup_steps=2)
    t = _trainer(tmp_path / "b", 2, enable_checkpointing=False)
    t.fit(part, loader())
    ck = tmp_path / "two.ckpt"
    t.save_checkpoint(ck)
    resumed = FlamingoModule(
        model=tiny(seed=5), mode="sft", lr=1e-3, warmup_steps=2
    )  # different init: the ckpt must win
    t2 = _trainer(tmp_path / "c", 4, enable_checkpointing=False)
    t2.fit(resumed, loader(), ckpt_path=ck)
    assert t2.global_step == 4
    for (n, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n
    again = FlamingoModule.load_from_checkpoint(ck)
    assert again.hparams.mode == "sft"
    for (n, p), (_, q) in zip(part.named_parameters(), again.named_parameters()):
        assert torch.equal(p, q), n


def _speech_clips(tmp_path, tone):
    "Real recordings: espeak-ng speech when installed, else tones (the conftest fixture)."
    paths = []
    for i, text in enumerate(["a dog", "the rain", "one bell", "birds sing"]):
        p = tmp_path / f"c{i}.wav"
        if shutil.which("espeak-ng"):
            subprocess.run(["espeak-ng", "-w", str(p), "-s", "170", text], check=True, capture_output=True)
        else:
            tone(p.name, seconds=1.0, freq=220.0 * (i + 1))
        paths.append(p)
    return paths


@pytest.mark.slow
def test_fit_real_audio_loss_drops_below_10_percent(tmp_path, tone):
    from audioflamingo_lab.audio import load_audio, sliding_windows

    seed_everything(0)
    m = configure_trainable(build_model("tiny"), "sft")  # with its mel window encoder
    enc = m.encoder.eval()
    clips = _speech_clips(tmp_path, tone)
    with torch.no_grad():
        embeds = []
        for p in clips:
            w, mask = sliding_windows(
                load_audio(p, enc.sample_rate), enc.sample_rate, enc.window_s, enc.hop_s, max_windows=2
            )
            embeds.append(enc(w[None])[0])  # cached embeddings: the encoder runs once
    b = make_batch(m, n=4, windows=embeds[0].shape[0])
    b["audio_embeds"] = torch.stack(embeds)[:, None]
    opt = torch.optim.AdamW(optimizer_groups(m, 0.0), lr=1e-3)
    losses = []
    for step in range(300):
        opt.zero_grad()
        loss = fwd(m, b).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if loss.item() < 0.1 * losses[0]:
            break
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1], len(losses))


def test_module_loss_on_label_positions_equals_the_full_loss():
    """The Lightning module computes logits only where a label is predicted; loss and gradients equal the full
    computation."""
    model = tiny()
    with torch.no_grad():
        for _, layer in model.xattn_layers():
            layer.xattn.alpha_attn.fill_(0.5), layer.xattn.alpha_ff.fill_(0.5)
    module = FlamingoModule(model=model, mode="pretrain")
    b = make_batch(model, n=4)
    full = fwd(model, b).loss
    full.backward()
    want = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    out = module(b)
    out.loss.backward()
    got = [p.grad for p in model.parameters() if p.requires_grad]
    assert out.logits.shape[1] < b["input_ids"].shape[1]  # fewer positions went through the LM head
    assert torch.allclose(out.loss, full, atol=1e-6)
    assert all(torch.allclose(a, w, atol=1e-6) for a, w in zip(got, want))


def test_gate_lr_gives_the_gates_their_own_rate():
    model = tiny()
    configure_trainable(model, "pretrain")
    groups = optimizer_groups(model, 0.1, gate_lr=0.05)
    gates = {id(p) for _, l in model.xattn_layers() for p in (l.xattn.alpha_attn, l.xattn.alpha_ff)}
    assert len(groups) == 3 and groups[2]["lr"] == 0.05 and {id(p) for p in groups[2]["params"]} == gates
    assert not gates & {id(p) for g in groups[:2] for p in g["params"]}
    assert len(optimizer_groups(model, 0.1)) == 2  # without gate_lr: as before
