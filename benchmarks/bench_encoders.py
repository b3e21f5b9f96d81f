"""Window-encoder throughput on CPU: raw forward, and through EmbeddingCache cold (load + resample + encode + write)
versus cached (hash + read).

    .venv/bin/python benchmarks/bench_encoders.py [--threads 1] [--windows 32] [--htsat-windows 4] [--files 3]
                                                  [--encoders mel clap-htsat aisfx whisper-tiny]

Every registered encoder is tried (`aisfx` and `whisper-tiny` need the weight packages of requirements-pretrained.txt);
one that cannot be built is recorded with its error. Writes benchmarks/results/encoders.json.
"""

import argparse, json, os, platform, tempfile, time
from pathlib import Path
import numpy as np, soundfile as sf, torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from audioflamingo_lab.encoders import EmbeddingCache, available_encoders, build_encoder

SLOW = {"clap-htsat", "whisper-tiny", "aisfx"}  # ~0.2-0.5 s per window on one core: fewer windows


def forward_rate(enc, n_windows, repeats=2):
    g = torch.Generator().manual_seed(0)
    W = round(enc.window_s * enc.sample_rate)
    x = torch.randn(1, n_windows, W, generator=g) * 0.1
    with torch.no_grad():
        enc(x[:, :1])  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            enc(x)
        dt = (time.perf_counter() - t) / repeats
    return n_windows / dt


def cache_rates(enc, files, windows_per_file):
    with tempfile.TemporaryDirectory() as root:
        cache = EmbeddingCache(root, enc)
        t = time.perf_counter()
        cache.get_many(files, progress=False)
        cold = time.perf_counter() - t
        calls = cache.encoder_calls
        cache2 = EmbeddingCache(root, enc)  # fresh object: no in-memory file hashes
        t = time.perf_counter()
        cache2.get_many(files, progress=False)
        warm = time.perf_counter() - t
        assert cache2.encoder_calls == 0, "second pass must not run the encoder"
    n = len(files) * windows_per_file
    return {
        "cold_windows_per_s": n / cold,
        "cached_windows_per_s": n / warm,
        "cold_encoder_calls": calls,
        "cached_encoder_calls": 0,
        "speedup": cold / warm,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--windows", type=int, default=32, help="windows per forward for fast encoders")
    ap.add_argument("--htsat-windows", type=int, default=4, help="windows per forward for slow encoders")
    ap.add_argument("--files", type=int, default=3, help="12 s files (4 windows each) for the cache runs")
    ap.add_argument("--encoders", nargs="*", default=None)
    ap.add_argument("--out", default="benchmarks/results/encoders.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = a.encoders or available_encoders()
    results = {
        "threads": a.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "load_avg": os.getloadavg()[0],
        "encoders": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        files = []
        for i in range(a.files):  # 12 s at 44.1 kHz: every encoder resamples
            p = Path(tmp) / f"clip{i}.wav"
            sf.write(p, rng.normal(0, 0.2, 12 * 44100).astype(np.float32), 44100, subtype="FLOAT")
            files.append(p)
        for name in names:
            try:
                t = time.perf_counter()
                enc = build_encoder(name)
                build_s = time.perf_counter() - t
            except Exception as e:
                results["encoders"][name] = {"error": f"{type(e).__name__}: {e}"}
                print(name, "unavailable:", e)
                continue
            n = a.htsat_windows if name in SLOW else a.windows
            fwd = forward_rate(enc, n)
            r = {
                "dim": enc.dim,
                "sample_rate": enc.sample_rate,
                "build_s": build_s,
                "forward_windows": n,
                "forward_windows_per_s": fwd,
                **cache_rates(enc, files[: 1 if name in SLOW else len(files)], 4),
            }
            results["encoders"][name] = r
            print(
                f"{name:14s} dim {enc.dim:4d}  forward {fwd:8.1f} win/s   cache cold {r['cold_windows_per_s']:8.1f}"
                f"  cached {r['cached_windows_per_s']:9.1f} win/s  (x{r['speedup']:.0f})"
            )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
