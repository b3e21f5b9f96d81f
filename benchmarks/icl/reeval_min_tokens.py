"""Re-evaluate a finished demo's checkpoint, with answers of at least N tokens (HF `min_new_tokens`), on val.
    python benchmarks/icl/reeval_min_tokens.py SRC_RUN DST SEED N [SPLIT]
The checkpoint is linked, not retrained, so only decoding differs. Record: benchmarks/results/demo/min_tokens_val.json.
"""

import os, sys
from pathlib import Path

src, dst, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
min_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 0
split = sys.argv[5] if len(sys.argv) > 5 else "val"
(dst / "train").mkdir(parents=True, exist_ok=True)
for name in ("model.safetensors", "config.yaml"):
    if not (dst / "train" / name).exists():
        os.symlink(src / "train" / name, dst / "train" / name)
if min_tokens:
    from audioflamingo_lab.flamingo import Flamingo

    plain_generate = Flamingo.generate

    def generate(self, *args, **kw):
        kw.setdefault("min_new_tokens", min_tokens)  # the end tokens are masked until N tokens are written
        return plain_generate(self, *args, **kw)

    Flamingo.generate = generate
from audioflamingo_lab.demo import demo

demo(out=str(dst), seed=seed, eval_split=split, data="/work/runs/lean-s0/data", cache="/work/runs/lean-s0/cache")
