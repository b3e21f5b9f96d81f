"""Can the demo's model learn the seen classes' names with more training on plain items? A try-out on val only.

Trains the demo's model (`DemoConfig`, LM frozen, cross-attention from layer 22, audio codes) on plain items alone
(a seen-class clip, its five listed options, its name; no shots) for STEPS steps of BATCH items, then asks zero-shot
on the many_classes VAL clips, close-ended as the demo reads. Next to it, the no-LM ceiling of the same question: the
aiSFX clip vector's nearest class centroid (train clips) among the clip's five options, and its nearest train clip.
Usage:
    python benchmarks/icl/seen_stage.py DEMO_DIR OUT_DIR STEPS BATCH LR RECORD.json [GATE_LR]
DEMO_DIR: an earlier demo's folder (its data/ and cache/). Record: benchmarks/results/seen/plain_stage_val.json.
"""

import json, platform, subprocess, sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np
import torch
import audioflamingo_lab.demo as D
from audioflamingo_lab.checkpoint import load_checkpoint
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.fewshot import evaluate
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.rag import embed_clips
from audioflamingo_lab.run import metric_series, train
from audioflamingo_lab.training import gate_logs

src, out = Path(sys.argv[1]), Path(sys.argv[2])
steps, batch, lr, record = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), Path(sys.argv[6])
gate_lr = float(sys.argv[7]) if len(sys.argv) > 7 else D.DemoConfig.gate_lr  # the tanh gates' own rate
data = {"train": src / "data/many_classes/manifest.jsonl", "heldout": src / "data/spoken_languages/manifest.jsonl"}
plain_only = (dict(select="plain", weight=1.0),)
cfg = replace(
    D.demo_config(), episodes=plain_only, steps=steps, batch_size=batch, lr=lr, gate_lr=gate_lr, fewshot_every=0
)
run = D.train_config(cfg, data, out, src / "cache")
t0 = time.time()
trained_here = not (out / "train/model.safetensors").exists()  # else: an earlier call's checkpoint is read again
if trained_here:
    train(seed=cfg.seed, **run)
t1 = time.time()
ckpt = out / "train/model.safetensors"
model = load_checkpoint(ckpt).eval()
store = EmbeddingCache(src / "cache", model.encoder, max_windows=model.config.max_windows)
items = read_manifest(data["train"])
val = [it for it in items if it.split == "val"]
bf16 = cfg.precision.startswith("bf16")  # autocast only where bf16 is native: emulated bf16 is ~300x slower
with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
    rep = evaluate(
        model,
        val,
        shots=[0],
        select=[],
        split="val",
        out=out / "eval-seen-val",
        cache=store,
        batch_size=32,
        max_new_tokens=12,
        checkpoint=str(ckpt),
        overwrite=True,
        max_tokens=384,
        readout="options",
    )
t2 = time.time()
print(rep.table())

vec = embed_clips(items, model.encoder, cache_root=store, max_windows=model.config.max_windows)
train_rows = [i for i, it in enumerate(items) if it.split == "train"]
names = sorted({items[i].answer for i in train_rows})
centroid = {c: vec[[i for i in train_rows if items[i].answer == c]].mean(0) for c in names}


def no_lm(split):
    rows = [i for i, it in enumerate(items) if it.split == split]
    by_centroid = np.mean([max(items[i].options, key=lambda o: vec[i] @ centroid[o]) == items[i].answer for i in rows])
    nearest = [
        max((j for j in train_rows if items[j].answer in items[i].options), key=lambda j: vec[i] @ vec[j]) for i in rows
    ]
    by_clip = np.mean([items[j].answer == items[i].answer for i, j in zip(rows, nearest)])
    return {
        "centroid_of_5": round(float(by_centroid), 3),
        "nearest_clip_of_5": round(float(by_clip), 3),
        "n": len(rows),
    }


result = {
    "what": "plain items only (seen classes, 5 listed options, no shots), then zero-shot on the many_classes val "
    "clips, options readout; next to the no-LM ceiling of the same 5-way question",
    "command": f"python benchmarks/icl/seen_stage.py {src} {out} {steps} {batch} {lr} {record} {gate_lr}",
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {cfg.precision}",
    "config": {
        "steps": steps,
        "batch_size": batch,
        "lr": lr,
        "gate_lr": gate_lr,
        "episodes": list(plain_only),
        "seed": cfg.seed,
    },
    "seen_val_zero_shot": {k: rep.row("none", 0)[k] for k in ("score", "ci95", "n", "no_match")},
    "val_loss": metric_series(out / "train", "val/loss")[1],
    "gates_at_last_step": {k[5:]: round(float(v), 3) for k, v in gate_logs(model).items()},  # tanh, as logged
    "no_lm": {split: no_lm(split) for split in ("val", "test")},
    "chance": 0.2,
    "train_s": round(t1 - t0) if trained_here else None,
    "eval_s": round(t2 - t1),
}
record.parent.mkdir(parents=True, exist_ok=True)
record.write_text(json.dumps(result, indent=1))
print(json.dumps(result["no_lm"]), result["train_s"], result["eval_s"])
