"""Val: the frozen LM with code books fitted on centred clip vectors (the pool's mean subtracted, renormalised), against
the demo's books, balanced 5-way 1-shot (shot draw 0), k-means fits 0-2, options readout, no training. The vectors of
one encoder sit in a narrow cone (a pool clip's nearest centroid at cosine 0.96), so centring spreads them before the
cut. Val only: it chooses. Usage:
    python benchmarks/icl/centred_codes.py DATA_DIR CACHE OUT.json
Record: benchmarks/results/audio_codes/centred_codes_val.json.
"""

import json, sys, time
import numpy as np, torch

torch.set_num_threads(2)
from audioflamingo_lab.audio_codes import AudioCodebook, clip_vectors
from audioflamingo_lab.icl import BalancedShots, make_episodes
from frozen_lm import frozen_setup, options_accuracy  # a sibling file: scripts run as python benchmarks/icl/NAME.py

data, cache_dir, out = sys.argv[1:4]
H, pool, queries, net, cache, P = frozen_setup(data, cache_dir)
P /= np.linalg.norm(P, axis=1, keepdims=True)
mean = torch.from_numpy(P.mean(0))
demo_similarity = AudioCodebook.similarity


def centred_similarity(self, window_embeds, media_mask):
    "Cosine of each audio's centred clip vector to the centroids (fitted on centred vectors); as the demo's otherwise."
    v = clip_vectors(window_embeds, media_mask)
    v = torch.where(v.abs().sum(-1, keepdim=True) > 0, torch.nn.functional.normalize(v - mean, dim=-1), v)
    return v @ self.centroids.float().T


episodes = make_episodes(queries, BalancedShots(pool, ways=5, seed=0), 1)
rows, t0 = [], time.time()
for fit in (0, 1, 2):
    for books in ("demo", "centred"):
        x = P - mean.numpy() if books == "centred" else P
        net.codebook.fit(x, seed=fit)  # `fit` renormalises its input
        AudioCodebook.similarity = centred_similarity if books == "centred" else demo_similarity
        rows.append(dict(fit=fit, books=books, balanced=options_accuracy(net, episodes, cache)))
        print(rows[-1], round(time.time() - t0), flush=True)
what = (
    f"{H}: val languages ({len(queries)} queries; pool: the train split), frozen SmolLM2-135M with three 8-code "
    "books (gate tanh(4)), no training, options readout, balanced 5-way 1-shot, shot draw 0; val only"
)
json.dump(
    dict(what=what, command=" ".join(sys.argv), seconds=round(time.time() - t0), rows=rows), open(out, "w"), indent=1
)
