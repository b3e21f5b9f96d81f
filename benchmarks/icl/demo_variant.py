"""The demo with some `DemoConfig` fields changed, to try a setting on val before it becomes the default. Usage:
    python benchmarks/icl/demo_variant.py OUT SEED SPLIT STEPS 'dict(field=value, ...)' [DATA CACHE]
The expression may use EPISODES (the demo's episode mix). Data and cache: an earlier demo's (default: the shared val
build of the rag8 records). Records: benchmarks/results/demo/rag8-val-s0/, rag8-val-s1/, lora/.
"""

import sys
from dataclasses import replace
import audioflamingo_lab.demo as D

out, seed, split, steps, change = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
orig = D.demo_config


def demo_config(*a, **kw):
    cfg = orig(*a, **kw)
    fields = eval(change, {"D": D, "EPISODES": D.EPISODES})
    print("variant:", fields, file=sys.stderr)
    return replace(cfg, **fields)


D.demo_config = demo_config
data, cache = sys.argv[6:8] if len(sys.argv) > 7 else ("/work/runs/lean-s0/data", "/work/runs/lean-s0/cache")
D.demo(out=out, seed=seed, eval_split=split, steps=steps, data=data, cache=cache)
