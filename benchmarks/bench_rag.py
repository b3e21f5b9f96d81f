"""Retrieval benchmark: clip-embedding throughput (cold vs cached) and faiss search latency + recall@8 at 10k/100k/1M.

    .venv/bin/python benchmarks/bench_rag.py [--sizes 10000 100000 1000000] [--threads 1] [--skip-embedding] [--out ...]

Vectors are SYNTHETIC: d=512 unit vectors from a Gaussian mixture (1000 centres, per-vector noise of norm ~0.7, then
L2-normalised), a stand-in for real CLAP-like embeddings, which form clusters. Queries (1000) are held out from the
same mixture. Latency is the wall time of searching the queries (a) one at a time (median per query) and
(b) as one batch (per query). The approximate indexes' nprobe / efSearch are doubled until recall@8 >= 0.95 against
exact search, and the first setting that reaches it is reported.
"""

import argparse, json, platform, tempfile, time
from pathlib import Path
import numpy as np, faiss
from audioflamingo_lab.faiss_index import IndexParams, make_faiss_index, exact_top_k, recall_at_k, tune_recall
from audioflamingo_lab.rag import embed_clips

D, CENTRES, NOISE, K, TARGET = 512, 1000, 0.7, 8, 0.95


def mixture(n, rng, centres, chunk=100_000):
    "n unit vectors: a random centre plus Gaussian noise of norm ~NOISE, normalised (built in chunks to bound memory)."
    out = np.empty((n, D), np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        x = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, D), dtype=np.float32) * (
            NOISE / np.sqrt(D)
        )
        out[a : a + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latency(index, queries, single=200):
    t = []
    for q in queries[:single]:
        t0 = time.perf_counter()
        index.search(q[None], K)
        t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    index.search(queries, K)
    batch = (time.perf_counter() - t0) / len(queries)
    return {"single_query_ms_median": 1e3 * float(np.median(t)), "batched_ms_per_query": 1e3 * batch}


def bench_search(n, rng, centres, queries, kinds):
    data = mixture(n, rng, centres)
    truth = exact_top_k(data, queries, K)
    row = {"n": n}
    for kind in kinds:
        if kind == "hnsw" and n > 100_000:
            row[kind] = {"skipped": "HNSW build at 1M x 512 takes too long on 2 shared cores; IVF covers this size"}
            continue
        params = IndexParams(kind, nprobe=1, ef_search=16)
        t0 = time.perf_counter()
        index = make_faiss_index(data, params)
        build = time.perf_counter() - t0
        r = recall_at_k(index, data, queries, K, truth) if kind == "flat" else None
        if kind != "flat":
            tune_recall(index, params, data, queries, K, TARGET)
            r = recall_at_k(index, data, queries, K, truth)
        entry = {
            "build_s": round(build, 2),
            f"recall@{K}": round(r, 4),
            **{k: round(v, 4) for k, v in latency(index, queries).items()},
        }
        if kind == "ivf":
            entry.update(nlist=params.nlist, nprobe=params.nprobe, train_size=min(n, params.train_size))
        if kind == "hnsw":
            entry.update(M=params.hnsw_m, efSearch=params.ef_search)
        row[kind] = entry
        print(n, kind, entry, flush=True)
        del index
    return row


def bench_embedding(n_clips=24, seconds=3.0):
    "Clips/s of embed_clips with the mel encoder: cold (encoder runs, cache written) vs cached (read back)."
    try:
        from audioflamingo_lab.encoders import build_encoder
    except ImportError as e:
        return {"skipped": f"encoders module not available ({e})"}
    import soundfile as sf, torch

    torch.set_num_threads(2)
    enc = build_encoder("mel")
    with tempfile.TemporaryDirectory() as tmp:
        rng, paths = np.random.default_rng(0), []
        for i in range(n_clips):
            t = np.arange(int(seconds * 16000)) / 16000
            x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(f"{tmp}/c{i}.wav", x.astype(np.float32), 16000)
            paths.append(f"{tmp}/c{i}.wav")
        t0 = time.perf_counter()
        a = embed_clips(paths, enc, cache_root=f"{tmp}/cache")
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = embed_clips(paths, enc, cache_root=f"{tmp}/cache")
        warm = time.perf_counter() - t0
        assert np.allclose(a, b, atol=1e-5)
    return {
        "encoder": "mel",
        "cache_key": enc.cache_key(),
        "clips": n_clips,
        "clip_seconds": seconds,
        "cold_clips_per_s": round(n_clips / cold, 2),
        "cached_clips_per_s": round(n_clips / warm, 2),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"])
    ap.add_argument("--threads", type=int, default=1)  # 2 OpenMP threads spin badly on a loaded 2-core box
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--skip-embedding", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/rag.json")
    a = ap.parse_args()
    faiss.omp_set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    c = rng.standard_normal((CENTRES, D)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    queries = mixture(a.queries, np.random.default_rng(1), c)
    result = {
        "what": __doc__.strip().splitlines()[0],
        "data": f"synthetic Gaussian mixture: d={D}, {CENTRES} centres, "
        f"noise norm ~{NOISE}, unit vectors; {a.queries} held-out queries",
        "k": K,
        "recall_target": TARGET,
        "faiss": faiss.__version__,
        "threads": a.threads,
        "cpu": platform.processor() or platform.machine(),
        "note": "shared 2-core machine: absolute timings are noisy; compare rows within one run",
    }
    if not a.skip_embedding:
        result["embedding"] = bench_embedding()
        print(result["embedding"], flush=True)
    if a.sizes:
        result["search"] = [bench_search(n, rng, c, queries, a.kinds) for n in a.sizes]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = (
        json.loads(out.read_text()) if out.exists() else {}
    )  # a partial run (--skip-embedding / --sizes) keeps the rest
    out.write_text(json.dumps({**old, **result}, indent=1))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
