"Quick training experiment: EpisodeMix on many_classes, then balanced/rag eval on spoken-languages val (+ knn)."

import argparse, json, random, sys, time
import numpy as np, torch
import lightning as L

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--steps", type=int, default=120)
ap.add_argument("--media", default="immediate")
ap.add_argument("--mode", default="pretrain")
ap.add_argument("--lora_from", type=int, default=20)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--xattn_from", type=int, default=22)
ap.add_argument("--xattn_every", type=int, default=2)
ap.add_argument("--xattn_until", type=int, default=None)
ap.add_argument("--evals", default="balanced5w1,rag4")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--plain", type=float, default=0.25)
ap.add_argument("--balanced", type=float, default=0.5)
ap.add_argument("--rag", type=float, default=0.25)
ap.add_argument("--relabel", type=float, default=0.9)
ap.add_argument("--eval_n", type=int, default=40)
ap.add_argument("--kmax", type=int, default=3)
ap.add_argument("--gate_init", type=float, default=0.0)
ap.add_argument("--gate_lr", type=float, default=None)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
from audioflamingo_lab.core import auto_precision
from audioflamingo_lab.core import seed_everything
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.training import FlamingoModule
from audioflamingo_lab.datamodule import AudioFlamingoDataModule
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.icl import EpisodeMix, EpisodeKind, BalancedShots, RetrievedShots, RandomShots, make_episodes
from audioflamingo_lab.rag import ClipIndex
from audioflamingo_lab.evaluation import match_answer
from audioflamingo_lab.fewshot import generate_answers as gen

seed_everything(a.seed)
MC, SL = "/work/data/many_classes/manifest.jsonl", "/work/data/spoken_languages/manifest.jsonl"
net = build_model(
    "small",
    encoder="aisfx",
    encoder_kwargs=dict(window_s=2.5, hop_s=1.25),
    max_windows=4,
    xattn_every=a.xattn_every,
    xattn_from=a.xattn_from,
    max_tokens=384,
    max_audios=16,
    media_attention=a.media,
    attn_gate_init=a.gate_init,
)
if a.xattn_until is not None:  # keep only the blocks below layer xattn_until (below the induction heads)
    layers = net.lm.get_submodule(net.layers_path)
    for i, layer in net.xattn_layers():
        if i >= a.xattn_until:
            layers[i] = layer.decoder_layer
    print("xattn blocks at", [i for i, _ in net.xattn_layers()], flush=True)
cache = EmbeddingCache("/work/data/cache", net.encoder, max_windows=4)
pool = read_manifest(MC, split="train")
index = ClipIndex.build(pool, net.encoder, cache_root=cache)
kinds = [
    EpisodeKind(None, a.plain),
    EpisodeKind(BalancedShots(pool, ways=(2, 5), from_options=False, seed=a.seed), a.balanced, (1, a.kmax), a.relabel),
    EpisodeKind(RetrievedShots(index, seed=a.seed), a.rag, (1, 4), a.relabel),
]
mix = EpisodeMix(kinds, names=sorted({it.answer for it in pool}))
lora = dict(r=8, alpha=16, from_layer=a.lora_from) if a.mode == "lora" else None
module = FlamingoModule(
    model=net,
    mode=a.mode,
    train_new_tokens=False,
    lr=a.lr,
    weight_decay=0.0,
    warmup_steps=10,
    max_steps=a.steps,
    lora=lora,
    gate_lr=a.gate_lr,
)


class Progress(L.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step % 10 == 0:
            print(
                "step",
                trainer.global_step,
                "t",
                round(time.time() - t0),
                "loss",
                float(outputs["loss"]),
                [round(g["attn"], 3) for g in net.gate_values()],
                flush=True,
            )


dm = AudioFlamingoDataModule(
    train={MC: 1.0},
    tokenizer=net.tokenizer,
    cache=cache,
    batch_size=a.batch,
    seed=a.seed,
    selector=mix,
    max_tokens=384,
    task_prefix=1.0,
    max_windows=4,
)
t0 = time.time()
tr = L.Trainer(
    max_steps=a.steps,
    precision=auto_precision(),  # bf16 only where the CPU has it natively (emulated bf16 is ~37x slower)
    logger=False,
    enable_checkpointing=False,
    num_sanity_val_steps=0,
    limit_val_batches=0,
    gradient_clip_val=1.0,
    enable_progress_bar=False,
    log_every_n_steps=10,
    callbacks=[Progress()],
)
tr.fit(module, dm)
train_s = time.time() - t0
print("train s", train_s, "gates", net.gate_values(), flush=True)
net.eval()
# eval: balanced 5-way 1-shot on val languages + rag-4, strict-ish (exact) matching; knn from embeddings
items = read_manifest(SL)
lpool = [it for it in items if it.split == "train"]
queries = [it for it in items if it.split == "val"][: a.eval_n]
lindex = ClipIndex.build(lpool, net.encoder, cache_root=cache)
res = {"args": vars(a), "train_s": train_s}


def vec(its):
    return lindex.query_vectors(its)


EVALS = {
    "balanced5w1": (lambda: BalancedShots(lpool, ways=5, seed=0), 1),
    "rag1": (lambda: RetrievedShots(lindex, seed=0), 1),
    "rag4": (lambda: RetrievedShots(lindex, seed=0), 4),
    "rag8": (lambda: RetrievedShots(lindex, seed=0), 8),
}
for name in a.evals.split(","):
    make_selector, k = EVALS[name]
    sel = make_selector()
    eps = make_episodes(queries, sel, k)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto_precision() == "bf16-mixed"):
        ans, _ = gen(
            net, eps, cache, net.encoder, batch_size=8, max_tokens=384, max_new_tokens=8, do_sample=False, num_beams=1
        )
    acc = float(np.mean([match_answer(p, e.query.answer) for p, e in zip(ans, eps)]))
    knn = None
    if k:
        hits = []
        for e in eps:
            v = vec([e.query] + e.shots)
            sims = v[1:] @ v[0]
            votes = {}
            for s, sim in zip(e.shots, sims):
                votes.setdefault(s.answer, []).append(sim)
            best = max(votes, key=lambda c: (len(votes[c]), max(votes[c])))
            hits.append(best == e.query.answer)
        knn = float(np.mean(hits))
    res[name] = {"acc": acc, "knn": knn, "examples": list(zip(ans[:6], [e.query.answer for e in eps[:6]]))}
    print(name, res[name], flush=True)
json.dump(res, open(a.out, "w"), indent=1)
