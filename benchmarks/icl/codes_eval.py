"""Few-shot rows of a model with audio codes (06d) on the held-out spoken_languages set, through `evaluate`.

The frozen SmolLM2 (no training: cross-attention gates at 0), the code gate open (`--code_gate`), the codebook fitted
on the held-out retrieval pool (its train split; labels unused). Rows: balanced 5-way 1-shot, random-4, RAG-1/4/8,
with knn / copy-last / chance, and the controls at balanced-1 and RAG-4. `--split val` chooses settings; test once.
"""

import argparse, json, time
from pathlib import Path
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--data", default="/work/data")
ap.add_argument("--split", default="val")
ap.add_argument("--codes", type=int, default=16)
ap.add_argument("--code_gate", type=float, default=4.0)
ap.add_argument("--codebook_seed", type=int, default=0)
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--rows", default="balanced:1,random:4,rag:1;4;8")
ap.add_argument("--checkpoint", default=None)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.audio_codes import fit_codebook
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.fewshot import evaluate
from audioflamingo_lab.fewshot_controls import CONTROLS
from audioflamingo_lab.rag import ClipIndex

heldout = f"{a.data}/spoken_languages/manifest.jsonl"
# the demo's model shape (the same as afl demo builds), with the codes asked for
shape = {**model_overrides(DemoConfig()), "audio_codes": a.codes, "code_gate_init": a.code_gate}
net = build_model("small", **shape).eval()
cache = EmbeddingCache(f"{a.data}/cache", net.encoder, max_windows=4)
t0 = time.time()
pool = read_manifest(heldout, split="train")
fit_codebook(net, pool, cache, seed=a.codebook_seed)
index = ClipIndex.build(pool, net.encoder, cache_root=cache)
shots = {sel: [int(k) for k in ks.split(";")] for sel, ks in (r.split(":") for r in a.rows.split(","))}
report = evaluate(
    net,
    heldout,
    shots=shots,
    select=list(shots),
    split=a.split,
    index=index,
    ways=5,
    seeds=[int(s) for s in a.seeds.split(",")],
    controls=CONTROLS,
    control_at=[("balanced", 1), ("rag", 4)],
    out=a.out,
    cache=cache,
    batch_size=8,
    max_new_tokens=12,
    max_tokens=384,
    overwrite=True,
)
meta = dict(vars(a), seconds=round(time.time() - t0))
Path(a.out, "codes_eval_args.json").write_text(json.dumps(meta, indent=1))
for row in report.rows:
    print({k: row.get(k) for k in ("select", "k", "condition", "score", "spread")})
print("seconds", meta["seconds"])
