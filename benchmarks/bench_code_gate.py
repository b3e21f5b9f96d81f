"""The demo's training step with the audio-code gate trainable vs frozen (the demo's model shape, LM frozen, new rows
frozen, synthetic batch of 8 six-audio episodes). A trainable gate acts on the embedding, so the backward pass runs
through all 30 layers instead of stopping at the first cross-attention block (layer 22).

    .venv/bin/python benchmarks/bench_code_gate.py [--reps 4]
Writes benchmarks/results/code_gate_step.json.
"""

import argparse, json, os, platform, statistics, time
from pathlib import Path
import torch
import torch.nn.functional as F
from audioflamingo_lab.core import seed_everything
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.training import configure_trainable


def episode_batch(model, n=8, audios=6, windows=4):
    ids = model.token_ids
    words = model.tokenizer(" which language is spoken? answer", add_special_tokens=False).input_ids
    row = [t for _ in range(audios) for t in (ids["audio"], *words, *words, ids["sep"], *words[:2], ids["eoc"])]
    emb = torch.randn(n, audios, windows, model.config.encoder_dim)
    return torch.tensor([row] * n), emb, torch.ones(n, audios, windows, dtype=torch.bool)


def step_seconds(model, batch) -> float:
    input_ids, emb, mask = batch
    t0 = time.perf_counter()
    logits = model(input_ids, audio_embeds=emb, media_mask=mask, logits_to_keep=torch.arange(input_ids.shape[1] - 1))
    logits.logits.float().logsumexp(-1).mean().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main(reps: int = 4, out: str = "benchmarks/results/code_gate_step.json"):
    seed_everything(0)
    model = configure_trainable(build_model("small", **model_overrides(DemoConfig())), "pretrain", new_tokens=False)
    model.codebook.fit(F.normalize(torch.randn(40, model.config.encoder_dim), dim=-1).numpy())
    model.train()
    batch = episode_batch(model)
    times = {"trainable": [], "frozen": []}
    step_seconds(model, batch)  # warm-up
    for _ in range(reps):  # alternate, so a busy moment of the shared machine hits both
        for name in times:
            model.codebook.alpha_code.requires_grad_(name == "trainable")
            times[name].append(round(step_seconds(model, batch), 3))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "what": "forward + backward of one demo training batch (8 x %d tokens, 6 audios), code gate trainable vs frozen"
        % batch[0].shape[1],
        "seconds": times,
        "median_s": medians,
        "frozen_saves": round(1 - medians["frozen"] / medians["trainable"], 3),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
    }
    Path(out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=4)
    main(**vars(p.parse_args()))
