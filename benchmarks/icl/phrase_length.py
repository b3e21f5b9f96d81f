"""Test, after the runs: in balanced episodes where the right shot shares the query's `<SEP>` code, how often the demo
answered right, by how many of the codes in front also match (the length of the matching code phrase).

Explains why books of 32, 16 and 8 codes lost to three books of 8 on test (README, "Tried and not kept"): the `<SEP>`
book is the same in both (8 codes, k-means seed 2000), but the finer books in front match the right shot less often.
Recomputes the codes the evaluation used (the books fitted on the held-out pool, k-means seed 0 + 1000 * book) for the
predictions of two records' runs. Usage:
    python benchmarks/icl/phrase_length.py RUNS_DIR OUT.json   (RUNS_DIR holds sizes-s0/ and books3-s0/ with eval/)
Record: benchmarks/results/audio_codes/phrase_length.json.
"""

import collections, json, sys
from pathlib import Path
import faiss, numpy as np

from audioflamingo_lab.demo import DemoConfig
from audioflamingo_lab.encoders import build_encoder
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.rag import embed_clips

H, CACHE = "/work/data/spoken_languages/manifest.jsonl", "/work/data/cache"
cfg = DemoConfig()
encoder = build_encoder(cfg.encoder, window_s=cfg.window_s, hop_s=cfg.hop_s)
items = read_manifest(H)
by_id, pool = {it.id: it for it in items}, [it for it in items if it.split == "train"]


def unit_vectors(clips):
    v = np.asarray(embed_clips(clips, encoder, cache_root=CACHE, max_windows=cfg.max_windows), np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


P, out = unit_vectors(pool), {}
for run, sizes in (("sizes-s0", (32, 16, 8)), ("books3-s0", (8, 8, 8))):
    centroids = []
    for b, n in enumerate(sizes):
        km = faiss.Kmeans(P.shape[1], n, niter=25, seed=1000 * b, spherical=True, min_points_per_centroid=1)
        km.train(P)
        centroids.append(km.centroids)
    code = lambda x: np.stack([(x @ c.T).argmax(1) for c in centroids], 1)
    tally = collections.defaultdict(lambda: [0, 0])  # front matches -> [right, episodes]
    for line in open(Path(sys.argv[1]) / run / "eval" / "predictions.jsonl"):
        r = json.loads(line)
        if r["select"] != "balanced" or r["condition"] != "model":
            continue
        query = code(unit_vectors([by_id[r["id"]]]))[0]
        right = code(unit_vectors([by_id[r["shot_ids"][r["shot_labels"].index(r["answer"])]]]))[0]
        if right[-1] == query[-1]:
            front = int((right[:-1] == query[:-1]).sum())
            tally[front][0] += r["score"]
            tally[front][1] += 1
    out[run] = {f"{k} of 2 front codes match": dict(right=v[0], episodes=v[1]) for k, v in sorted(tally.items())}
    print(run, out[run], flush=True)
what = "balanced 5-way 1-shot test episodes (2 shot draws) where the right shot shares the query's <SEP> code"
json.dump(dict(what=what, command=" ".join(sys.argv), rows=out), open(sys.argv[2], "w"), indent=1)
