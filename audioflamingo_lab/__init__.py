__version__ = "0.1.0"

# The short public API: `from audioflamingo_lab import build_model, evaluate, ...`. Hand-written (nbdev only keeps
# `__version__` above up to date). Names load lazily (PEP 562), so `import audioflamingo_lab` stays cheap: torch and
# transformers are imported only when a name that needs them is first used.
API = {
    "FlamingoConfig": "flamingo_config",  # presets as data: FlamingoConfig.from_name("small")
    "build_model": "flamingo",  # config -> Flamingo (tensors in, logits out)
    "load_checkpoint": "checkpoint",  # model.safetensors -> model, strict
    "AudioFlamingoProcessor": "inference",  # text + audio -> a batch of tensors
    "generate_text": "inference",  # a prompt with audio -> an answer
    "build_encoder": "encoders",  # "aisfx", "mel", "clap-htsat", ... -> a window encoder
    "EmbeddingCache": "encoders",  # window embeddings on disk, keyed by file and encoder
    "read_manifest": "manifest",  # a JSONL manifest -> checked items (errors name file and line)
    "ClipIndex": "rag",  # a faiss index over clips, for retrieved in-context examples
    "train": "run",  # a run folder trained by the Lightning Trainer (what `afl train` calls)
    "evaluate": "fewshot",  # few-shot rows with baselines and controls -> FewShotReport
    "FewShotReport": "fewshot_report",  # rows, per-class, curves, plot, to_json/from_json
}
__all__ = ["__version__", *API]


def __getattr__(name):
    if name not in API:
        raise AttributeError(f"module 'audioflamingo_lab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{API[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted([*globals(), *API])
