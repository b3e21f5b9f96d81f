"""Val: the demo trained with Flamingo's immediate media mask against AF1's cumulative one, the same training seeds.

Reads demo folders named `mask-{immediate,cumulative}-val-s{S}` (20 steps) and `mask100-...-val-s0` (100 steps) under
RUNS_DIR, each made by
    afl demo --out RUNS_DIR/mask-M-val-sS --seed S --eval_split val --media_attention M --data D --cache C [--steps 100]
and writes {run: rows} plus how many answers differ between the two masks. Usage:
    python benchmarks/icl/mask_compare.py RUNS_DIR OUT.json
Record: benchmarks/results/demo/mask_compare.json.
"""

import json, sys
from pathlib import Path

runs, out = Path(sys.argv[1]), {}
for folder in sorted(runs.glob("mask*-immediate-val-s*")):
    pair = {m: folder.parent / folder.name.replace("immediate", m) for m in ("immediate", "cumulative")}
    if not all((f / "summary.json").exists() for f in pair.values()):
        continue
    rows = {}
    for mask, f in pair.items():
        summary = json.loads((f / "summary.json").read_text())
        v = summary["verdict"]["rows"]
        rows[mask] = {name: r["model"] for name, r in v.items()} | {
            "no-query-audio": v["balanced-1"]["no-query-audio"],
            "seen_zero_shot": summary["verdict"]["seen_zero_shot"],
            "steps": summary["steps"],
            "wall_s": summary["wall_s"],
        }
        rows["knn"] = {name: r["knn"] for name, r in v.items()}
    answers = [[json.loads(l)["prediction"] for l in open(f / "eval" / "predictions.jsonl")] for f in pair.values()]
    rows["answers_that_differ"] = [sum(a != b for a, b in zip(*answers)), len(answers[0])]
    out[folder.name.replace("-immediate", "")] = rows
    print(folder.name, rows, flush=True)
what = (
    "afl demo on the val languages of the held-out set v2 (86 queries, one shot draw), the same training seed and "
    "k-means fit for both masks; model rows, knn, the no-query-audio control, and the answers that differ"
)
json.dump(dict(what=what, command=" ".join(sys.argv), runs=out), open(sys.argv[2], "w"), indent=1)
