"""The third shot draw (eval seed 2) of the default demo's runs, model rows only: what the 3-draw table would read.

Run after `afl demo --out /work/runs/lean-s{1,2} --seed {1,2}` (seed 0's three draws are in
benchmarks/results/demo/frozen-gate-s0/): `python benchmarks/icl/third_draw.py`
-> benchmarks/results/demo/third_draw.json
"""

import json
from pathlib import Path
from audioflamingo_lab.checkpoint import load_checkpoint
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.demo import DemoConfig, build_data
from audioflamingo_lab.rag import ClipIndex
from audioflamingo_lab.audio_codes import codebook_fitted_on
from audioflamingo_lab.fewshot import evaluate

cfg = DemoConfig()
out = {}
for s in (1, 2):
    run = Path(f"/work/runs/lean-s{s}")
    model = load_checkpoint(run / "train/model.safetensors").eval()
    data = build_data(run / "data", False, cfg.n_per_class)
    store = EmbeddingCache(run / "cache", model.encoder, max_windows=model.config.max_windows)
    index = ClipIndex.load(run / "index", manifest=data["heldout"], encoder=model.encoder)
    with codebook_fitted_on(model, index.items, store):
        rep = evaluate(
            model,
            data["heldout"],
            shots={"rag": [1, 4, 8], "balanced": [1]},
            select=["rag", "balanced"],
            split="test",
            index=index,
            ways=5,
            seeds=[2],
            out=f"/tmp/third-draw-s{s}",
            cache=store,
            batch_size=8,
            max_new_tokens=12,
            overwrite=True,
            max_tokens=384,
        )
    out[s] = {f"{r['select']}-{r['shots']}": r["score"] for r in rep.rows if r["condition"] == "model"}
    print(s, out[s], flush=True)
what = "balanced 5-way 1-shot and RAG-1/4/8 model scores on eval seed 2 (the draw the default demo leaves out)"
Path("benchmarks/results/demo/third_draw.json").write_text(
    json.dumps({"what": what, "by_training_seed": out}, indent=1)
)
