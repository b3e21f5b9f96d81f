"""The no-model votes of finished `afl demo` runs, recomputed with the library's `baseline_predictions` on the episodes
each run evaluated (rebuilt from its predictions.jsonl: query, shots in order): `knn` (raw cosine) and `knn-centred`
(the pool's mean vector subtracted first, SimpleShot's CL2N). `knn` must equal the run's own report, row for row: that
checks the rebuild. No model runs. Usage:
    python benchmarks/icl/knn_centred.py OUT.json RUN_DIR [RUN_DIR ...]
Record: benchmarks/results/demo/knn_centred.json (runs /work/runs/zen2-s0, test; /work/runs/val-s0, val).
"""

import json, sys, time
from collections import defaultdict
from pathlib import Path
import yaml
from audioflamingo_lab.core import Episode
from audioflamingo_lab.encoders import build_encoder
from audioflamingo_lab.evaluation import wilson_interval
from audioflamingo_lab.fewshot_controls import baseline_predictions
from audioflamingo_lab.fewshot_report import FewShotReport
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.rag import ClipIndex


def rebuilt_episodes(run: Path, items: dict) -> dict[tuple, list[Episode]]:
    "{(select, shots, seed): episodes} of the model rows with shots, in the order the run wrote them."
    rows = defaultdict(list)
    for line in (run / "eval" / "predictions.jsonl").read_text().splitlines():
        d = json.loads(line)
        if d["condition"] == "model" and d["shot_ids"]:
            shots = [items[s] for s in d["shot_ids"]]
            rows[d["select"], d["shots"], d["seed"]].append(Episode(items[d["id"]], shots, d["select"]))
    return rows


def votes(run: Path) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())["demo"]
    encoder = build_encoder(cfg["encoder"], window_s=cfg["window_s"], hop_s=cfg["hop_s"])
    manifest = run / "data" / "spoken_languages" / "manifest.jsonl"
    index = ClipIndex.load(run / "index", manifest=manifest, encoder=encoder)
    items = {it.id: it for it in read_manifest(manifest)}
    report = FewShotReport.from_json(run / "eval" / "report.json")
    out = {}
    for (select, k, seed), episodes in sorted(rebuilt_episodes(run, items).items()):
        preds = baseline_predictions(episodes, k, None, index)
        row = {"n": len(episodes), "model": round(report.row(select, k)["score"], 3)}
        for name in ("knn", "knn-centred"):
            hits = sum(p == ep.query.answer for p, ep in zip(preds[name], episodes))
            row[name] = round(hits / len(episodes), 3)
            row[f"{name}_ci95"] = [round(x, 3) for x in wilson_interval(hits, len(episodes))]
        if row["knn"] != round(report.row(select, k, "knn")["score"], 3):
            raise SystemExit(f"{run}: {select}-{k} knn {row['knn']} differs from the report: the rebuild is wrong")
        out[f"{select}-{k}" + (f"/seed{seed}" if seed else "")] = row
    return {"split": report.split, "pool_vectors": len(index.vectors), "rows": out}


if __name__ == "__main__":
    t0 = time.time()
    record = {"runs": {str(run): votes(Path(run)) for run in sys.argv[2:]}}
    record.update(command=" ".join(["python", *sys.argv]), seconds=round(time.time() - t0, 1))
    Path(sys.argv[1]).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
