"""Val: how the three books' codes reach the frozen LM, and how the books are cut.

1. Presentation (frozen SmolLM2-135M, no training, options readout, balanced 5-way 1-shot, shot draw 0, k-means
   fits 0-2 of the held-out books, as the demo fits them): `three` is the demo (one code token per book, the last at
   `<SEP>`), `last` keeps only the last book's token at `<SEP>` (the template's words stay on the others), `sum`
   puts the sum of the three books' code rows, scaled by 1/sqrt(3), at `<SEP>`.
2. Books (no LM): the stand-in over 30 fits and shot draws 0-2, scored two ways: `count` (the shot sharing most codes
   with the query wins) and `run` (the longest run of equal codes from `<SEP>` backwards wins); ties split, no match
   scores 0. `seeds` is the demo (three spherical k-means seeds on the pool's unit clip vectors); `centred` the same on
   the vectors less the pool's mean, renormalised (they sit in a narrow cone); `residual` fits book
   b on what books 0..b-1 leave (residual quantisation; the coarse book at `<SEP>`); `bagged` fits each book on a
   bootstrap of the pool; `projected` on a 64-d random projection each; `pc_groups` on 20 of the pool's principal
   directions each (interleaved, after centring). `seeds` fits with faiss here as `AudioCodebook.fit` does (the
   other cuts need their own fits); its 30 count scores equal soft_codes_sweep.py's hard stand-in, which uses the
   library's codebook, fit for fit.
Val only: it chooses. Usage:
    python benchmarks/icl/code_presentation.py DATA_DIR CACHE OUT.json [--fits 0,1,2] [--proxy_fits 30]
Record: benchmarks/results/audio_codes/code_presentation_val.json.
"""

import argparse, json, sys, time
import faiss, numpy as np, torch

torch.set_num_threads(2)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.audio_codes import AudioCodebook, fit_codebook, sep_owner
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.icl import BalancedShots, make_episodes
from audioflamingo_lab.rag import embed_clips
from frozen_lm import options_accuracy  # a sibling file: scripts run as python benchmarks/icl/NAME.py

ap = argparse.ArgumentParser()
ap.add_argument("data"), ap.add_argument("cache"), ap.add_argument("out")
ap.add_argument("--fits", default="0,1,2")
ap.add_argument("--proxy_fits", type=int, default=30)
args = ap.parse_args()
H = f"{args.data}/spoken_languages/manifest.jsonl"
pool, queries = read_manifest(H, split="train"), read_manifest(H, split="val")
net = build_model("small", **model_overrides(DemoConfig())).eval()
cache = EmbeddingCache(args.cache, net.encoder, max_windows=4)
t0 = time.time()

# 2. the books, no LM
P = embed_clips(pool, net.encoder, cache_root=cache, max_windows=4).astype(np.float32)
Q = embed_clips(queries, net.encoder, cache_root=cache, max_windows=4).astype(np.float32)
P, Q = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (P, Q))
pid = {it.id: i for i, it in enumerate(pool)}
draws = [make_episodes(queries, BalancedShots(pool, ways=5, seed=d), 1) for d in (0, 1, 2)]


def match(shot: np.ndarray, query: np.ndarray, how: str) -> int:
    same = shot == query
    return int(same.sum()) if how == "count" else int(np.argmin(np.append(same[::-1], False)))


def stand_in(codes_p, codes_q, how) -> float:
    hits = []
    for eps in draws:
        for i, ep in enumerate(eps):
            m = np.array([match(codes_p[pid[s.id]], codes_q[i], how) for s in ep.shots])
            best = np.flatnonzero(m == m.max())
            hits.append(0.0 if m.max() == 0 else np.mean([ep.shots[j].answer == ep.query.answer for j in best]))
    return float(np.mean(hits))


def kmeans(x, seed, spherical=True):
    k = faiss.Kmeans(x.shape[1], 8, niter=25, seed=seed, spherical=spherical, min_points_per_centroid=1)
    k.train(np.ascontiguousarray(x))
    return k.centroids


def nearest(x, c, spherical=True):
    return (x @ c.T).argmax(1) if spherical else ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def seeds(f):
    cents = [kmeans(P, f + 1000 * b) for b in range(3)]
    return [np.stack([nearest(x, c) for c in cents], 1) for x in (P, Q)]


def centred(f):
    mean = P.mean(0)
    cents = [kmeans(unit(P - mean), f + 1000 * b) for b in range(3)]
    return [np.stack([nearest(unit(x - mean), c) for c in cents], 1) for x in (P, Q)]


