"""Val: does a vote over k-means fits remove the fit lottery? The frozen LM (no training) with the demo's three 8-code
books answers the balanced 5-way 1-shot val episodes (shot draw 0, options readout) once per fit (0-4); the vote takes
the most frequent answer of fits 0-2 (and of 0-4), ties to the earliest fit's answer among the tied labels. Each vote
is compared with each single fit query by query (`paired_difference`). It costs one evaluation per fit. Val only: it
chooses. The rule, written before the run, is in the README's paragraph on it. Usage:
    python benchmarks/icl/fit_vote.py DATA_DIR CACHE OUT.json
Record: benchmarks/results/audio_codes/fit_vote_val.json.
"""

import json, sys, time
import numpy as np, torch

torch.set_num_threads(2)
from audioflamingo_lab.audio_codes import vote  # the library's: ties to the earliest fit's answer
from audioflamingo_lab.fewshot_report import paired_difference
from audioflamingo_lab.icl import BalancedShots, make_episodes
from frozen_lm import frozen_setup, options_answers  # a sibling file: scripts run as python benchmarks/icl/NAME.py

FITS = (0, 1, 2, 3, 4)


data, cache_dir, out = sys.argv[1:4]
H, pool, queries, net, cache, P = frozen_setup(data, cache_dir)
episodes = make_episodes(queries, BalancedShots(pool, ways=5, seed=0), 1)
truth = [e.query.answer for e in episodes]
ids = [e.query.id for e in episodes]
answers, seconds, t0 = {}, {}, time.time()
for fit in FITS:
    t = time.time()
    net.codebook.fit(P, seed=fit)
    answers[fit] = options_answers(net, episodes, cache)
    seconds[fit] = round(time.time() - t, 1)
    print(fit, np.mean([a == y for a, y in zip(answers[fit], truth)]), seconds[fit], flush=True)


def hits(preds):
    return {q: float(p == y) for q, p, y in zip(ids, preds, truth)}


singles = {f"fit {f}": hits(answers[f]) for f in FITS}
votes = {
    "vote 0-2": hits([vote([answers[f][i] for f in (0, 1, 2)]) for i in range(len(ids))]),
    "vote 0-4": hits([vote([answers[f][i] for f in FITS]) for i in range(len(ids))]),
}
rows = {name: round(float(np.mean(list(h.values()))), 3) for name, h in {**singles, **votes}.items()}
paired = {
    f"{v} - {s}": {
        k: (round(x, 4) if isinstance(x, float) else x) for k, x in paired_difference(votes[v], singles[s]).items()
    }
    for v in votes
    for s in singles
}
mean_012 = round(float(np.mean([rows[f"fit {f}"] for f in (0, 1, 2)])), 3)
what = (
    f"{H}: val languages ({len(queries)} queries; pool: the train split), frozen SmolLM2-135M with three 8-code books "
    "(gate tanh(4)), no training, options readout, balanced 5-way 1-shot, shot draw 0; val only"
)
record = dict(
    what=what, command=" ".join(["python", *sys.argv]), seconds=round(time.time() - t0), seconds_per_fit=seconds
)
record.update(rows=rows, mean_single_fits_0_2=mean_012, paired=paired)
json.dump(record, open(out, "w"), indent=1)
print(json.dumps(rows, indent=1), "mean of fits 0-2", mean_012)
