"The run module owns training runs; the command line only parses and calls; no module imports the command line."

import ast, inspect
from pathlib import Path
import audioflamingo_lab

PACKAGE = Path(audioflamingo_lab.__file__).parent


def imported_modules(name: str) -> set[str]:
    "The package modules `name` imports anywhere in its file (top level or inside a function)."
    tree, found = ast.parse((PACKAGE / f"{name}.py").read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level and not module:
                found |= {a.name for a in node.names}  # from . import x
            elif node.level:
                found.add(module.split(".")[0])
            elif module.startswith("audioflamingo_lab."):
                found.add(module.split(".")[1])
            elif module == "audioflamingo_lab":
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("audioflamingo_lab.")}
    return found


def test_cli_defines_no_training():
    from audioflamingo_lab import cli, run, run_config, run_folder

    owners = {
        run: ("train", "_train", "plot_loss", "run_callbacks"),
        run_folder: ("prepare_run_dir", "folder_lock"),
        run_config: ("TrainerSection", "ModelSection", "trainer_kwargs"),
    }
    for module, names in owners.items():
        for name in names:
            assert inspect.getmodule(getattr(module, name)) is module
            assert name not in vars(cli) or getattr(cli, name) is getattr(module, name)  # at most the imported `train`
    assert (
        "def train" not in (PACKAGE / "cli.py").read_text()
        and "class ModelSection" not in (PACKAGE / "cli.py").read_text()
    )
    assert cli.commands()["train"] is run.train


def test_nothing_imports_the_command_line_and_runs_do_not_import_widgets():
    runs = ("run", "run_config", "run_folder")
    fewshot = ("fewshot", "fewshot_controls", "fewshot_report")
    for name in (*runs, "demo", "checkpoint", "training", "widgets", *fewshot, "datamodule"):
        assert "cli" not in imported_modules(name), name
    for name in runs:
        assert not {"demo", "widgets", "cli"} & imported_modules(name), name
    assert not {"run", "demo", "widgets", "cli"} & imported_modules("checkpoint")
    assert "run" in imported_modules("demo") and "checkpoint" in imported_modules("widgets")


def test_the_tutorial_uses_the_library_not_the_command_line():
    text = (PACKAGE.parent / "nbs" / "18_tutorial_domain_finetune.ipynb").read_text()
    assert "audioflamingo_lab.cli" not in text and "from audioflamingo_lab.run import train" in text
