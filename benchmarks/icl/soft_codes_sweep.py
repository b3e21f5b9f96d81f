"""Val: soft audio codes (06d, `code_temperature`) against hard ones, the frozen LM with no training.

For each k-means fit of the held-out books (three books of 8, fitted on the val languages' retrieval pool as the demo
fits them) and each temperature (0 = hard codes): balanced 5-way 1-shot (shot draw 0) and, with --rows, RAG-k, read
with the options readout. Also a no-LM stand-in over --proxy_fits fits and shot draws 0-2: the shot whose code blends
match the query's best wins (the dot product of the blends; at temperature 0 the count of shared codes; ties split).
Val only: it chooses. Usage:
    python benchmarks/icl/soft_codes_sweep.py DATA_DIR CACHE TEMPS FITS OUT.json [--rows balanced,rag4] [--proxy_fits N]
Record: benchmarks/results/audio_codes/soft_codes_val.json.
"""

import argparse, json, sys, time
import numpy as np, torch

torch.set_num_threads(2)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.audio_codes import fit_codebook, AudioCodebook
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.icl import BalancedShots, RetrievedShots, make_episodes
from audioflamingo_lab.rag import ClipIndex, embed_clips
from audioflamingo_lab.fewshot import generate_answers
from audioflamingo_lab.evaluation import score_predictions

ap = argparse.ArgumentParser()
ap.add_argument("data"), ap.add_argument("cache"), ap.add_argument("temps"), ap.add_argument("fits")
ap.add_argument("out")
ap.add_argument("--rows", default="balanced")
ap.add_argument("--proxy_fits", type=int, default=30)
args = ap.parse_args()
H = f"{args.data}/spoken_languages/manifest.jsonl"
temps, fits = [float(t) for t in args.temps.split(",")], [int(f) for f in args.fits.split(",")]
pool, queries = read_manifest(H, split="train"), read_manifest(H, split="val")
net = build_model("small", **model_overrides(DemoConfig())).eval()
cache = EmbeddingCache(args.cache, net.encoder, max_windows=4)
t0 = time.time()

# the no-LM stand-in: blends of the pool and the val queries under each fit and temperature
P = embed_clips(pool, net.encoder, cache_root=cache, max_windows=4)
Q = embed_clips(queries, net.encoder, cache_root=cache, max_windows=4)
pid = {it.id: i for i, it in enumerate(pool)}
draws = [make_episodes(queries, BalancedShots(pool, ways=5, seed=d), 1) for d in (0, 1, 2)]


def blends(book, x, temperature):
    book.temperature = temperature
    emb, mask = torch.from_numpy(x)[:, None, None], torch.ones(len(x), 1, 1, dtype=torch.bool)
    if temperature > 0:
        return book.code_weights(emb, mask)[:, 0].numpy()
    codes = book.assign(emb, mask)[:, 0]
    return torch.cat([torch.nn.functional.one_hot(c, n) for c, n in zip(codes.T, book.sizes)], -1).float().numpy()


def stand_in(wp, wq) -> float:
    hits = []
    for eps in draws:
        for i, ep in enumerate(eps):
            m = np.array([wp[pid[s.id]] @ wq[i] for s in ep.shots])
            best = np.flatnonzero(np.isclose(m, m.max()))
            hits.append(0.0 if m.max() <= 1e-9 else np.mean([ep.shots[j].answer == ep.query.answer for j in best]))
    return float(np.mean(hits))


proxy = {t: [] for t in temps}
for f in range(args.proxy_fits):
    book = AudioCodebook(8, P.shape[1], vocab_size=1000, books=3).fit(P, seed=f)
    for t in temps:
        proxy[t].append(round(stand_in(blends(book, P, t), blends(book, Q, t)), 3))
proxy_summary = {
    str(t): dict(mean=round(float(np.mean(v)), 3), sd=round(float(np.std(v)), 3), min=min(v), max=max(v), fits=v)
    for t, v in proxy.items()
}
print({t: (s["mean"], s["sd"]) for t, s in proxy_summary.items()}, flush=True)

index = ClipIndex.build(H, net.encoder, cache_root=cache)
rows = []
for fit in fits:
    fit_codebook(net, pool, cache, seed=fit)
    for t in temps:
        net.codebook.temperature = t
        row = dict(fit=fit, temperature=t)
        for name in args.rows.split(","):
            k = 1 if name == "balanced" else int(name[3:])
            pick = BalancedShots(pool, ways=5, seed=0) if name == "balanced" else RetrievedShots(index, k, seed=0)
            eps = make_episodes(queries, pick, k)
            answers, _ = generate_answers(
                net, eps, cache, None, 8, 384, readout="options", max_new_tokens=12, do_sample=False, num_beams=1
            )
            row[name] = round(score_predictions("accuracy", answers, [e.query for e in eps]).score, 3)
        rows.append(row)
        print(row, round(time.time() - t0), flush=True)
what = (
    f"{H}: val languages ({len(queries)} queries; retrieval pool: the train split), frozen SmolLM2-135M with three "
    "8-code books (gate tanh(4)), no training; hard (temperature 0) against soft codes; options readout; val only"
)
record = dict(what=what, command=" ".join(sys.argv), seconds=round(time.time() - t0), stand_in=proxy_summary)
json.dump(record | dict(frozen_lm=rows), open(args.out, "w"), indent=1)
