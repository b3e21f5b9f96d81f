"""Val: balanced 5-way 1-shot, RAG-4 and RAG-8 accuracy (model only) by code-book sizes x k-means seed.

The frozen SmolLM2 with audio codes (06d, gate tanh(4)), no training; the books fitted on the held-out retrieval pool
(train split, labels unused). Balanced rows average shot draws 0, 1, 2; RAG rows average shot orders 0 and 1 (the
retrieved shots are the same, shuffled). Usage:
    python benchmarks/icl/code_sizes_sweep.py "8,8,8;32,16,8" 0,1,2 OUT.json
Record: benchmarks/results/audio_codes/sizes_sweep.json.
"""

import json, sys, time
import numpy as np, torch

torch.set_num_threads(2)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.audio_codes import fit_codebook
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.icl import BalancedShots, RetrievedShots, make_episodes
from audioflamingo_lab.rag import ClipIndex
from audioflamingo_lab.fewshot import generate_answers
from audioflamingo_lab.evaluation import score_predictions

H, CACHE = "/work/data/spoken_languages/manifest.jsonl", "/work/data/cache"
pool, queries = read_manifest(H, split="train"), read_manifest(H, split="val")
ROWS = (("balanced", 1, (0, 1, 2)), ("rag4", 4, (0, 1)), ("rag8", 8, (0, 1)))
rows, t0 = {}, time.time()
for config in sys.argv[1].split(";"):
    sizes = tuple(int(n) for n in config.split(","))
    shape = {**model_overrides(DemoConfig()), "code_books": len(sizes), "code_sizes": sizes}
    net = build_model("small", **shape).eval()
    cache = EmbeddingCache(CACHE, net.encoder, max_windows=4)
    index = ClipIndex.build(H, net.encoder, cache_root=CACHE)
    for fit_seed in map(int, sys.argv[2].split(",")):
        fit_codebook(net, pool, cache, seed=fit_seed)
        scores = {}
        for name, k, draws in ROWS:
            accs = []
            for draw in draws:
                pick = (
                    BalancedShots(pool, ways=5, seed=draw)
                    if name == "balanced"
                    else RetrievedShots(index, k, seed=draw)
                )
                eps = make_episodes(queries, pick, k)
                ans, _ = generate_answers(
                    net, eps, cache, None, 8, 384, max_new_tokens=12, do_sample=False, num_beams=1
                )
                accs.append(score_predictions("accuracy", ans, [e.query for e in eps]).score)
            scores[name] = dict(mean=round(float(np.mean(accs)), 3), per_draw=accs)
        rows[f"{config}-fit{fit_seed}"] = dict(sizes=sizes, fit_seed=fit_seed, **scores)
        print(config, fit_seed, {n: s["mean"] for n, s in scores.items()}, round(time.time() - t0), flush=True)
what = (
    "spoken_languages val languages (5 classes, 50 queries; retrieval pool: the train split of all 11 languages), "
    "frozen SmolLM2-135M with audio codes (gate tanh(4)), no training; used to choose the code-book sizes (val only)"
)
json.dump(
    dict(what=what, command=" ".join(sys.argv), seconds=round(time.time() - t0), rows=rows),
    open(sys.argv[3], "w"),
    indent=1,
)
