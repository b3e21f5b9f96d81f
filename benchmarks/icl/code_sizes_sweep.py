"""Val: balanced 5-way 1-shot, RAG-4 and RAG-8 accuracy (model only) by code-book sizes x k-means seed.

The frozen SmolLM2 with audio codes (06d, gate tanh(4)), no training; the books fitted on the held-out retrieval pool
(train split, labels unused). Balanced rows average shot draws 0, 1, 2; RAG rows average shot orders 0 and 1 (the
retrieved shots are the same, shuffled); `--draws 1` keeps only the first of each. The `knn` vote of the same episodes
is written next to them. Usage:
    python benchmarks/icl/code_sizes_sweep.py "8,8,8;32,16,8" 0,1,2 OUT.json [--manifest M --cache C --draws 1]
Records: benchmarks/results/audio_codes/sizes_sweep.json (held-out set v1, /work/data), books_sweep_v2.json (v2).
"""

import argparse, json, sys, time
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
from audioflamingo_lab.fewshot_controls import episode_vectors, shot_similarities  # the report's own knn similarities
from audioflamingo_lab.fewshot_controls import knn_label
from audioflamingo_lab.evaluation import score_predictions

ap = argparse.ArgumentParser()
ap.add_argument("configs"), ap.add_argument("fit_seeds"), ap.add_argument("out")
ap.add_argument("--manifest", default="/work/data/spoken_languages/manifest.jsonl")
ap.add_argument("--cache", default="/work/data/cache")
ap.add_argument("--draws", type=int, default=None, help="shot draws per row (default: 3 balanced, 2 RAG orders)")
ap.add_argument("--precision", default="32-true", help="32-true or bf16-mixed (autocast on the CPU)")
args = ap.parse_args()
H, CACHE = args.manifest, args.cache
pool, queries = read_manifest(H, split="train"), read_manifest(H, split="val")
ROWS = (("balanced", 1, (0, 1, 2)), ("rag4", 4, (0, 1)), ("rag8", 8, (0, 1)))
ROWS = tuple((n, k, d[: args.draws]) for n, k, d in ROWS)
bf16 = args.precision.startswith("bf16")
rows, baselines, t0 = {}, {}, time.time()
for config in args.configs.split(";"):
    sizes = tuple(int(n) for n in config.split(","))
    shape = {**model_overrides(DemoConfig()), "code_books": len(sizes), "code_sizes": sizes}
    net = build_model("small", **shape).eval()
    cache = EmbeddingCache(CACHE, net.encoder, max_windows=4)
    index = ClipIndex.build(H, net.encoder, cache_root=CACHE)
    for fit_seed in map(int, args.fit_seeds.split(",")):
        fit_codebook(net, pool, cache, seed=fit_seed)
        scores = {}
        for name, k, draws in ROWS:
            accs, knns = [], []
            for draw in draws:
                pick = (
                    BalancedShots(pool, ways=5, seed=draw)
                    if name == "balanced"
                    else RetrievedShots(index, k, seed=draw)
                )
                eps = make_episodes(queries, pick, k)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    ans, _ = generate_answers(
                        net, eps, cache, None, 8, 384, max_new_tokens=12, do_sample=False, num_beams=1
                    )
                accs.append(score_predictions("accuracy", ans, [e.query for e in eps]).score)
                votes = [
                    knn_label(e, sims) for e, sims in zip(eps, shot_similarities(eps, episode_vectors(eps, index)))
                ]
                knns.append(score_predictions("accuracy", votes, [e.query for e in eps]).score)
            scores[name] = dict(mean=round(float(np.mean(accs)), 3), per_draw=accs)
            baselines[name] = dict(knn=round(float(np.mean(knns)), 3), per_draw=knns)
        rows[f"{config}-fit{fit_seed}"] = dict(sizes=sizes, fit_seed=fit_seed, **scores)
        print(config, fit_seed, {n: s["mean"] for n, s in scores.items()}, round(time.time() - t0), flush=True)
what = (
    f"{H}: val languages ({len(queries)} queries; retrieval pool: the train split of all languages), "
    "frozen SmolLM2-135M with audio codes (gate tanh(4)), no training; used to choose code books (val only)"
)
json.dump(
    dict(
        what=what,
        command=" ".join(sys.argv),
        precision=args.precision,
        seconds=round(time.time() - t0),
        knn=baselines,
        rows=rows,
    ),
    open(args.out, "w"),
    indent=1,
)
