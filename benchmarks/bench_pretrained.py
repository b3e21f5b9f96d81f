"""Throughput of the pretrained window encoders and the small preset's pretrain step.

    .venv/bin/python benchmarks/bench_pretrained.py [--clips 4] [--seconds 10] [--steps 3] [--batch 2] \\
        [--device cpu|cuda]

Writes benchmarks/results/pretrained.json. On CUDA it also reports the MFU of the training step
(model FLOPs from 6 x trainable-and-frozen forward params x tokens is not exact for a frozen LM, so we use
2 x all params x tokens for the forward + 4 x trainable params x tokens for the backward, against the GPU's bf16 peak).
"""

import argparse, json, os, time
from pathlib import Path
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from audioflamingo_lab import pretrained as pre
from audioflamingo_lab.aisfx_encoder import AisfxEncoder
from audioflamingo_lab.whisper_tiny import WhisperTinyEncoder
from audioflamingo_lab.audio import sliding_windows

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_encoder(enc, clips, seconds, device, repeats=2):
    g = torch.Generator().manual_seed(0)
    waves = [torch.randn(int(seconds * enc.sample_rate), generator=g) * 0.1 for _ in range(clips)]
    windows = torch.stack(
        [sliding_windows(w, enc.sample_rate, enc.window_s, enc.hop_s, max_windows=None)[0] for w in waves]
    )
    enc = enc.to(device).eval()
    windows = windows.to(device)
    with torch.no_grad():
        enc(windows[:1])
        sync(device)  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            enc(windows)
        sync(device)
        dt = (time.perf_counter() - t) / repeats
    return {
        "clips_per_s": clips / dt,
        "windows_per_clip": windows.shape[1],
        "clip_seconds": seconds,
        "clips": clips,
        "seconds_per_batch": dt,
    }


def bench_small_step(batch, steps, device, tokens=128):
    from audioflamingo_lab.flamingo import build_model
    from audioflamingo_lab.training import configure_trainable

    model = build_model("small", encoder=None).to(device).train()
    configure_trainable(model, "pretrain")  # LM frozen; audio layers + xattn train
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    audio_id = model.tokenizer.convert_tokens_to_ids("<audio>")
    ids = torch.randint(100, 40000, (batch, tokens))
    ids[:, 0] = audio_id
    emb = torch.randn(batch, 1, 16, model.config.encoder_dim)
    mask = torch.ones(batch, 1, 16, dtype=torch.bool)
    ids, emb, mask = ids.to(device), emb.to(device), mask.to(device)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda")
        else torch.autocast("cpu", enabled=False)
    )

    def step():
        with amp:
            loss = model(ids, torch.ones_like(ids), labels=ids, audio_embeds=emb, media_mask=mask).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = (time.perf_counter() - t) / steps
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in trainable)
    flops = (2 * n_all + 4 * n_train) * batch * tokens
    out = {
        "batch": batch,
        "tokens": tokens,
        "step_s": dt,
        "params_total": n_all,
        "params_trainable": n_train,
        "tokens_per_s": batch * tokens / dt,
    }
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        out.update(gpu=name, achieved_tflops=flops / dt / 1e12, mfu=(flops / dt / 1e12 / peak) if peak else None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pretrained.json"))
    a = ap.parse_args()
    res = {"device": a.device, "torch_threads": torch.get_num_threads(), "encoders": {}}
    for name, cls in [("aisfx", AisfxEncoder), ("whisper-tiny", WhisperTinyEncoder)]:
        if pre.have_weights(name):
            res["encoders"][name] = bench_encoder(cls(), a.clips, a.seconds, a.device)
            print(name, res["encoders"][name])
    try:
        if pre.have_weights("smollm2"):
            res["small_pretrain_step"] = bench_small_step(a.batch, a.steps, a.device)
            print("small step", res["small_pretrain_step"])
    except ImportError as e:
        res["small_pretrain_step"] = f"skipped: {e}"
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
