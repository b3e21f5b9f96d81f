"""Tiny-preset training step on CPU: samples/s and ms/step (forward + backward + AdamW), pretrain and sft modes.

    .venv/bin/python benchmarks/bench_train.py [--steps 10] [--batch 8] [--windows 4]
Writes benchmarks/results/train_tiny.json.
"""

import argparse, json, os, platform, time
from pathlib import Path
import torch
from audioflamingo_lab.core import Item, seed_everything
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.template import render, collate_rendered, token_ids
from audioflamingo_lab.training import configure_trainable, optimizer_groups, group_counts


def batch(model, n, windows):
    rs = [
        render(
            Item(id=f"b{i}", audio="x", prompt="Describe the sound.", answer="a dog barks while rain falls on a roof."),
            model.tokenizer,
        )
        for i in range(n)
    ]
    b = collate_rendered(rs, token_ids(model.tokenizer)["pad"])
    b["audio_embeds"] = torch.randn(n, 1, windows, model.config.encoder_dim)
    b["media_mask"] = torch.ones(n, 1, windows, dtype=torch.bool)
    return b


def bench(mode, steps, n, windows):
    seed_everything(0)
    m = configure_trainable(build_model("tiny", encoder=None), mode)  # cached window embeddings, as training uses them
    b = batch(m, n, windows)
    opt = torch.optim.AdamW(optimizer_groups(m, 0.1), lr=1e-4)

    def step():
        opt.zero_grad()
        m(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            labels=b["labels"],
            audio_embeds=b["audio_embeds"],
            media_mask=b["media_mask"],
        ).loss.backward()
        opt.step()

    for _ in range(2):
        step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    trainable = sum(t for t, _ in group_counts(m).values())
    return {
        "mode": mode,
        "ms_per_step": round(1000 * dt, 1),
        "samples_per_s": round(n / dt, 2),
        "tokens_per_sample": b["input_ids"].shape[1],
        "trainable_params": trainable,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--windows", type=int, default=4)
    a = ap.parse_args()
    res = {
        "preset": "tiny",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "batch": a.batch,
        "windows": a.windows,
        "steps": a.steps,
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1m": os.getloadavg()[0],
        "results": [bench(m, a.steps, a.batch, a.windows) for m in ("pretrain", "sft")],
    }
    print(json.dumps(res, indent=1))
    out = Path(__file__).parent / "results" / "train_tiny.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
