"""The demo with LoRA on the LM's decoder layers from L up (its `train_config` sets L = xattn_from, 22), to try on val
whether adapting the layers below the cross-attention, where SmolLM2's induction heads read the code tokens, helps.
Usage (the rest as benchmarks/icl/demo_variant.py):
    python benchmarks/icl/lora_from_layer.py L OUT SEED SPLIT STEPS 'dict(mode="lora", ...)' [DATA CACHE]
Record: benchmarks/results/demo/lora_from/.
"""

import runpy, sys
from pathlib import Path
import audioflamingo_lab.demo as D

from_layer = int(sys.argv.pop(1))
demo_train_config = D.train_config


def train_config(*args, **kwargs):
    config = demo_train_config(*args, **kwargs)
    config["model"].lora_from_layer = from_layer  # written to train/config.yaml with the rest
    return config


D.train_config = train_config
sys.argv = ["demo_variant.py", *sys.argv[1:]]
runpy.run_path(str(Path(__file__).with_name("demo_variant.py")), run_name="__main__")
