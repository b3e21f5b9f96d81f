"""What a user installing the package elsewhere relies on: ranges not pins, a licence, every import declared, optional
extras imported lazily with a clear message. (The built wheel itself is exercised by scripts/wheel_check.sh.)"""

import ast, subprocess, sys, tomllib
from importlib.metadata import packages_distributions
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CORE = [Requirement(r) for r in PROJECT["dependencies"]]
EXTRAS = {name: [Requirement(r) for r in reqs] for name, reqs in PROJECT["optional-dependencies"].items()}


def _pins(path=ROOT / "constraints.txt") -> dict:
    lines = [l.split("#")[0].strip() for l in path.read_text().splitlines()]
    return {canonicalize_name(l.split("==")[0]): l.split("==")[1] for l in lines if l}


def test_metadata_has_ranges_not_pins():
    assert PROJECT["requires-python"] == ">=3.11"
    for req in CORE + sum(EXTRAS.values(), []):
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{req}: pins belong in constraints.txt"
    assert all(req.specifier for req in CORE), "every core dependency has a tested lower bound"
    assert {"clap", "tensorboard", "dev"} <= set(EXTRAS)
    assert "laion-clap" not in {canonicalize_name(r.name) for r in CORE}  # ~440 MB and numpy<2: an extra


def test_constraints_pin_every_declared_dependency_inside_its_range():
    pins = _pins()
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert all("==" in l for l in lines if l.strip() and not l.startswith("#"))
    own = canonicalize_name(PROJECT["name"])
    for req in CORE + sum(EXTRAS.values(), []):
        name = canonicalize_name(req.name)
        if name == own:
            continue  # dev = audioflamingo-lab[clap,tensorboard] + tools
        assert name in pins, f"{name} is declared but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt: {name}=={pins[name]}, not {req}"


def test_license_file_is_mit_and_packaged():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]


def _third_party_imports() -> dict[str, set]:
    found = {}
    for path in sorted((ROOT / "audioflamingo_lab").glob("*.py")) + sorted((ROOT / "data_recipes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for n in names:
                top = n.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("audioflamingo_lab", "data_recipes"):
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_import_is_declared():
    declared = {canonicalize_name(r.name) for r in CORE}
    dists = packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "librosa", "faiss", "yaml"} <= set(imports)  # the scan sees inline imports too
    undeclared = {
        m: sorted(files)
        for m, files in imports.items()
        if not declared & {canonicalize_name(d) for d in dists.get(m, [])}
    }
    assert not undeclared, f"imported but not in [project.dependencies]: {undeclared}"
    assert "sklearn" not in imports and "laion_clap" not in imports  # laion_clap: found lazily, only by clap-htsat


BLOCK_CLAP = """
import sys, importlib.abc
class NoClap(importlib.abc.MetaPathFinder):                  # as if `pip install audioflamingo-lab` had no [clap]
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("laion_clap", "torchvision"): raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoClap())
"""


def test_clap_is_lazy_and_its_absence_is_one_clear_line():
    code = (
        BLOCK_CLAP
        + """
import torch
from audioflamingo_lab.encoders import build_encoder
assert build_encoder("mel")(torch.zeros(1, 1, 16000)).shape[-1] > 0   # the package works without laion-clap
try: build_encoder("clap-htsat")
except ImportError as e: print("MESSAGE:", e)
"""
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    hint = "the clap-htsat encoder needs laion-clap, an optional extra: pip install 'audioflamingo-lab[clap]'"
    assert f"MESSAGE: {hint}" in r.stdout


def test_afl_reports_missing_clap_without_traceback(tmp_path):
    (tmp_path / "m.jsonl").write_text("")
    code = BLOCK_CLAP + "from audioflamingo_lab.cli import main; main(sys.argv[1:])"
    argv = [
        "index",
        "build",
        "--manifest",
        str(tmp_path / "m.jsonl"),
        "--encoder",
        "clap-htsat",
        "--out",
        str(tmp_path / "i"),
    ]
    r = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    hint = "the clap-htsat encoder needs laion-clap, an optional extra: pip install 'audioflamingo-lab[clap]'"
    assert r.stderr.strip().splitlines()[-1] == f"afl: error: {hint}"


def test_packaged_config_is_found_by_name():
    from audioflamingo_lab.cli import packaged_config, _configs

    assert packaged_config("tiny-pretrain").read_text() == (ROOT / "configs/tiny-pretrain.yaml").read_text()
    assert packaged_config("no-such-config") is None
    path = str(packaged_config("tiny-pretrain"))
    assert _configs(["train", "--config", "tiny-pretrain"]) == ["train", "--config", path]
