"""Few-shot evaluation throughput (episodes/s, CPU) at k = 0, 4, 8 with the embedding cache warm.

    python benchmarks/bench_eval.py --out benchmarks/results/eval_throughput.json

The demo's model shape (`demo.DemoConfig`: small preset, aiSFX windows of 2.5 s, 4 windows), untrained gates
opened to 0.5 so that the audio path runs as in a trained model, greedy decoding of up to 12 tokens, bf16 autocast
where the CPU has native bf16 (`core.auto_precision`, as in the demo; fp32 where bf16 would be emulated). The
held-out set is the `spoken_languages` recipe (built into --data if missing). A warm-up pass fills the cache; the
timed pass runs `fewshot.evaluate` with one seed, baselines on and controls off. The machine is shared: `uptime` is
recorded.
"""

import argparse, json, os, subprocess, tempfile, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from audioflamingo_lab.core import auto_precision


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def heldout_manifest(folder: Path) -> Path:
    manifest = folder / "spoken_languages" / "manifest.jsonl"
    if not manifest.exists():
        import data_recipes

        data_recipes.build("spoken_languages", folder / "spoken_languages", seed=0, overwrite=True)
    return manifest


def build():
    "The demo's model (its `DemoConfig` fields), so the benchmark follows the demo when the demo changes."
    from audioflamingo_lab.demo import DemoConfig, model_overrides
    from audioflamingo_lab.flamingo import build_model

    cfg = DemoConfig()
    torch.manual_seed(0)
    model = build_model(cfg.preset, **model_overrides(cfg)).eval()
    with torch.no_grad():
        for _, layer in model.xattn_layers():
            layer.xattn.alpha_attn.fill_(0.5)
            layer.xattn.alpha_ff.fill_(0.5)
    return model


def timed_eval(model, manifest, index, cache, select: str, k: int, limit: int, out: Path) -> dict:
    from audioflamingo_lab.fewshot import evaluate

    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto_precision() == "bf16-mixed"):
        report = evaluate(
            model,
            manifest,
            shots={select: [k]} if k else [0],
            select=[select] if k else [],
            split="test",
            index=index,
            cache=cache,
            limit=limit,
            max_new_tokens=12,
            batch_size=8,
            max_tokens=384,
            out=out,
            overwrite=True,
        )
    seconds = time.perf_counter() - t0
    n = report.row(select if k else "none", k)["n"]
    return dict(
        select=select if k else "none",
        shots=k,
        episodes=n,
        seconds=round(seconds, 2),
        episodes_per_s=round(n / seconds, 3),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".cache/bench-eval", help="folder for the spoken_languages recipe and the cache")
    ap.add_argument("--limit", type=int, default=40, help="test queries per row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/eval_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from audioflamingo_lab.encoders import EmbeddingCache
    from audioflamingo_lab.rag import ClipIndex

    data = Path(args.data)
    manifest = heldout_manifest(data)
    model = build()
    cache = EmbeddingCache(data / "cache", model.encoder, max_windows=model.config.max_windows)
    index = ClipIndex.build(manifest, model.encoder, cache_root=cache)
    rows, load = [], [uptime()]
    with tempfile.TemporaryDirectory() as tmp:
        timed_eval(model, manifest, index, cache, "rag", 8, args.limit, Path(tmp) / "warm")  # fills the cache
        for select, k in (("none", 0), ("rag", 4), ("rag", 8), ("balanced", 1)):
            rows.append(timed_eval(model, manifest, index, cache, select, k, args.limit, Path(tmp) / f"{select}{k}"))
            print(rows[-1], flush=True)
    load.append(uptime())
    result = dict(
        what=__doc__.splitlines()[0],
        machine=f"{os.cpu_count()} CPU cores, shared",
        threads=args.threads,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        precision=auto_precision(),
        torch=torch.__version__,
        uptime=load,
        rows=rows,
    )
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
