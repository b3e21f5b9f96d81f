"""Chat latency per turn with and without key/value reuse across turns (tiny and small presets), and KV-cached versus
uncached generation of 128 new tokens (small preset). CPU, fp32, greedy.

    python benchmarks/bench_chat.py --part chat --presets tiny --out benchmarks/results/chat_tiny.json
    python benchmarks/bench_chat.py --part chat --presets small --out benchmarks/results/chat_small.json
    python benchmarks/bench_chat.py --part generate --out benchmarks/results/chat_generation.json

Every answer is forced to `--answer-tokens` tokens (min = max new tokens) so that both modes do the same work; the
untrained cross-attention gates are opened so that the audio path runs as in a trained model. A turn's latency is the
wall time of `ChatSession.ask`. The transcript grows by one question and one answer per turn, so without reuse turn k
re-reads all k-1 earlier turns; with reuse it feeds only its new tokens. The machine is shared: `uptime` is recorded
before and after each part, and one torch thread is used (two threads per process on two busy cores made decoding
~20x slower here: OpenMP threads wait for each other).
"""

import argparse, json, os, subprocess, tempfile, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np, soundfile as sf, torch

QUESTIONS = [
    "what do you hear?",
    "is it loud?",
    "how long is it?",
    "is there speech?",
    "what instrument is playing?",
    "where was this recorded?",
    "is it music?",
    "what happens after?",
    "how many times?",
    "describe the sound.",
]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def build(preset: str):
    from audioflamingo_lab.flamingo import build_model

    torch.manual_seed(0)
    model = build_model(preset).eval()
    with torch.no_grad():
        for _, layer in model.xattn_layers():
            layer.xattn.alpha_attn.fill_(0.5)
            layer.xattn.alpha_ff.fill_(0.5)
    return model


def conversations(model, clip, turns: int, answer_tokens: int) -> dict:
    """The same conversation with and without reuse, turn by turn side by side (so a load change on the shared machine
    hits both modes alike): latency per turn, prompt length, and the tokens the LM actually read per turn."""
    from audioflamingo_lab.chat import ChatSession

    sessions = {
        mode: ChatSession(
            model, clip, max_new_tokens=answer_tokens, min_new_tokens=answer_tokens, reuse_cache=mode == "reuse"
        )
        for mode in ("reuse", "reprefill")
    }
    runs = {mode: dict(latency_s=[], prompt_tokens=[], tokens_read=[], answers=[]) for mode in sessions}
    fed = []
    hook = model.lm.get_input_embeddings().register_forward_hook(lambda m, i, o: fed.append(i[0].shape[1]))
    try:
        for k in range(turns):
            question = QUESTIONS[k % len(QUESTIONS)]
            for mode, session in sessions.items():
                run = runs[mode]
                run["prompt_tokens"].append(len(session.prompt(question).input_ids))
                fed.clear()
                t0 = time.perf_counter()
                run["answers"].append(session.ask(question))
                run["latency_s"].append(round(time.perf_counter() - t0, 4))
                run["tokens_read"].append(sum(fed))
    finally:
        hook.remove()
    return runs


def chat_part(args, clip) -> list[dict]:
    rows = []
    for preset in args.presets.split(","):
        model = build(preset)
        conversations(model, clip, 1, 2)  # warm-up (first-call allocations)
        load_before, t0 = uptime(), time.perf_counter()
        repeats = [conversations(model, clip, args.turns, args.answer_tokens) for _ in range(args.repeats)]
        runs = repeats[0]
        for mode in runs:  # the least-disturbed time of each turn over the repeats
            runs[mode]["latency_s"] = [min(r[mode]["latency_s"][k] for r in repeats) for k in range(args.turns)]
        same = all(r["reuse"]["answers"] == r["reprefill"]["answers"] for r in repeats)
        summary = {}
        for t in [t for t in (1, 5, 10) if t <= args.turns]:
            cell = {m: runs[m]["latency_s"][t - 1] for m in runs}
            cell["speedup"] = round(cell["reprefill"] / cell["reuse"], 2)
            cell["tokens_read"] = {m: runs[m]["tokens_read"][t - 1] for m in runs}
            summary[f"turn_{t}"] = cell
        row = dict(
            preset=preset,
            turns=args.turns,
            answer_tokens=args.answer_tokens,
            repeats=args.repeats,
            same_answers=same,
            summary=summary,
            runs=runs,
            wall_s=round(time.perf_counter() - t0, 1),
            uptime_before=load_before,
            uptime_after=uptime(),
        )
        print(json.dumps({k: row[k] for k in ("preset", "same_answers", "summary", "wall_s")}), flush=True)
        rows.append(row)
        del model
    return rows


def generation_part(args, clip) -> dict:
    "The small preset answering one question about the clip: 128 new tokens with the KV cache and without."
    from audioflamingo_lab.core import Episode, Item
    from audioflamingo_lab.template import render
    from audioflamingo_lab.inference import audio_embeds

    model = build(args.gen_preset)
    query = Episode(Item(id="q", audio="q", prompt="describe the sound at length."))
    ids = torch.tensor([render(query, model.tokenizer, with_answer=False, task_prefix=False).input_ids])
    emb, mask = audio_embeds(model, [clip])
    kw = dict(
        audio_embeds=emb,
        media_mask=mask,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        do_sample=False,
    )
    model.generate(ids, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
    load_before, res, outs = uptime(), {}, {}
    for cached in (True, False):
        t0 = time.perf_counter()
        outs[cached] = model.generate(ids, use_cache=cached, **kw)
        res["cached" if cached else "uncached"] = round(time.perf_counter() - t0, 3)
    return dict(
        preset=args.gen_preset,
        prompt_tokens=ids.shape[1],
        new_tokens=args.new_tokens,
        seconds=res,
        tokens_per_s={k: round(args.new_tokens / v, 2) for k, v in res.items()},
        speedup=round(res["uncached"] / res["cached"], 2),
        same_tokens=bool(torch.equal(outs[True], outs[False])),
        uptime_before=load_before,
        uptime_after=uptime(),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,small", help="presets of the chat part")
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--answer-tokens", type=int, default=16, help="every answer has exactly this many tokens")
    p.add_argument("--repeats", type=int, default=2, help="conversations per preset; each turn's minimum is kept")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens of the cached-vs-uncached generation")
    p.add_argument("--gen-preset", default="small")
    p.add_argument("--part", default="all", choices=["all", "chat", "generate"])
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 on the shared 2-core machine, where 2 threads per process oversubscribe",
    )
    p.add_argument("--out", default="benchmarks/results/chat.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clip = str(Path(tempfile.mkdtemp()) / "clip.wav")
    t = np.arange(16000 * 10) / 16000  # 10 s: 4 windows of 7 s every 1.75 s
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))).astype(np.float32), 16000)
    t0 = time.perf_counter()
    result = dict(
        device="cpu",
        dtype="float32",
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        command="python benchmarks/bench_chat.py " + " ".join(os.sys.argv[1:]),
    )
    if args.part in ("all", "chat"):
        result["chat"] = chat_part(args, clip)
    if args.part in ("all", "generate"):
        result["generation"] = generation_part(args, clip)
        print(json.dumps(result["generation"]), flush=True)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("wrote", args.out, f"in {result['total_s']} s")


if __name__ == "__main__":
    main()
