"The checkpoint module: the format round-trips, snapshots carry the gates, resume state is dropped only when finished."

import shutil
import pytest, torch
import lightning as L
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.training import configure_trainable, FlamingoModule
from audioflamingo_lab.checkpoint import (
    save_checkpoint,
    load_checkpoint,
    checkpoint_info,
    checkpoint_gates,
    checkpoint_step,
    find_checkpoints,
    GateSnapshots,
    Snapshots,
    drop_resume_state,
)


def tiny(gate: float = 0.25):
    torch.manual_seed(0)
    model = configure_trainable(build_model("tiny", encoder=None), "pretrain")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "alpha_" in name:
                p.fill_(gate)
    return model


def test_a_checkpoint_round_trips(tmp_path):
    model = tiny()
    path = save_checkpoint(model, tmp_path / "m.safetensors", extra={"step": 3, "note": "x"})
    again = load_checkpoint(path)
    assert (
        again.checkpoint_extra == {"step": 3, "note": "x"} and checkpoint_info(path)["trainable"]["mode"] == "pretrain"
    )
    want, got = model.state_dict(), again.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert checkpoint_step(path) == 3 and set(checkpoint_gates(path)) == {g["layer"] for g in model.gate_values()}


def _toy_batches(model, n: int = 4):
    from audioflamingo_lab.core import Item
    from audioflamingo_lab.template import render, collate_rendered, token_ids

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        b = collate_rendered(
            [render(Item(id=f"x{i}", audio="toy", prompt="p", answer="a bell."), model.tokenizer)],
            token_ids(model.tokenizer)["pad"],
        )
        b["audio_embeds"] = torch.randn(1, 1, 2, model.config.encoder_dim, generator=g)
        b["media_mask"] = torch.ones(1, 1, 2, dtype=torch.bool)
        out.append(b)
    return out


def test_snapshot_callbacks_write_the_gates_every_n_steps(tmp_path):
    model = tiny(gate=0.0)
    module = FlamingoModule(model=model, mode="pretrain", lr=1e-2)
    callbacks = [
        GateSnapshots(tmp_path / "gates", every_n_steps=2),
        Snapshots(tmp_path / "full", every_n_steps=2, digits=5, with_loss=True),
    ]
    fit = L.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    fit.fit(module, torch.utils.data.DataLoader(_toy_batches(model), batch_size=None))
    gates = find_checkpoints(tmp_path / "gates")
    assert [p.name for p in gates] == [f"gates-step{s:06d}.safetensors" for s in (0, 2, 4)]
    assert [checkpoint_step(p) for p in gates] == [0, 2, 4] and checkpoint_gates(gates[0])[0] == (0.0, 0.0)
    assert checkpoint_gates(gates[-1]) == {
        g["layer"]: (pytest.approx(g["attn"]), pytest.approx(g["ff"])) for g in model.gate_values()
    }
    with pytest.raises(ValueError, match="snapshot"):
        load_checkpoint(gates[-1])
    full = find_checkpoints(tmp_path / "full")
    assert [p.name for p in full] == ["step00002.safetensors", "step00004.safetensors"]
    assert all(isinstance(checkpoint_info(p)["extra"]["loss"], float) for p in full)
    loaded = load_checkpoint(full[-1]).gate_values()
    assert [(g["attn"], g["ff"]) for g in loaded] == [(g["attn"], g["ff"]) for g in model.gate_values()]


def test_resume_state_is_dropped_only_from_a_finished_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"state")
    assert not drop_resume_state(run) and (run / "checkpoints" / "last.ckpt").exists()
    save_checkpoint(tiny(), run / "model.safetensors")
    assert drop_resume_state(run) and not (run / "checkpoints").exists() and (run / "model.safetensors").exists()
