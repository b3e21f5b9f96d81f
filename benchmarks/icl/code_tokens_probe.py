"""Can the frozen LM bind labels to shots by their audio, if the audio arrives as a token? (no training)

Balanced 5-way 1-shot on the held-out spoken_languages val split, the plain SmolLM2-135M (every gate closed), AF1's
template. The `<SEP>` token before each answer (shots and query) is replaced by a *code token* standing for the audio:
- `none`: the template as is (only the text: chance);
- `oracle`: one word token per true class (what binding could reach if the audio were perfectly identified);
- `kmeans-N`: the k-means cluster (N codes, faiss, fit on a pool's aiSFX clip vectors) of the clip;
- `projection`: the clip vector through a fixed random projection at the norm of a token embedding (continuous).
Controls for the codes: `no-query-audio` (the query's code from a clip of another class) and `shuffled-shot-audio`.
The answer is the option with the highest log-likelihood (no generation, no matcher). `knn` is the 1-shot vote.
"""

import argparse, json, time
import numpy as np, torch, faiss

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="benchmarks/results/code_tokens_probe.json")
ap.add_argument("--data", default="/work/data")
ap.add_argument("--draws", type=int, default=3)
ap.add_argument("--codes", default="16")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.icl import BalancedShots, make_episodes
from audioflamingo_lab.rag import ClipIndex
from audioflamingo_lab.template import render, token_ids

net = build_model("small", encoder="aisfx", encoder_kwargs=dict(window_s=2.5, hop_s=1.25), max_windows=4)
net.eval()
tok, lm = net.tokenizer, net.lm
sep_id = token_ids(tok)["sep"]
cache = EmbeddingCache(f"{a.data}/cache", net.encoder, max_windows=4)
held_out = read_manifest(f"{a.data}/spoken_languages/manifest.jsonl")
pool = [it for it in held_out if it.split == "train"]
queries = [it for it in held_out if it.split == "val"]
training_pool = read_manifest(f"{a.data}/many_classes/manifest.jsonl", split="train")
vectors = {}
for items in (pool + queries, training_pool):
    index = ClipIndex.build(items, net.encoder, cache_root=cache)
    vectors.update({it.id: v for it, v in zip(items, index.query_vectors(items))})
E = lm.get_input_embeddings().weight.detach()
code_words = np.random.default_rng(0).choice(np.arange(5000, 20000), 256, replace=False)  # ordinary word tokens
classes = sorted({it.answer for it in pool})


def kmeans_codes(n: int, fit_on: list) -> dict:
    x = np.stack([vectors[it.id] for it in fit_on]).astype("float32")
    km = faiss.Kmeans(x.shape[1], n, niter=25, seed=0, spherical=True)
    km.train(x)
    everyone = pool + queries
    _, assign = km.index.search(np.stack([vectors[it.id] for it in everyone]).astype("float32"), 1)
    return {it.id: E[code_words[int(c)]] for it, c in zip(everyone, assign[:, 0])}


projection = torch.randn(len(next(iter(vectors.values()))), E.shape[1], generator=torch.Generator().manual_seed(0))
token_norm = E.norm(dim=1).median()
VARIANTS = {
    "none": None,
    "oracle": {it.id: E[code_words[classes.index(it.answer)]] for it in pool + queries},
    "projection": {
        it.id: (v := torch.tensor(vectors[it.id]) @ projection) / v.norm() * token_norm for it in pool + queries
    },
}
for n in map(int, a.codes.split(",")):
    VARIANTS[f"kmeans-{n}"] = kmeans_codes(n, pool)  # the retrieval pool (labels unused)
    VARIANTS[f"kmeans-{n}-training-pool"] = kmeans_codes(n, training_pool)


@torch.no_grad()
def answer(episode, codes, query_clip=None, shot_clips=None) -> str:
    "The option with the highest log-likelihood when each <SEP> carries its clip's code."
    prompt = torch.tensor(render(episode, tok, max_tokens=384, with_answer=False).input_ids)
    clips = [*(shot_clips or episode.shots), query_clip or episode.query]
    options = sorted(episode.query.options)
    answers = [tok(option, add_special_tokens=False).input_ids for option in options]
    width = len(prompt) + max(map(len, answers))
    rows = torch.stack(
        [torch.cat([prompt, torch.tensor(ids + [0] * (width - len(prompt) - len(ids)))]) for ids in answers]
    )
    emb = E[rows].clone()  # right padding: causal attention never lets the answer see it
    if codes is not None:
        for pos, clip in zip((prompt == sep_id).nonzero().flatten(), clips):
            emb[:, pos] = codes[clip.id]
    logp = lm(inputs_embeds=emb).logits[:, len(prompt) - 1 : -1].float().log_softmax(-1)
    scores = [float(logp[i, : len(ids)].gather(1, torch.tensor(ids)[:, None]).sum()) for i, ids in enumerate(answers)]
    return options[int(np.argmax(scores))]


def other_class_clip(episode, rng):
    return rng.choice([it for it in pool if it.answer != episode.query.answer])


results, t0 = {"args": vars(a), "n_queries": len(queries), "rows": {}}, time.time()
for draw in range(a.draws):
    episodes = make_episodes(queries, BalancedShots(pool, ways=5, seed=draw), 1)
    rng = np.random.default_rng(draw)
    knn = [max(e.shots, key=lambda s: float(vectors[s.id] @ vectors[e.query.id])).answer for e in episodes]
    results["rows"].setdefault("knn", []).append(float(np.mean([p == e.query.answer for p, e in zip(knn, episodes)])))
    for name, codes in VARIANTS.items():
        conditions = {name: {}}
        if name.startswith("kmeans"):
            conditions[f"{name} no-query-audio"] = {"query": True}
            conditions[f"{name} shuffled-shot-audio"] = {"shuffle": True}
        for row, how in conditions.items():
            hits = []
            for e in episodes:
                query_clip = other_class_clip(e, rng) if how.get("query") else None
                shot_clips = list(rng.permutation(e.shots)) if how.get("shuffle") else None
                hits.append(answer(e, codes, query_clip, shot_clips) == e.query.answer)
            results["rows"].setdefault(row, []).append(float(np.mean(hits)))
            print(f"draw {draw} {row}: {np.mean(hits):.2f}", flush=True)
results["summary"] = {
    k: dict(mean=float(np.mean(v)), spread=float(np.std(v)), per_draw=v) for k, v in results["rows"].items()
}
results["seconds"] = round(time.time() - t0)
json.dump(results, open(a.out, "w"), indent=1)
print(json.dumps(results["summary"], indent=1))
