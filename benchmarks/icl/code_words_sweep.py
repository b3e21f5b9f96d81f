"""Val: balanced 5-way 1-shot accuracy (model only, 3 shot draws) for kinds of code token x codebook sizes.

The frozen SmolLM2 with audio codes (06d), codebook fitted on the held-out retrieval pool. Usage:
    python benchmarks/icl/code_words_sweep.py pieces,common-words,rare-words,capital-words 4,8,16 OUT.json
Record: benchmarks/results/audio_codes/val_sweep.json.
"""

import json, sys, time
import numpy as np, torch

torch.set_num_threads(2)
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.audio_codes import AudioCodebook, fit_codebook, code_words
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.manifest import read_manifest
from audioflamingo_lab.icl import BalancedShots, make_episodes
from audioflamingo_lab.fewshot import generate_answers
from audioflamingo_lab.evaluation import score_predictions


def _is_word(token) -> bool:
    "A byte-level BPE token for a whole lower-case word of 4+ letters ('Ġword')."
    return bool(token) and token[0] == "Ġ" and len(token) >= 5 and token[1:].isalpha() and token[1:].islower()


# the demo's model shape (the same as afl demo builds), with the codes asked for
shape = {**model_overrides(DemoConfig()), "audio_codes": 16, "code_gate_init": 4.0}
net = build_model("small", **shape).eval()
tok = net.tokenizer
V = net.lm.get_input_embeddings().num_embeddings
toks = tok.convert_ids_to_tokens(list(range(V)))
cache = EmbeddingCache("/work/data/cache", net.encoder, max_windows=4)
H = "/work/data/spoken_languages/manifest.jsonl"
pool, queries = read_manifest(H, split="train"), read_manifest(H, split="val")


def pick(cands, n):
    return torch.from_numpy(np.random.default_rng(0).choice(np.array(cands), n, replace=False))


lo, mid, hi = V // 10, 2 * V // 5, int(V * 0.9)
WORDS = {
    "pieces": lambda n: code_words(n, V),
    "common-words": lambda n: pick([i for i in range(lo, mid) if _is_word(toks[i])], n),
    "rare-words": lambda n: pick([i for i in range(mid, hi) if _is_word(toks[i])], n),
    "capital-words": lambda n: pick(
        [
            i
            for i in range(lo, hi)
            if toks[i][:1] == "Ġ"
            and toks[i][1:].isalpha()
            and toks[i][1].isupper()
            and toks[i][2:].islower()
            and len(toks[i]) >= 5
        ],
        n,
    ),
}
out = {}
for n in map(int, sys.argv[2].split(",")):
    net.codebook = AudioCodebook(n, net.config.encoder_dim, V, 4.0)
    fit_codebook(net, pool, cache)
    for name in sys.argv[1].split(","):
        net.codebook.words = WORDS[name](n)
        accs = []
        for seed in (0, 1, 2):
            eps = make_episodes(queries, BalancedShots(pool, ways=5, seed=seed), 1)
            ans, _ = generate_answers(net, eps, cache, None, 8, 384, max_new_tokens=12, do_sample=False, num_beams=1)
            accs.append(score_predictions("accuracy", ans, [e.query for e in eps]).score)
        out[f"{name}-{n}"] = (
            float(np.mean(accs)),
            float(np.std(accs)),
            accs,
            tok.convert_ids_to_tokens(net.codebook.words[:6].tolist()),
        )
        print(f"{name}-{n}", out[f"{name}-{n}"], flush=True)
json.dump(out, open(sys.argv[3], "w"), indent=1)
