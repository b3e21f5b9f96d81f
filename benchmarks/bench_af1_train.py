"""Training throughput at the paper's size: the `af1` preset (OPT-IML-MAX-1.3B shape + 24 gated xattn blocks + 3 audio
layers, 2.2 B parameters), batch 16 x 512 text tokens, 8 audios per sample, one full optimizer step (forward, backward,
grad-norm clip 1.0, fused AdamW) in bf16 autocast.

    python benchmarks/bench_af1_train.py --device cuda      # the H100/H200 run (all cases)
    python benchmarks/bench_af1_train.py --device cpu --layers 1 --batch 1 --tokens 64 --cases eager:pretrain:16
                                                            # the line above: a smoke test

Cases are `variant:mode:windows` with variant eager | compiled (torch.compile of every decoder layer and xattn block)
| prefix (no xattn: the windows become prefix tokens of the LM, AF1's alternative), mode pretrain (LM frozen; its
weights kept in bf16 since they never update) | sft (everything trains, fp32 master weights), windows per audio 16 | 64.

Reported per case: text tokens/s, step time (median of the timed steps, CUDA events), peak memory, and two MFUs against
790 TFLOP/s: `mfu_6N` = 6 x N_params x tokens/s (the convention of the 23.7k / 30.6k tokens/s targets: 6 x 2.2 B per
token) and `mfu_model` = the FLOPs the step really does (frozen weights: 4 N, trained: 6 N, plus attention scores).
"""

import argparse, json, os, statistics, sys, time, traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from torch import nn

PEAK = 790e12


def build(args, windows, mode, variant):
    from audioflamingo_lab.flamingo import build_model
    from audioflamingo_lab.flamingo_config import FlamingoConfig
    from audioflamingo_lab.training import configure_trainable, optimizer_groups

    if (
        args.shape == "small"
    ):  # the small preset's shape (SmolLM2-135M dims, random weights: no hub, no weight package needed)
        cfg = FlamingoConfig.from_name(
            "small",
            lm_name=None,
            encoder=None,
            encoder_dim=512,
            max_windows=windows,
            lm_config=dict(
                model_type="llama",
                vocab_size=49152,
                hidden_size=576,
                num_hidden_layers=30,
                num_attention_heads=9,
                num_key_value_heads=3,
                intermediate_size=1536,
                max_position_embeddings=8192,
                tie_word_embeddings=True,
            ),
        )
    else:
        cfg = FlamingoConfig.from_name("af1", encoder=None, max_windows=windows)
    if args.layers:
        cfg.lm_config = {**cfg.lm_config, "num_hidden_layers": args.layers}
    try:  # initialise straight on the device (seconds instead of a minute of CPU init)
        with torch.device(args.device):
            model = build_model(cfg)
    except Exception as e:
        print(f"building on {args.device} failed ({type(e).__name__}: {e}); building on the CPU", flush=True)
        model = build_model(cfg).to(args.device)
    model.train()
    if variant == "prefix":  # same LM without xattn: the audio becomes A*n input tokens in front of the text
        for i, layer in model.xattn_layers():
            model.lm.get_submodule(model.layers_path)[i] = layer.decoder_layer
        model.to_lm = nn.Linear(cfg.media_dim, model.lm.config.hidden_size, device=args.device)
    configure_trainable(model, mode)
    if (
        mode == "pretrain" and args.device == "cuda"
    ):  # frozen weights never update: keep them in bf16 (no per-step cast)
        for p in model.parameters():
            if not p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    if variant == "compiled":
        layers = model.lm.get_submodule(model.layers_path)
        for i, layer in enumerate(layers):
            inner = getattr(layer, "decoder_layer", layer)
            inner.compile()
            if hasattr(layer, "xattn"):
                layer.xattn.compile()
    params = [p for g in optimizer_groups(model, 0.1) for p in g["params"]]
    opt = torch.optim.AdamW(optimizer_groups(model, 0.1), lr=1e-4, fused=args.device == "cuda")
    return model, params, opt


