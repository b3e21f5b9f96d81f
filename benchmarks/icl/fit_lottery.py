"""The k-means fit lottery of the held-out code books, without the LM: for 30 fits (seeds 0-29, three books of 8 codes
each, k-means seeds f, f + 1000, f + 2000, fitted on the held-out pool as the demo does), a no-LM stand-in for balanced
5-way 1-shot (the shot sharing most codes with the query wins; ties split; no shared code = wrong) on the val and the
test languages (shot draw 0), and two label-free scores of the fit on the pool alone (how often a pool clip's nearest
neighbour has the same three codes, and how many it shares on average).

Read after the test runs; it chooses nothing. It asks whether a fit could be chosen on val or without labels. Usage:
    python benchmarks/icl/fit_lottery.py DATA_DIR CACHE N_FITS OUT.json
Record: benchmarks/results/audio_codes/fit_lottery.json (held-out set v2).
"""

import json, sys
import faiss, numpy as np
from audioflamingo_lab.demo import DemoConfig
from audioflamingo_lab.encoders import build_encoder
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.rag import embed_clips
from audioflamingo_lab.icl import BalancedShots, make_episodes

H, CACHE = f"{sys.argv[1]}/spoken_languages/manifest.jsonl", sys.argv[2]
cfg = DemoConfig()
enc = build_encoder(cfg.encoder, window_s=cfg.window_s, hop_s=cfg.hop_s)
items = read_manifest(H)
pool = [it for it in items if it.split == "train"]


def unit(clips):
    v = np.asarray(embed_clips(clips, enc, cache_root=CACHE, max_windows=cfg.max_windows), np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


P = unit(pool)
pid = {it.id: i for i, it in enumerate(pool)}
S = P @ P.T
np.fill_diagonal(S, -9)
nn = S.argmax(1)
splits = {}
for sp in ("val", "test"):
    qs = [it for it in items if it.split == sp]
    Q = unit(qs)
    eps = make_episodes(qs, BalancedShots(pool, ways=5, seed=0), 1)
    splits[sp] = (qs, Q, eps)


def fit(f, books=3):
    cents = []
    for b in range(books):
        km = faiss.Kmeans(P.shape[1], 8, niter=25, seed=f + 1000 * b, spherical=True, min_points_per_centroid=1)
        km.train(P)
        cents.append(km.centroids)
    return lambda x: np.stack([(x @ c.T).argmax(1) for c in cents], 1)


rows = []
for f in range(int(sys.argv[3])):
    code = fit(f)
    cp = code(P)
    full = float(np.mean((cp == cp[nn]).all(1)))
    shared = float(np.mean((cp == cp[nn]).sum(1)))
    out = dict(fit=f, nn_full=round(full, 3), nn_shared=round(shared, 3))
    for sp, (qs, Q, eps) in splits.items():
        cq = code(Q)
        acc = []
        for i, ep in enumerate(eps):
            m = np.array([(cp[pid[s.id]] == cq[i]).sum() for s in ep.shots])
            best = np.flatnonzero(m == m.max())
            right = [j for j in best if ep.shots[j].answer == ep.query.answer]
            acc.append(0.0 if m.max() == 0 else len(right) / len(best))
        out[sp] = round(float(np.mean(acc)), 3)
    rows.append(out)
    print(out, flush=True)
a = np.array([[r["nn_full"], r["nn_shared"], r["val"], r["test"]] for r in rows])
corr = lambda i, j: round(float(np.corrcoef(a[:, i], a[:, j])[0, 1]), 3)
summary = {
    "val_vs_test": corr(2, 3),
    "nn_full_vs_val": corr(0, 2),
    "nn_full_vs_test": corr(0, 3),
    "nn_shared_vs_val": corr(1, 2),
    "nn_shared_vs_test": corr(1, 3),
    "val_range": [float(a[:, 2].min()), float(a[:, 2].max())],
    "test_range": [float(a[:, 3].min()), float(a[:, 3].max())],
}
print(summary)
what = "no-LM stand-in for balanced 5-way 1-shot by k-means fit of the held-out books (see the script's docstring)"
json.dump(
    dict(what=what, command=" ".join(sys.argv), correlations=summary, fits=rows), open(sys.argv[4], "w"), indent=1
)
