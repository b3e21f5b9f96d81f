"""Paired comparisons of finished runs, per query (`fewshot_report.paired_difference`): the model against `knn` in the
same run, and the model of one run against another's on the same queries. No model runs. Usage:
    python benchmarks/icl/paired_rows.py OUT.json NAME=RUN_A:COND_A:RUN_B:COND_B [...]
Each pair is compared on the rows balanced-1, rag-1, rag-4 and rag-8 (those both runs have).
Record: benchmarks/results/demo/paired_rows.json.
"""

import json, sys, time
from pathlib import Path
from audioflamingo_lab.fewshot_report import paired_difference, query_scores

ROWS = (("balanced", 1), ("rag", 1), ("rag", 4), ("rag", 8))


def compare(run_a: str, cond_a: str, run_b: str, cond_b: str) -> dict:
    out = {}
    for select, k in ROWS:
        try:
            a = query_scores(Path(run_a) / "eval" / "predictions.jsonl", select, k, cond_a)
            b = query_scores(Path(run_b) / "eval" / "predictions.jsonl", select, k, cond_b)
        except ValueError:
            continue  # a row one of the runs did not evaluate
        d = paired_difference(a, b)
        out[f"{select}-{k}"] = {key: round(v, 4) if isinstance(v, float) else v for key, v in d.items()}
        out[f"{select}-{k}"]["ci95"] = [round(x, 4) for x in d["ci95"]]
    return {"a": f"{run_a} {cond_a}", "b": f"{run_b} {cond_b}", "rows": out}


if __name__ == "__main__":
    t0 = time.time()
    pairs = {}
    for spec in sys.argv[2:]:
        name, rest = spec.split("=", 1)
        pairs[name] = compare(*rest.split(":"))
    record = {"pairs": pairs, "command": " ".join(["python", *sys.argv]), "seconds": round(time.time() - t0, 1)}
    Path(sys.argv[1]).write_text(json.dumps(record, indent=1) + "\n")
    for name, pair in pairs.items():
        for row, d in pair["rows"].items():
            print(
                f"{name:<22} {row:<11} A {d['a']:.3f}  B {d['b']:.3f}  A-B {d['difference']:+.3f} {d['ci95']}"
                f"  A higher {d['a_higher']:>3}  B higher {d['b_higher']:>3}  p {d['p']:.3f}"
            )
