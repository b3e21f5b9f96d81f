"""What the val sweeps of the frozen LM share: the accuracy of a model on episodes, read as the demo reads them."""

from audioflamingo_lab.audio_codes import pool_vectors
from audioflamingo_lab.demo import DemoConfig, model_overrides
from audioflamingo_lab.encoders import EmbeddingCache
from audioflamingo_lab.evaluation import score_predictions
from audioflamingo_lab.fewshot import generate_answers
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.manifest import read_manifest


def frozen_setup(data, cache_dir, split="val"):
    """(manifest, pool, queries, net, cache, pool vectors): the held-out set's train pool and `split` queries, the
    demo's model untrained (the frozen LM), its clip cache and the pool's unit clip vectors."""
    manifest = f"{data}/spoken_languages/manifest.jsonl"
    pool, queries = read_manifest(manifest, split="train"), read_manifest(manifest, split=split)
    net = build_model("small", **model_overrides(DemoConfig())).eval()
    cache = EmbeddingCache(cache_dir, net.encoder, max_windows=net.config.max_windows)
    return manifest, pool, queries, net, cache, pool_vectors(net, pool, cache)  # as the demo's fit embeds them


def options_answers(net, episodes, cache) -> list[str]:
    "Greedy answers in batches of 8 (prompts up to 384 tokens), options readout: as the demo reads them."
    answers, _ = generate_answers(
        net, episodes, cache, None, 8, 384, readout="options", max_new_tokens=12, do_sample=False, num_beams=1
    )
    return answers


def options_accuracy(net, episodes, cache) -> float:
    "`options_answers` scored by exact label."
    return round(
        score_predictions("accuracy", options_answers(net, episodes, cache), [e.query for e in episodes]).score, 3
    )
