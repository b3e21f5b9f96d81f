"""The `afl` command end to end: data, train (resume after a kill, DDP on 2 CPU processes), eval on a hand-written
manifest, chat."""

import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
AFL = [str(Path(sys.executable).parent / "afl")]  # the console script (DDP re-launches it per rank)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}


def afl(*args, check=True, timeout=600, **kw):
    r = subprocess.run(
        [*AFL, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and r.returncode:
        raise AssertionError(f"afl {' '.join(map(str, args))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def train_args(data, out, cache, steps=6, every=3):
    return [
        "train",
        "--config",
        ROOT / "configs/tiny-pretrain.yaml",
        "--out",
        out,
        "--data.train",
        f"{{{data}: 1.0}}",
        "--data.cache",
        cache,
        "--trainer.max_steps",
        steps,
        "--trainer.checkpoint_every_n_steps",
        every,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.accelerator",
        "cpu",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "Quick synthetic data and a tiny model trained for 6 steps through `afl train`."
    tmp = tmp_path_factory.mktemp("cli")
    afl("data", "build", "synthetic", "--out", tmp / "data", "--quick")
    afl(*train_args(tmp / "data/manifest.jsonl", tmp / "run", tmp / "cache"))
    return tmp


def test_help_on_every_subcommand():
    for cmd in (
        ["--help"],
        ["data", "build", "--help"],
        ["index", "build", "--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["chat", "--help"],
        ["demo", "--help"],
    ):
        r = afl(*cmd)
        assert "usage: afl" in r.stdout, cmd


def test_train_writes_run_and_refuses_overwrite(run):
    from audioflamingo_lab.checkpoint import load_checkpoint

    out = run / "run"
    for name in ("config.yaml", "model.safetensors", "checkpoints/last.ckpt"):
        assert (out / name).exists(), name
    gates = sorted((out / "gates").glob("*.safetensors"))
    assert [p.name for p in gates] == [f"gates-step{s:06d}.safetensors" for s in (0, 3, 6)]
    model = load_checkpoint(out / "model.safetensors")
    assert any(abs(g["attn"]) > 0 for g in model.gate_values())  # the gates moved off zero
    for name in ("loss.png", "gates.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    r = afl(*train_args(run / "data/manifest.jsonl", out, run / "cache"), check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("afl: error: ") and "already holds a finished run" in r.stderr
    before = (out / "model.safetensors").stat().st_mtime_ns
    afl(*train_args(run / "data/manifest.jsonl", out, run / "cache"), "--overwrite", "true")
    assert (out / "model.safetensors").stat().st_mtime_ns > before and not (out / ".afl.lock").exists()


def test_kill_then_resume(run):
    "Kill `afl train` mid-run; the same command continues from last.ckpt instead of starting over."
    out = run / "resume"
    args = train_args(run / "data/manifest.jsonl", out, run / "cache", steps=16, every=4)
    p = subprocess.Popen(
        [*AFL, *map(str, args)], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last, deadline = out / "checkpoints/last.ckpt", time.time() + 300
    while not (
        out / "gates/gates-step000012.safetensors"
    ).exists():  # last.ckpt (saved after the snapshot) holds >= step 8
        assert p.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert last.exists() and not (out / "model.safetensors").exists()
    r = afl(*args)
    assert "resuming" in r.stderr
    import csv

    second = sorted((out / "logs").glob("version_*"))[-1] / "metrics.csv"
    steps = [int(row["step"]) for row in csv.DictReader(second.open()) if row.get("step")]
    assert steps and min(steps) >= 8  # the second run continued past step 8
    assert (out / "gates/gates-step000016.safetensors").exists() and (out / "model.safetensors").exists()


def test_ddp_two_cpu_processes(run):
    r = afl(
        *train_args(run / "data/manifest.jsonl", run / "ddp", run / "cache", steps=4, every=2),
        "--devices",
        2,
        "--strategy",
        "ddp",
    )
    log = r.stdout + r.stderr
    assert "MEMBER: 2/2" in log and "gloo" in log.lower()
    assert (run / "ddp/model.safetensors").exists()


def _tone(path, seconds, sr, freq, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, sr)


def test_eval_on_a_hand_written_manifest(run, tmp_path):
    "A manifest written from the schema (not by a recipe): mixed rates, lengths, a stereo file, an over-long clip."
    rates, lengths = [8000, 16000, 22050, 44100, 48000], [0.5, 1.2, 3.0, 9.0]
    lines, n = [], 0
    for label, freq in (("low hum", 150), ("high whistle", 2500)):
        for i in range(5):
            name = f"clip{n}.{'flac' if n % 2 else 'wav'}"
            _tone(tmp_path / name, lengths[n % 4], rates[n % 5], freq * (1 + 0.02 * i), channels=1 + n % 2)
            split = "test" if i >= 3 else "train"
            lines.append(
                {
                    "id": f"c{n}",
                    "audio": name,
                    "task": "classification",
                    "prompt": "what is this sound?",
                    "answer": label,
                    "options": ["high whistle", "low hum"],
                    "split": split,
                    "dataset": "byhand",
                }
            )
            n += 1
    _tone(tmp_path / "long.wav", 40.0, 16000, 300)  # > 33.25 s: cropped with a warning
    lines.append(
        {
            "id": "long",
            "audio": "long.wav",
            "task": "classification",
            "prompt": "what is this sound?",
            "answer": "low hum",
            "options": ["high whistle", "low hum"],
            "split": "test",
            "dataset": "byhand",
        }
    )
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    out = tmp_path / "eval"
    proc = afl(
        "eval",
        "--ckpt",
        run / "run/model.safetensors",
        "--manifest",
        tmp_path / "m.jsonl",
        "--shots",
        "0,1,2",
        "--select",
        "random,rag,balanced",
        "--ways",
        2,
        "--seeds",
        "0,1",
        "--controls",
        "gates-off,no-query-audio",
        "--out",
        out,
        "--cache",
        tmp_path / "cache",
        "--max_new_tokens",
        4,
    )
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "accuracy" and report["matching"] == "strict" and report["meta"]["seeds"] == [0, 1]
    model_rows = [r for r in report["rows"] if r["condition"] == "model"]
    got = {(r["shots"], r["select"]) for r in model_rows}
    assert got == {(0, "none"), (1, "random"), (2, "random"), (1, "rag"), (2, "rag"), (1, "balanced"), (2, "balanced")}
    for r in report["rows"]:
        assert r["n"] == 5 and 0 <= r["ci95"][0] <= r["score"] <= r["ci95"][1] <= 1 and r["seeds"] == 2
    conditions = {(r["select"], r["shots"], r["condition"]) for r in report["rows"]}
    assert {
        ("rag", 2, "knn"),
        ("rag", 2, "gates-off"),
        ("balanced", 2, "no-query-audio"),
        ("none", 0, "chance"),
    } <= conditions
    assert "knn" in proc.stdout and "matching: strict" in proc.stdout  # the table is printed
    assert (out / "fewshot.png").read_bytes()[:4] == b"\x89PNG"
    r = afl(
        "eval", "--ckpt", run / "run/model.safetensors", "--manifest", tmp_path / "m.jsonl", "--out", out, check=False
    )
    assert r.returncode != 0 and "already holds report.json" in r.stderr  # a report is never overwritten silently


def test_eval_names_a_bad_manifest_line(run, tmp_path):
    (tmp_path / "bad.jsonl").write_text(
        '{"id": "a", "audio": "missing.wav", "task": "classification", "prompt": "p", '
        '"answer": "x", "split": "test", "dataset": "d"}\nnot json\n'
    )
    r = afl(
        "eval",
        "--ckpt",
        run / "run/model.safetensors",
        "--manifest",
        tmp_path / "bad.jsonl",
        "--out",
        tmp_path / "e",
        "--select",
        "random",
        check=False,
    )
    assert r.returncode == 1 and "bad.jsonl:1" in r.stderr and "bad.jsonl:2" in r.stderr and "Traceback" not in r.stderr


def test_chat_encodes_the_audio_once(run, tmp_path):
    from audioflamingo_lab.cli import chat
    from audioflamingo_lab.encoders import MelConvEncoder

    _tone(tmp_path / "a.wav", 2.0, 16000, 440)
    calls = []
    h = __import__("torch").nn.modules.module.register_module_forward_hook(
        lambda m, i, o: calls.append(1) if isinstance(m, MelConvEncoder) else None
    )
    try:
        turns = chat(
            str(run / "run/model.safetensors"),
            str(tmp_path / "a.wav"),
            questions=["what is it?", "is it loud?"],
            max_new_tokens=3,
        )
    finally:
        h.remove()
    assert [t["user"] for t in turns] == ["what is it?", "is it loud?"] and all(
        isinstance(t["assistant"], str) for t in turns
    )
    assert len(calls) == 1


def test_trainer_passthrough_validation_loggers_lora_and_plots(run):
    "Any Trainer argument passes through; val loss on a schedule; csv + tensorboard; LoRA settings reach the adapter."
    from audioflamingo_lab.run import metric_series
    from audioflamingo_lab.checkpoint import checkpoint_info

    out = run / "lora"
    afl(
        *train_args(run / "data/manifest.jsonl", out, run / "cache", steps=4, every=4),
        "--model.mode",
        "lora",
        "--model.lora_r",
        4,
        "--model.lora_alpha",
        8,
        "--model.lora_targets",
        "[q_proj, v_proj]",
        "--trainer.val_check_interval",
        2,
        "--trainer.limit_val_batches",
        2,
        "--trainer.max_time",
        "00:00:30:00",
        "--trainer.log_every_n_steps",
        1,
        "--trainer.logger",
        "csv,tensorboard",
        "--trainer.enable_model_summary",
        "false",
    )
    lora = checkpoint_info(out / "model.safetensors")["trainable"]["lora"]
    assert (lora["r"], lora["alpha"], list(lora["targets"])) == (4, 8, ["q_proj", "v_proj"])
    steps, val = metric_series(out, "val/loss")
    assert len(val) == 2 and all(v > 0 for v in val)  # every 2 of 4 batches
    assert len(metric_series(out, "train/loss")[0]) == 4
    assert list((out / "tensorboard").glob("version_0/events.out.tfevents.*"))
    for name in ("loss.png", "gates.png"):
        assert (out / name).stat().st_size > 1000


def test_ckpt_path_resumes_from_another_runs_checkpoint(run):
    out = run / "from-ckpt"
    r = afl(
        *train_args(run / "data/manifest.jsonl", out, run / "cache", steps=8, every=4),
        "--ckpt_path",
        run / "run/checkpoints/last.ckpt",
    )
    assert f"from {run / 'run/checkpoints/last.ckpt'}" in r.stderr
    import csv

    steps = [int(row["step"]) for row in csv.DictReader((out / "logs/version_0/metrics.csv").open()) if row.get("step")]
    assert steps and min(steps) >= 6  # continued after the 6 steps of `run`
    r = afl(
        *train_args(run / "data/manifest.jsonl", run / "nope", run / "cache"),
        "--ckpt_path",
        run / "none.ckpt",
        check=False,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr and "--ckpt_path" in r.stderr


def _main_error(capsys, *argv) -> str:
    "Run `afl ARGV` in this process; it must exit 1 with one `afl: error:` line on stderr and no traceback."
    from audioflamingo_lab.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err, err
    assert err.count("afl: error: ") == 1, err
    return err


def _one_item_manifest(folder) -> Path:
    _tone(folder / "one.wav", 1.0, 16000, 440)
    line = {
        "id": "a",
        "audio": "one.wav",
        "task": "classification",
        "prompt": "p",
        "answer": "x",
        "split": "train",
        "dataset": "d",
    }
    (folder / "one.jsonl").write_text(json.dumps(line) + "\n")
    return folder / "one.jsonl"


def test_expected_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text("not json\n")
    bad = f"{{{tmp_path}/bad.jsonl: 1}}"
    assert "bad.jsonl:1" in _main_error(capsys, "train", "--out", tmp_path / "r", "--data.train", bad)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / ".afl.lock").write_text("1")  # pid 1 is always alive
    good = _one_item_manifest(tmp_path)
    err = _main_error(capsys, "train", "--out", locked, "--data.train", f"{{{good}: 1}}")
    assert "in use by another afl process" in err
    assert "no such checkpoint file" in _main_error(
        capsys,
        "eval",
        "--ckpt",
        tmp_path / "missing.safetensors",
        "--manifest",
        tmp_path / "bad.jsonl",
        "--out",
        tmp_path / "e",
    )
    assert "--trainer.logger 'wandb'" in _main_error(
        capsys, "train", "--out", tmp_path / "w", "--data.train", "{x: 1}", "--trainer.logger", "wandb"
    )
    assert "data.train is empty" in _main_error(capsys, "train", "--out", tmp_path / "e2")


def test_missing_weights_is_one_line(tmp_path, capsys, monkeypatch):
    from audioflamingo_lab import pretrained

    _, rel, licence = pretrained.WEIGHT_FILES["smollm2"]
    monkeypatch.setitem(pretrained.WEIGHT_FILES, "smollm2", ("no_such_weight_package", rel, licence))  # not installed
    good = f"{{{_one_item_manifest(tmp_path)}: 1}}"
    err = _main_error(capsys, "train", "--out", tmp_path / "r", "--data.train", good, "--model.preset", "small")
    assert "is not installed" in err and "requirements-pretrained" in err


def test_missing_option_and_debug(tmp_path):
    r = afl("data", "build", "synthetic", check=False)
    assert r.returncode == 1 and "missing required option(s): --out" in r.stderr and "Traceback" not in r.stderr
    r = afl(
        "eval",
        "--ckpt",
        tmp_path / "missing.safetensors",
        "--manifest",
        "m.jsonl",
        "--out",
        tmp_path / "e",
        "--debug",
        check=False,
    )
    assert r.returncode == 1 and "Traceback" in r.stderr and "FileNotFoundError" in r.stderr


def test_a_bug_keeps_its_traceback():
    from audioflamingo_lab.cli import _user_error

    assert not _user_error(TypeError("unsupported operand")) and not _user_error(AttributeError("x"))
    try:
        raise RuntimeError("CUDA error: device-side assert")  # not raised by this project: a bug
    except RuntimeError as e:
        torch_error = e
    assert not _user_error(torch_error)
    assert _user_error(ValueError("bad manifest")) and _user_error(FileExistsError("finished run"))


def test_trainer_section_is_lightning_trainer(monkeypatch, tmp_path):
    "Every Trainer argument is a --trainer.NAME flag (except the five afl sets), and Lightning accepts what we pass."
    import inspect, lightning as L
    from dataclasses import fields
    from audioflamingo_lab import cli, run, run_config

    ours = {f.name for f in fields(run_config.TrainerSection)}
    assert set(inspect.signature(L.Trainer).parameters) - {"self"} == (ours - set(run_config.AFL_ONLY)) | set(
        run_config.AFL_SETS
    )
    seen = {}
    monkeypatch.setattr(run, "_train", lambda *a: seen.update(trainer=a[6], ckpt=a[8]))
    good = f"{{{_one_item_manifest(tmp_path)}: 1}}"
    cli.main(
        [
            "train",
            "--out",
            str(tmp_path / "r"),
            "--data.train",
            good,
            "--trainer.num_nodes",
            "2",
            "--trainer.val_check_interval",
            "0.5",
            "--trainer.limit_train_batches",
            "0.5",
            "--trainer.max_epochs",
            "3",
            "--num_nodes",
            "3",
            "--ckpt_path",
            __file__,
        ]
    )
    kw = run_config.trainer_kwargs(seen["trainer"])
    assert (kw["num_nodes"], kw["val_check_interval"], kw["limit_train_batches"], kw["max_epochs"]) == (3, 0.5, 0.5, 3)
    assert seen["ckpt"] == __file__
    fit = L.Trainer(logger=False, enable_checkpointing=False, **{**kw, "accelerator": "cpu", "devices": 1})
    assert fit.num_nodes == 3 and fit.max_epochs == 3 and fit.val_check_interval == 0.5