def batch(args, model, windows):
    B, A, T, dev = args.batch, args.audios, args.tokens, args.device
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(10, 40000, (B, T), generator=g).to(dev)
    ids[:, (torch.arange(A) * (T // A) + 1).to(dev)] = model.token_ids[
        "audio"
    ]  # interleaved: each shot opens with <audio>
    emb = torch.randn(B, A, windows, model.config.encoder_dim, generator=g).to(dev)
    mask = torch.ones(B, A, windows, dtype=torch.bool, device=dev)
    return ids, emb, mask


def flops_per_step(args, model, windows, variant, mode):
    "The step's real FLOPs: 4 N for frozen weights (input grads only), 6 N for trained ones, plus attention scores."
    B, A, T = args.batch, args.audios, args.tokens
    M = A * windows
    t_lm = T + (M if variant == "prefix" else 0)
    xattn_ids = {id(p) for _, l in model.xattn_layers() for p in l.xattn.parameters()}
    audio_ids = {id(p) for p in model.audio_layers.parameters()}
    f = 0
    for p in model.parameters():
        if id(p) in audio_ids:
            f += (6 if p.requires_grad else 4) * p.numel() * B * M
        elif id(p) == id(model.lm.get_input_embeddings().weight):
            f += 6 * p.numel() * B * t_lm  # the tied head's matmul
        elif p.ndim >= 2:
            f += (6 if p.requires_grad else 4) * p.numel() * B * (T if id(p) in xattn_ids else t_lm)
    d, L = model.lm.config.hidden_size, model.lm.config.num_hidden_layers
    f += 6 * L * B * t_lm**2 * d  # causal self-attention scores + mix (half of the full square), fwd + bwd
    if variant != "prefix":
        f += 12 * len(model.xattn_layers()) * B * T * M * model.config.xattn_heads * model.config.xattn_dim_head
    return f


def run_case(args, variant, mode, windows):
    torch.manual_seed(0)
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t_build = time.perf_counter()
    model, params, opt = build(args, windows, mode, variant)
    ids, emb, mask = batch(args, model, windows)
    B, A = args.batch, args.audios
    dev_type = "cuda" if args.device == "cuda" else "cpu"

    def step():
        with torch.autocast(dev_type, dtype=torch.bfloat16):
            if variant == "prefix":
                media, _ = model.encode_media(audio_embeds=emb, media_mask=mask)
                x = torch.cat([model.to_lm(media), model.lm.get_input_embeddings()(ids)], 1)
                labels = torch.cat([torch.full((B, A * windows), -100, device=ids.device), ids], 1)
                loss = model.lm(inputs_embeds=x, labels=labels).loss
            else:
                loss = model(ids, labels=ids, audio_embeds=emb, media_mask=mask).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=args.device == "cuda")
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        if args.device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            loss = step()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            t = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in params)
    tok_s = B * args.tokens / sec
    f = flops_per_step(args, model, windows, variant, mode)
    res = dict(
        case=f"{variant}:{mode}:{windows}",
        variant=variant,
        mode=mode,
        windows_per_audio=windows,
        media_slots=A * windows,
        params=n_params,
        trainable=n_train,
        step_s=round(sec, 4),
        step_s_min=round(min(times), 4),
        text_tokens_per_s=round(tok_s),
        mfu_6N=round(6 * n_params * tok_s / PEAK, 4),
        mfu_model=round(f / sec / PEAK, 4),
        flops_per_step=f,
        peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device == "cuda" else None,
        build_s=round(t0 - t_build, 1),
        warmup_s=round(warm_s, 1),
        loss=round(float(loss), 4),
    )
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", type=int, default=None, help="decoder layers (default: the preset's)")
    p.add_argument("--shape", default="af1", choices=["af1", "small"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--audios", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--cases",
        default="eager:pretrain:16,eager:pretrain:64,eager:sft:16,prefix:pretrain:16,prefix:pretrain:64,"
        "compiled:pretrain:16,compiled:pretrain:64,compiled:sft:16,compiled:sft:64",
    )
    p.add_argument("--out", default="benchmarks/results/af1_train.json")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    meta = dict(
        shape=args.shape,
        device=args.device,
        gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
        torch=torch.__version__,
        layers=args.layers,
        batch=args.batch,
        text_tokens=args.tokens,
        audios=args.audios,
        steps=args.steps,
        warmup=args.warmup,
        peak_flops=PEAK,
        what=__doc__.split("\n\n")[0],
    )
    results = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for case in args.cases.split(","):
        variant, mode, windows = case.split(":")
        try:
            r = run_case(args, variant, mode, int(windows))
        except Exception as e:
            traceback.print_exc()
            r = dict(case=case, error=f"{type(e).__name__}: {e}"[:500])
        results.append(r)
        print(json.dumps(r), flush=True)
        out.write_text(json.dumps({**meta, "cases": results}, indent=1))  # partial results survive a timeout
    print(f"{'case':<24}{'tok/s':>9}{'step s':>9}{'mfu_6N':>8}{'mfu':>7}{'GiB':>7}")
    for r in results:
        if "error" in r:
            print(f"{r['case']:<24} ERROR {r['error'][:80]}")
            continue
        print(
            f"{r['case']:<24}{r['text_tokens_per_s']:>9}{r['step_s']:>9}{r['mfu_6N']:>8}{r['mfu_model']:>7}{str(r['peak_gib']):>7}"
        )


if __name__ == "__main__":
    main()
