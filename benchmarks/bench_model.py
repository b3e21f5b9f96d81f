"""Model-core benchmark: cross-attention (linear in media) versus audio-as-prefix-tokens (quadratic), 16 vs 64 windows
per audio at the af1 shape, and KV-cached versus uncached generation on the tiny preset.

    python benchmarks/bench_model.py                         # CPU: af1 width, 2 decoder layers, batch 1 (< 2 min)
    python benchmarks/bench_model.py --device cuda --dtype bf16 --layers 24 --batch 4   # full af1 on one GPU

The step is AF1's pretraining step: the LM (and its embeddings) frozen, the xattn blocks and audio layers trained.
FLOPs per training step (stated, not measured): (4 * N_lm + 6 * N_xattn) * B * T_lm  +  6 * N_audio * B * A * n
  + 12 * L_x * B * T * (A*n) * h*d_h   (cross-attention scores and mix)
  [+ 12 * L * B * T_lm^2 * d for prefix self-attn]
where T_lm = text tokens (xattn) or text + A*n prefix tokens (prefix). Frozen weights count too (backward still
computes their input gradients). MFU = FLOPs / step_time / 790e12 (the lead's bf16 peak figure).
"""

import argparse, json, os, subprocess, sys, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from torch import nn

PEAK = 790e12


def build(args, windows):
    from audioflamingo_lab.flamingo import build_model
    from audioflamingo_lab.flamingo_config import FlamingoConfig

    dtype = {"bf16": "bfloat16", "fp32": "float32"}[args.dtype]
    cfg = FlamingoConfig.from_name("af1", encoder=None, max_windows=windows, dtype=dtype)
    cfg.lm_config = {**cfg.lm_config, "num_hidden_layers": args.layers}
    return build_model(cfg).to(args.device)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def peak_mb(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (peak RSS of this process)


def run_case(args, mode, windows):
    "One training step (forward + backward), timed after a warm-up; runs in its own process on CPU for a clean peak."
    torch.manual_seed(0)
    model = build(args, windows).train()
    xattn_ids = {id(p) for _, l in model.xattn_layers() for p in l.xattn.parameters()}
    for p in model.lm.parameters():
        p.requires_grad_(id(p) in xattn_ids)  # AF1 pretraining: the LM is frozen
    B, A, T, dev = args.batch, args.audios, args.tokens, args.device
    dtype = next(model.lm.parameters()).dtype
    ids = torch.randint(10, 900, (B, T), device=dev)
    ids[:, torch.linspace(1, T // 2, A).long()] = model.token_ids["audio"]
    emb = torch.randn(B, A, windows, 1024, device=dev, dtype=dtype)
    mask = torch.ones(B, A, windows, dtype=torch.bool, device=dev)
    hidden = model.lm.config.hidden_size
    if mode == "prefix":  # same LM, no xattn blocks: audio windows become A*n input tokens in front of the text
        for i, layer in model.xattn_layers():
            model.lm.get_submodule(model.layers_path)[i] = layer.decoder_layer
        to_lm = nn.Linear(model.config.media_dim, hidden).to(dev, dtype)
    before = peak_mb(dev)

    def step():
        if mode == "xattn":
            out = model(ids, labels=ids, audio_embeds=emb, media_mask=mask)
        else:
            media, _ = model.encode_media(audio_embeds=emb, media_mask=mask)
            x = torch.cat([to_lm(media), model.lm.get_input_embeddings()(ids)], 1)
            labels = torch.cat([torch.full((B, A * windows), -100, device=dev), ids], 1)
            out = model.lm(inputs_embeds=x, labels=labels)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()
    sync(dev)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        sync(dev)
        times.append(time.perf_counter() - t0)
    n_lm = sum(p.numel() for p in model.lm.parameters()) - sum(
        p.numel() for _, l in model.xattn_layers() for p in l.xattn.parameters()
    )
    n_x = sum(p.numel() for _, l in model.xattn_layers() for p in l.xattn.parameters())
    n_audio = sum(p.numel() for p in model.audio_layers.parameters())
    M, c = A * windows, model.config
    t_lm = T if mode == "xattn" else T + M
    flops = (4 * n_lm + 6 * n_x) * B * t_lm + 6 * n_audio * B * M
    if mode == "xattn":
        flops += 12 * len(model.xattn_layers()) * B * T * M * c.xattn_heads * c.xattn_dim_head
    flops += 12 * args.layers * B * t_lm**2 * hidden
    sec = min(times)
    return dict(
        mode=mode,
        windows_per_audio=windows,
        media_slots=M,
        lm_tokens=t_lm,
        step_s=round(sec, 4),
        peak_mb=round(peak_mb(dev), 1),
        peak_increase_mb=round(peak_mb(dev) - (0 if dev == "cuda" else before), 1),
        flops_per_step=flops,
        tflops_s=round(flops / sec / 1e12, 3),
        mfu=round(flops / sec / PEAK, 4) if dev == "cuda" else None,
    )


def generation(args):
    from audioflamingo_lab.flamingo import build_model

    torch.manual_seed(0)
    model = build_model("tiny", encoder=None).to(args.device).eval()
    with torch.no_grad():
        for _, l in model.xattn_layers():
            l.xattn.alpha_attn.fill_(0.5)
    ids = torch.randint(10, 900, (1, 64), device=args.device)
    ids[0, [5, 30]] = model.token_ids["audio"]
    emb = torch.randn(1, 2, 16, model.config.encoder_dim, device=args.device)
    res = {}
    for cached in (True, False):
        kw = dict(
            audio_embeds=emb, max_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None, use_cache=cached
        )
        model.generate(ids, **{**kw, "max_new_tokens": 2})
        sync(args.device)
        t0 = time.perf_counter()
        out = model.generate(ids, **kw)
        sync(args.device)
        res["cached" if cached else "uncached"] = round(args.new_tokens / (time.perf_counter() - t0), 1)
    return dict(preset="tiny", prompt_tokens=64, audios=2, windows=16, new_tokens=args.new_tokens, tokens_per_s=res)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--layers", type=int, default=2, help="decoder layers of the af1-shaped LM (24 = the paper)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--audios", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results/model.json")
    args = p.parse_args()
    if args.case:  # child process: one case, JSON on stdout
        mode, windows = args.case.split(":")
        print(json.dumps(run_case(args, mode, int(windows))))
        return
    cases = []
    for mode in ("xattn", "prefix"):
        for windows in (16, 64):
            if args.device == "cuda":
                r = run_case(args, mode, windows)
                torch.cuda.empty_cache()
            else:
                cmd = [sys.executable, __file__, "--case", f"{mode}:{windows}"] + [a for a in sys.argv[1:]]
                r = json.loads(
                    subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                )
            print(r, flush=True)
            cases.append(r)
    gen = generation(args)
    print(gen)
    result = dict(
        device=args.device,
        gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
        dtype=args.dtype,
        threads=torch.get_num_threads(),
        load_avg=os.getloadavg()[0],
        what=f"af1 shape (d 2048, OPT, xattn every layer, 3 audio layers d 1024) with {args.layers} decoder layers; "
        f"batch {args.batch}, {args.audios} audios, {args.tokens} text tokens; one fwd+bwd step (min of "
        f"{args.repeats}); peak = {'CUDA max allocated' if args.device == 'cuda' else 'process peak RSS'}",
        flop_formula="(4*N_lm_frozen+6*N_xattn)*B*T_lm + 6*N_audio*B*A*n + 12*L_x*B*T*A*n*h*d_h + 12*L*B*T_lm^2*d",
        peak_flops=PEAK,
        cases=cases,
        generation=gen,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
