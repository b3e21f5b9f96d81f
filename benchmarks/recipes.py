"""Wall time of each data recipe (full and quick settings) on this machine -> benchmarks/results/recipes.json.

    python benchmarks/recipes.py [--quick-only] [--recipes synthetic,speech]
Targets: full build <= 120 s and quick <= 20 s on 2 CPU cores.
"""

import argparse, json, os, platform, tempfile, time
from pathlib import Path
from data_recipes import build

ap = argparse.ArgumentParser()
ap.add_argument("--quick-only", action="store_true")
ap.add_argument("--recipes", default="synthetic,instruments,speech,sound_effects,dialogue")
a = ap.parse_args()
results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "recipes": {}}
for name in a.recipes.split(","):
    for quick in [True] if a.quick_only else [True, False]:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            m = build(name, Path(d) / "out", quick=quick)
            secs = time.perf_counter() - t
            lines = sum(1 for _ in open(m))
        results["recipes"][f"{name}{'-quick' if quick else ''}"] = {"seconds": round(secs, 2), "items": lines}
        print(name, "quick" if quick else "full", f"{secs:.1f} s", lines, "items", flush=True)
out = Path(__file__).parent / "results" / "recipes.json"
out.write_text(json.dumps(results, indent=1))
print(out)
