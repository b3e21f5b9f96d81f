"""Why balanced 5-way 1-shot is where it is: in each test episode of the default demo runs, does the query's audio code
match the right shot's only, the right one and others, or none? And how often is the model right in each case?

Run after `afl demo --out /work/runs/lean-sS --seed S` (S = 0, 1, 2): `python benchmarks/icl/code_collisions.py`
-> benchmarks/results/demo/code_collisions.json
"""

import json, collections, torch
from pathlib import Path
from audioflamingo_lab.checkpoint import load_checkpoint
from audioflamingo_lab.demo import DemoConfig, build_data
from audioflamingo_lab.rag import ClipIndex, embed_clips
from audioflamingo_lab.audio_codes import codebook_fitted_on
from audioflamingo_lab.manifest import read_manifest

cfg = DemoConfig()
total = collections.defaultdict(lambda: [0, 0])
for s in range(3):
    run = Path(f"/work/runs/lean-s{s}")
    model = load_checkpoint(run / "train/model.safetensors").eval()
    data = build_data(run / "data", False, cfg.n_per_class)
    index = ClipIndex.load(run / "index", manifest=data["heldout"], encoder=model.encoder)
    items = read_manifest(data["heldout"])
    vec = torch.as_tensor(
        embed_clips(items, model.encoder, cache_root=run / "cache", max_windows=model.config.max_windows)
    )
    one_window = vec[:, None, None].float()  # a clip vector is its own 1-window clip: assign() reads it unchanged
    with codebook_fitted_on(model, index.items, run / "cache"):
        codes = model.codebook.assign(one_window, torch.ones(len(items), 1, 1, dtype=torch.bool))[:, 0]
    code = dict(zip([it.id for it in items], codes.tolist()))
    for p in map(json.loads, open(run / "eval/predictions.jsonl")):
        if (p["select"], p["shots"], p["condition"]) != ("balanced", 1, "model"):
            continue
        q = code[p["id"]]
        right = [code[i] == q for i, l in zip(p["shot_ids"], p["shot_labels"]) if l == p["answer"]]
        wrong = sum(code[i] == q for i, l in zip(p["shot_ids"], p["shot_labels"]) if l != p["answer"])
        kind = (
            ("right shot only" if wrong == 0 else "right shot and %s" % ("1 other" if wrong == 1 else "2+ others"))
            if any(right)
            else ("no shot" if wrong == 0 else "only wrong shots")
        )
        total[kind][0] += p["score"]
        total[kind][1] += 1
n = sum(v[1] for v in total.values())
rows = {k: {"episodes": m, "share": round(m / n, 3), "accuracy": round(hit / m, 3)} for k, (hit, m) in total.items()}
for k, r in sorted(rows.items(), key=lambda x: -x[1]["episodes"]):
    print(f"{k:<22} {r['episodes']:4d} episodes ({r['share']:.0%})  accuracy {r['accuracy']:.3f}")
what = "balanced 5-way 1-shot test episodes of lean-s0..2 (2 draws each), grouped by which shots share the query's code"
Path("benchmarks/results/demo/code_collisions.json").write_text(json.dumps({"what": what, "rows": rows}, indent=1))
