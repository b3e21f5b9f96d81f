"""Could a label-free k-means criterion pick the code books? The spherical k-means objective of each book (8 codes,
the demo's seeds fit + 1000 * book) on the held-out retrieval pool, next to the books' label purity (labels used here
only to judge, never to choose) and the frozen-LM val accuracy of that fit (books_sweep.json). Usage:
    python benchmarks/icl/kmeans_objective.py OUT.json
Record: benchmarks/results/audio_codes/kmeans_objective.json.
"""

import json, sys, time
import faiss, numpy as np, torch

torch.set_num_threads(1)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.rag import embed_clips

H, CACHE = "/work/data/spoken_languages/manifest.jsonl", "/work/data/cache"
pool = read_manifest(H, split="train")
net = build_model("small", **model_overrides(DemoConfig())).eval()
x = np.asarray(embed_clips(pool, net.encoder, cache_root=CACHE, max_windows=4), dtype=np.float32)
x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True))
labels = np.array([it.answer for it in pool])
rows, t0 = {}, time.time()
for fit in range(6):
    objective, purity = [], []
    for book in range(4):
        km = faiss.Kmeans(x.shape[1], 8, niter=25, seed=fit + 1000 * book, spherical=True, min_points_per_centroid=1)
        km.train(x)
        cell = km.index.search(x, 1)[1][:, 0]
        objective.append(round(float(km.obj[-1]), 2))  # sum of cosine similarities to the centroids: higher = tighter
        hits = sum(np.unique(labels[cell == c], return_counts=True)[1].max() for c in np.unique(cell))
        purity.append(round(float(hits / len(cell)), 3))
    rows[f"fit{fit}"] = dict(objective=objective, objective_3_books=round(sum(objective[:3]), 2), purity=purity)
    print(fit, rows[f"fit{fit}"], flush=True)
what = "spherical k-means objective and label purity of 4 books of 8 codes per fit seed, spoken_languages train pool"
json.dump(dict(what=what, clips=len(x), seconds=round(time.time() - t0), rows=rows), open(sys.argv[1], "w"), indent=1)
