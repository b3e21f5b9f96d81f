"""The k-means fit lottery of the held-out code books, without the LM: for 30 fits (seeds 0-29, three books of 8 codes
each, k-means seeds f, f + 1000, f + 2000, fitted on the held-out pool as the demo does), a no-LM stand-in for balanced
5-way 1-shot (the shot sharing most codes with the query wins; ties split; no shared code = wrong) on the val and the
test languages (shot draw 0), and two label-free scores of the fit on the pool alone (how often a pool clip's nearest
neighbour has the same three codes, and how many it shares on average).

Read after the test runs; it chooses nothing. It asks whether a fit could be chosen on val or without labels. Usage:
    python benchmarks/icl/fit_lottery.py DATA_DIR CACHE N_FITS OUT.json [--books 3] [--splits val,test]
Records: benchmarks/results/audio_codes/fit_lottery.json (held-out set v2, three books); fit_lottery_books_val.json
(val only: three against six books, written with --splits val).
"""

import argparse, json, sys
import numpy as np, torch
from audioflamingo_lab.audio_codes import AudioCodebook
from audioflamingo_lab.demo import DemoConfig
from audioflamingo_lab.encoders import build_encoder
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.rag import embed_clips
from audioflamingo_lab.icl import BalancedShots, make_episodes

ap = argparse.ArgumentParser()
ap.add_argument("data"), ap.add_argument("cache"), ap.add_argument("fits", type=int), ap.add_argument("out")
ap.add_argument("--books", type=int, default=3)
ap.add_argument("--splits", default="val,test")
args = ap.parse_args()
H, CACHE = f"{args.data}/spoken_languages/manifest.jsonl", args.cache
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
for sp in args.splits.split(","):
    qs = [it for it in items if it.split == sp]
    Q = unit(qs)
    eps = make_episodes(qs, BalancedShots(pool, ways=5, seed=0), 1)
    splits[sp] = (qs, Q, eps)


def fit(f, books):
    "Codes (N, books) of unit vectors under the demo's own codebook fitted with seed f (k-means seeds f + 1000 b)."
    book = AudioCodebook(8, P.shape[1], vocab_size=1000, books=books).fit(P, seed=f)
    one_window = lambda x: (torch.from_numpy(x)[:, None, None], torch.ones(len(x), 1, 1, dtype=torch.bool))
    return lambda x: book.assign(*one_window(x))[:, 0].numpy()


rows = []
for f in range(args.fits):
    code = fit(f, args.books)
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
names = list(splits)
a = np.array([[r["nn_full"], r["nn_shared"], *(r[sp] for sp in names)] for r in rows])
corr = lambda i, j: round(float(np.corrcoef(a[:, i], a[:, j])[0, 1]), 3)
summary = {"books": args.books}
for i, sp in enumerate(names, 2):
    summary |= {f"nn_full_vs_{sp}": corr(0, i), f"nn_shared_vs_{sp}": corr(1, i)}
    summary |= {f"{sp}_range": [float(a[:, i].min()), float(a[:, i].max())], f"{sp}_mean": round(a[:, i].mean(), 3)}
    summary[f"{sp}_sd"] = round(float(a[:, i].std()), 3)
if names == ["val", "test"]:
    summary["val_vs_test"] = corr(2, 3)
print(summary)
what = "no-LM stand-in for balanced 5-way 1-shot by k-means fit of the held-out books (see the script's docstring)"
json.dump(dict(what=what, command=" ".join(sys.argv), correlations=summary, fits=rows), open(args.out, "w"), indent=1)
