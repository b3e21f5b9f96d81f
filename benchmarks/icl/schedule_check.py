"""Issue 11's schedule check: the default demo at 20 steps against 40 steps, the same training seeds, row by row.

`python benchmarks/icl/schedule_check.py NAME RUNS20 RUNS40 "WHAT"` with RUNS20/RUNS40 comma-separated record folders
(under benchmarks/results/demo/, in seed order) -> benchmarks/results/demo/schedule_check_NAME.json.
Reproduces schedule_check_books3.json from books3-s0..2 and books3-40-s0..2; wrote schedule_check_rag8.json from
rag8-s0..2 and rag8-40-s0..2, schedule_check_v2.json from v2-default-s0..2 and v2-default-40-s0..2, and
schedule_check_v3.json from opt-s0..2 and opt-40-s0..2. Its means average the rounded per-run scores (RAG-1 at 20
steps: 0.845; the README's runs table, from unrounded ones: 0.844).
"""

import json
import sys
from pathlib import Path

import numpy as np

from audioflamingo_lab.demo_verdict import runs_table

RESULTS = Path(__file__).parents[1] / "results" / "demo"
ROWS = {  # this file's row name: (runs_table row, condition)
    "balanced": ("balanced-1", "model"),
    "rag1": ("rag-1", "model"),
    "rag4": ("rag-4", "model"),
    "rag8": ("rag-8", "model"),
    "seen": ("seen-zero-shot", "model"),
    "no_query_audio": ("balanced-1", "no-query-audio"),
    "gates_off": ("balanced-1", "gates-off"),
    "shuffled": ("balanced-1", "shuffled-shot-audio"),
}


def per_run(folders: list[Path]) -> dict[str, list[float]]:
    "Each row's score in each run, rounded as the README prints them."
    table = runs_table(folders)
    return {name: [round(v, 3) for v in table[row][cond][2]] for name, (row, cond) in ROWS.items()}


def check(name: str, runs20: list[str], runs40: list[str], what: str) -> dict:
    scores = {n: per_run([RESULTS / r for r in runs]) for n, runs in (("20", runs20), ("40", runs40))}
    rows = {}
    for row in ROWS:
        a, b = scores["20"][row], scores["40"][row]
        drop = [round(100 * (x - y), 1) for x, y in zip(a, b)]  # points lost when the steps double
        rows[row] = dict(steps20=a, steps40=b, mean20=round(float(np.mean(a)), 3), mean40=round(float(np.mean(b)), 3))
        rows[row]["drop_points"] = drop
        rows[row]["mean_drop_points"] = round(100 * (float(np.mean(a)) - float(np.mean(b))), 1)
    runs = {}
    for steps, folders in (("20", runs20), ("40", runs40)):
        runs[steps] = {}
        for seed, folder in enumerate(folders):
            wall = json.loads((RESULTS / folder / "summary.json").read_text())["wall_s"]
            runs[steps][str(seed)] = {row: scores[steps][row][seed] for row in ROWS} | {
                "folder": folder,
                "wall_s": wall,
            }
    return {"what": what, "rows": rows, "runs": runs}


if __name__ == "__main__":
    name, runs20, runs40, what = sys.argv[1:5]
    out = check(name, runs20.split(","), runs40.split(","), what)
    (RESULTS / f"schedule_check_{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    for row, r in out["rows"].items():
        steps = f"20: {r['mean20']:.3f} {r['steps20']}  40: {r['mean40']:.3f} {r['steps40']}"
        print(f"{row:<15} {steps}  drop {r['drop_points']}")
