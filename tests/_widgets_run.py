"The tiny trained run both widget test files look at, built once per test process."

import functools
from pathlib import Path


@functools.cache
def tiny_run():
    from audioflamingo_lab.core import scratch_dir
    from audioflamingo_lab.widget_runs import tiny_trained_run

    return tiny_trained_run(scratch_dir("afl-widgets-test-"), steps=6, save_every=2, shots=2)  # removed at exit


@functools.cache
def eval_report() -> Path:
    "A real few-shot report of the tiny model (3 val clips, 0 or 1 shot, random and rag)."
    from audioflamingo_lab.fewshot import evaluate

    run = tiny_run()
    evaluate(
        run.model,
        run.items,
        shots=(0, 1),
        select=("random", "rag"),
        out=run.folder / "eval",
        index=run.index,
        cache=run.cache,
        limit=3,
        max_new_tokens=2,
        split="val",
        task="classification",
    )
    return run.folder / "eval" / "report.json"
