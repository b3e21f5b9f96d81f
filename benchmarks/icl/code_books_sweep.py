"""Val: balanced 5-way 1-shot accuracy (model only, 3 shot draws) by number of code books x k-means seed.

The frozen SmolLM2 with audio codes (06d: 8 codes per book, gate tanh(4)), no training; the codebook fitted on the
held-out retrieval pool (train split, labels unused). Usage:
    python benchmarks/icl/code_books_sweep.py 1,2,3,4 0,1,2 OUT.json
Record: benchmarks/results/audio_codes/books_sweep.json.
"""

import json, sys, time
import numpy as np, torch

torch.set_num_threads(2)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.audio_codes import fit_codebook
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.icl import BalancedShots, make_episodes
from audioflamingo_lab.fewshot import generate_answers
from audioflamingo_lab.evaluation import score_predictions

H = "/work/data/spoken_languages/manifest.jsonl"
pool, queries = read_manifest(H, split="train"), read_manifest(H, split="val")
rows, t0 = {}, time.time()
for books in map(int, sys.argv[1].split(",")):
    shape = {**model_overrides(DemoConfig()), "audio_codes": 8, "code_gate_init": 4.0, "code_books": books}
    net = build_model("small", **shape).eval()
    cache = EmbeddingCache("/work/data/cache", net.encoder, max_windows=4)
    for fit_seed in map(int, sys.argv[2].split(",")):
        fit_codebook(net, pool, cache, seed=fit_seed)
        accs = []
        for draw in (0, 1, 2):
            eps = make_episodes(queries, BalancedShots(pool, ways=5, seed=draw), 1)
            ans, _ = generate_answers(net, eps, cache, None, 8, 384, max_new_tokens=12, do_sample=False, num_beams=1)
            accs.append(score_predictions("accuracy", ans, [e.query for e in eps]).score)
        rows[f"books{books}-fit{fit_seed}"] = dict(
            books=books, fit_seed=fit_seed, mean=round(float(np.mean(accs)), 3), per_draw=accs
        )
        print(f"books {books} fit seed {fit_seed}: {np.mean(accs):.3f} {accs}", flush=True)
what = (
    "balanced 5-way 1-shot on the spoken_languages val languages (5 classes, 50 queries, 3 shot draws), frozen "
    "SmolLM2-135M with audio codes, no training; 8 codes per book; used to choose the number of books (val only)"
)
json.dump(
    dict(what=what, command=" ".join(sys.argv), seconds=round(time.time() - t0), rows=rows),
    open(sys.argv[3], "w"),
    indent=1,
)