def residual(f):
    rp, rq, cp, cq = P.copy(), Q.copy(), [], []
    for b in range(3):
        c = kmeans(rp, f + 1000 * b, spherical=b == 0)
        ap_, aq_ = nearest(rp, c, b == 0), nearest(rq, c, b == 0)
        cp.append(ap_), cq.append(aq_)
        rp, rq = rp - c[ap_], rq - c[aq_]
    return [np.stack(c[::-1], 1) for c in (cp, cq)]  # the coarse book last, at <SEP>


def bagged(f):
    rng = np.random.default_rng(f)
    cents = [kmeans(P[rng.choice(len(P), len(P))], f + 1000 * b) for b in range(3)]
    return [np.stack([nearest(x, c) for c in cents], 1) for x in (P, Q)]


def projected(f):
    rng, cp, cq = np.random.default_rng(f), [], []
    for b in range(3):
        R = rng.standard_normal((P.shape[1], 64)).astype(np.float32)
        c = kmeans(unit(P @ R), f + 1000 * b)
        cp.append(nearest(unit(P @ R), c)), cq.append(nearest(unit(Q @ R), c))
    return [np.stack(c, 1) for c in (cp, cq)]


def pc_groups(f):
    mu = P.mean(0)
    directions = np.linalg.svd(P - mu, full_matrices=False)[2]
    cp, cq = [], []
    for b in range(3):
        V = directions[b::3][:20]
        c = kmeans(unit((P - mu) @ V.T), f + 1000 * b)
        cp.append(nearest(unit((P - mu) @ V.T), c)), cq.append(nearest(unit((Q - mu) @ V.T), c))
    return [np.stack(c, 1) for c in (cp, cq)]


books = {}
for name, cut in dict(
    seeds=seeds, centred=centred, residual=residual, bagged=bagged, projected=projected, pc_groups=pc_groups
).items():
    codes = [cut(f) for f in range(args.proxy_fits)]
    for how in ("count", "run"):
        v = [round(stand_in(cp, cq, how), 3) for cp, cq in codes]
        books[f"{name}/{how}"] = dict(mean=round(float(np.mean(v)), 3), sd=round(float(np.std(v)), 3), fits=v)
        print(name, how, books[f"{name}/{how}"]["mean"], books[f"{name}/{how}"]["sd"], flush=True)

# 1. presentation, the frozen LM
demo_place = AudioCodebook.place_codes
presentation = {"v": "three"}


def place_codes(self, embeds, input_ids, codes, token_rows, sep_id, audio_id, before=None):
    "The demo's placement, or one token at <SEP>: the last book's code row (`last`) or the books' rows summed."
    if presentation["v"] == "three":
        return demo_place(self, embeds, input_ids, codes, token_rows, sep_id, audio_id, before)
    owner = sep_owner(input_ids, audio_id, before)
    code = codes.gather(1, owner.clamp(0, codes.shape[1] - 1).unsqueeze(-1).expand(-1, -1, codes.shape[2]))
    at = (input_ids == sep_id) & (owner >= 0) & (owner < codes.shape[1]) & (code[..., 0] >= 0)
    rows = [token_rows[self.words[self.starts[b] + code[..., b].clamp(min=0)]] for b in range(self.books)]
    new = rows[-1] if presentation["v"] == "last" else sum(rows) / self.books**0.5
    gate = torch.tanh(self.alpha_code).to(embeds.dtype)
    return torch.where(at.unsqueeze(-1), embeds + gate * (new.to(embeds.dtype) - embeds), embeds)


AudioCodebook.place_codes = place_codes
rows = []
episodes = make_episodes(queries, BalancedShots(pool, ways=5, seed=0), 1)
for fit in [int(f) for f in args.fits.split(",")]:
    fit_codebook(net, pool, cache, seed=fit)
    for v in ("three", "last", "sum"):
        presentation["v"] = v
        rows.append(dict(fit=fit, presentation=v, balanced=options_accuracy(net, episodes, cache)))
        print(rows[-1], round(time.time() - t0), flush=True)
what = (
    f"{H}: val languages ({len(queries)} queries; retrieval pool: the train split); frozen SmolLM2-135M with three "
    "8-code books (gate tanh(4)), no training, options readout; val only"
)
record = dict(what=what, command=" ".join(sys.argv), seconds=round(time.time() - t0), books_stand_in=books)
json.dump(record | dict(frozen_lm=rows), open(args.out, "w"), indent=1)
