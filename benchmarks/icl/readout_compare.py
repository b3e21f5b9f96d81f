"""The same trained demo read out two ways: `free` (AF1: the model writes, the scorer judges) and `options` (decoding
may write only one of the query's listed options; Flamingo's close-ended classification).

Reads pairs of demo folders RUNS_DIR/{FREE}-sS and RUNS_DIR/{OPTIONS}-sS, the second made from a copy of the first's
`train/` folder, so both read the same checkpoint and k-means fit:
    afl demo --out RUNS_DIR/FREE-sS --seed S [--eval_split val] --data D --cache C
    mkdir RUNS_DIR/OPTIONS-sS && cp -r RUNS_DIR/FREE-sS/train RUNS_DIR/OPTIONS-sS/
    afl demo --out RUNS_DIR/OPTIONS-sS --seed S [--eval_split val] --data D --cache C --readout options
and writes, per seed and readout, the verdict's rows (model, knn, chance, the three controls, seen zero-shot), then
the mean and sd over seeds, and what the free answers were where the options readout changed the score. Usage:
    python benchmarks/icl/readout_compare.py RUNS_DIR FREE OPTIONS OUT.json
Records in benchmarks/results/demo/readout/: readout_compare_val.json, readout_compare_lora_val.json (val),
readout_compare_test.json (test).
"""

import json, sys
from collections import Counter
from pathlib import Path
import numpy as np
from audioflamingo_lab.evaluation import normalize_answer

runs, free_name, options_name, out_path = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
CONTROLS = ("no-query-audio", "gates-off", "shuffled-shot-audio")


def flat(folder: Path) -> dict:
    "The verdict of one demo as {row: score}: model rows, knn, controls at balanced 5-way 1-shot, seen zero-shot."
    summary = json.loads((folder / "summary.json").read_text())
    v = summary["verdict"]
    rows = {name: r["model"] for name, r in v["rows"].items()}
    rows |= {f"knn {name}": r["knn"] for name, r in v["rows"].items()}
    rows |= {f"{c} (balanced-1)": v["rows"]["balanced-1"][c] for c in CONTROLS}
    return rows | {"zero-shot": v["zero_shot"], "seen zero-shot": v["seen_zero_shot"], "wall_s": summary["wall_s"]}


def lines(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "eval" / "predictions.jsonl").read_text().splitlines()]


def free_answer_kind(line: dict, options: set[str]) -> str:
    "right (as the scorer judged it), empty, another option (after the scorer's normalisation) or off-list."
    p = normalize_answer(line["prediction"])
    if line["score"]:
        return "right"
    return "empty" if not p else "another option" if p in {normalize_answer(o) for o in options} else "off-list"


per_seed, changes = {}, Counter()
for free in sorted(runs.glob(f"{free_name}-s*")):
    seed = free.name.rsplit("-s", 1)[1]
    options = runs / f"{options_name}-s{seed}"
    if not ((free / "summary.json").exists() and (options / "summary.json").exists()):
        continue
    per_seed[seed] = {"free": flat(free), "options": flat(options)}
    a, b = lines(free), lines(options)
    assert [(x["id"], x["condition"], x["select"], x["shots"]) for x in a] == [
        (x["id"], x["condition"], x["select"], x["shots"]) for x in b
    ], f"{free} and {options} did not score the same episodes"
    for x, y in zip(a, b):
        if x["condition"] == "model" and x["select"] == "balanced":  # the row only the audio can answer
            labels = set(x["shot_labels"])
            changes[f"{free_answer_kind(x, labels)} -> {'right' if y['score'] else 'wrong'}"] += 1
    print(seed, json.dumps(per_seed[seed]), flush=True)

mean_sd = lambda v: [round(float(np.mean(v)), 3), round(float(np.std(v)), 3)]
mean = {}
for readout in ("free", "options"):
    tables = [per_seed[s][readout] for s in per_seed]
    mean[readout] = {row: mean_sd([t[row] for t in tables]) for row in tables[0]}
what = (
    "afl demo read out two ways from the same checkpoint and k-means fit: free (AF1) and options (close-ended); "
    "mean and sd (numpy, ddof 0) over training seeds; 'changes' counts balanced 5-way 1-shot answers of all seeds by "
    "what the free readout wrote -> whether the options readout was right"
)
record = dict(
    what=what, command=" ".join(sys.argv), seeds=per_seed, mean_sd=mean, changes=dict(sorted(changes.items()))
)
Path(out_path).write_text(json.dumps(record, indent=1))
print(json.dumps(mean, indent=1), dict(changes))
