"""Val, no LM: how often the shot whose code tuple best matches the query's carries the query's label.

A stand-in for the LM's induction heads, used to choose which code-book sizes the LM sweep (code_sizes_sweep.py) tries:
codes are compared from `<SEP>` backwards (the heads match the nearest tokens first), the shots with the longest
matching run win, and a tie between labels gets a share. No shot matching even the `<SEP>` code counts as wrong
(the frozen LM then often ends its answer at once). Balanced 5-way 1-shot: 3 shot draws; RAG-k: the k nearest pool
clips (cosine). k-means seeds 0, 1, 2. Usage:
    python benchmarks/icl/code_match_proxy.py OUT.json [SPLIT]   (SPLIT: val, the default, or test)
Records: benchmarks/results/audio_codes/code_match_proxy.json (val, before choosing); code_match_proxy_test.json (test,
read after the demo's test runs to see whether the stand-in also predicts test; not used to choose anything).
"""

import json, sys, time
import faiss, numpy as np

from audioflamingo_lab.demo import DemoConfig
from audioflamingo_lab.encoders import build_encoder
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.rag import embed_clips

H, CACHE = "/work/data/spoken_languages/manifest.jsonl", "/work/data/cache"
SIZES = ["8", "8,8,8", "12,12,12", "16,16,16", "24,24,24", "8,12,16", "16,12,8", "24,16,8", "32,16,8", "32,12,8",
         "48,24,8", "64,32,8", "32,16,6", "16", "16,16"]  # fmt: skip
cfg = DemoConfig()
encoder = build_encoder(cfg.encoder, window_s=cfg.window_s, hop_s=cfg.hop_s)
SPLIT = sys.argv[2] if len(sys.argv) > 2 else "val"
pool, queries = read_manifest(H, split="train"), read_manifest(H, split=SPLIT)


def unit_vectors(items):
    v = np.asarray(embed_clips(items, encoder, cache_root=CACHE, max_windows=cfg.max_windows), np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


P, Q = unit_vectors(pool), unit_vectors(queries)
pool_labels, query_labels = np.array([it.answer for it in pool]), np.array([it.answer for it in queries])


def coder(sizes, seed):
    books = []
    for b, n in enumerate(sizes):
        km = faiss.Kmeans(P.shape[1], n, niter=25, seed=seed + 1000 * b, spherical=True, min_points_per_centroid=1)
        km.train(P)
        books.append(km.centroids)
    return lambda x: np.stack([(x @ c.T).argmax(1) for c in books], 1)


def score(query_code, shot_codes, shot_labels, answer) -> float:
    run = np.zeros(len(shot_codes), int)  # matching codes counted from <SEP> backwards, stopping at the first miss
    for pos in range(shot_codes.shape[1] - 1, -1, -1):
        run = np.where((run == shot_codes.shape[1] - 1 - pos) & (shot_codes[:, pos] == query_code[pos]), run + 1, run)
    if run.max() == 0:
        return 0.0
    best = set(shot_labels[run == run.max()])
    return 1.0 / len(best) if answer in best else 0.0


index = faiss.IndexFlatIP(P.shape[1])
index.add(P)
_, nearest = index.search(Q, 8)
classes, rows, t0 = sorted(set(pool_labels)), {}, time.time()
for name in SIZES:
    sizes, got = [int(n) for n in name.split(",")], {"balanced": [], "rag1": [], "rag4": [], "rag8": []}
    for seed in (0, 1, 2):
        code = coder(sizes, seed)
        cq, cp = code(Q), code(P)
        for k in (1, 4, 8):
            got[f"rag{k}"] += [
                score(cq[i], cp[nearest[i, :k]], pool_labels[nearest[i, :k]], a) for i, a in enumerate(query_labels)
            ]
        for draw in (0, 1, 2):
            rng = np.random.default_rng(draw)
            for i, answer in enumerate(query_labels):
                ways = [answer, *rng.choice([c for c in classes if c != answer], 4, replace=False)]
                shots = np.array([rng.choice(np.flatnonzero(pool_labels == c)) for c in ways])
                got["balanced"].append(score(cq[i], cp[shots], pool_labels[shots], answer))
    rows[name] = {row: round(float(np.mean(v)), 3) for row, v in got.items()}
    print(name, rows[name], flush=True)
what = (
    f"code-match stand-in for the LM (no LM): spoken_languages {SPLIT} queries ({len(queries)}), pool: the train split"
    " of all 11 languages; k-means seeds 0-2; balanced 5-way 1-shot over shot draws 0-2"
    + ("; used to pick the LM sweep's sizes" if SPLIT == "val" else "; read after the test runs, chose nothing")
)
json.dump(
    dict(what=what, command=" ".join(sys.argv), seconds=round(time.time() - t0), rows=rows),
    open(sys.argv[1], "w"),
    indent=1,
)
