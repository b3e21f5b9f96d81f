"""Build the docs site from the notebooks, executed, into a folder that opens from disk (`make docs`).

1. Execute a copy of every notebook in `nbs/` (the ones in git stay output-free) with nbclient, two at a time (one
   thread each, the longest first), in `nbs/` like `nbdev_test` does; the test command runs the notebooks only here
   (tests/test_docs.py). Cells marked `#| eval: false`, `#| notest` or `#| gpu` are shown but not run; `#| slow`
   cells run (they draw the pictures of the trained demo run). An executed copy is cached under `build/docs-cache/`,
   keyed by the notebook, the library and recipe sources and the benchmark records, so a second build only renders.
2. Turn nbdev directives into page form: `#| hide` and `#| default_exp` cells leave the page, the `#|` lines leave the
   code, `#| echo: false` keeps only the output, `#| output: false` only the code. Widget outputs become the
   html-manager's embed markup (state + view), rendered by a local, self-contained copy of its script.
3. Write an API page per module (mkdocstrings, from docstrings and signatures) and a nav in reading order, then
   `mkdocs build` (mkdocs-material + mkdocs-jupyter) into `_docs/`.

Usage: python scripts/build_docs.py [--out _docs] [--only 01_audio,04_xattn] [--workers 2] [--no-cache]
"""

from __future__ import annotations
import argparse, hashlib, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, BUILD = ROOT / "nbs", ROOT / "build"
SRC, CACHE = BUILD / "docs-src", BUILD / "docs-cache"
SKIP_FLAGS = {"notest", "gpu"}  # settings.ini tst_flags minus `slow`: the docs run the slow cells
CACHE_VERSION = "2"  # bump when the way notebooks are executed changes
DIRECTIVE = re.compile(r"^\s*#\|\s*(.*?)\s*$")
# The longest executions first (seconds in the build of 2026-12-07 at commit 0336ac4, one thread per kernel, 2 Zen 2
# cores: 333, 159, 46, 34, 27), so the two workers finish together. One thread each because two kernels of two
# threads on two cores fought for them: that build took 1051 s instead of 563.
LONGEST_FIRST = ("20_listening", "18_tutorial_domain_finetune", "13b_whisper_tiny", "17_widgets", "13a_aisfx_encoder")
WIDGET_VIEW, WIDGET_STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"


def directives(cell) -> dict[str, str]:
    "The `#| key: value` / `#| flag` lines at the top of a code cell, as {key: value}."
    found = {}
    for line in cell.source.splitlines():
        m = DIRECTIVE.match(line)
        if not m:
            if line.strip():
                break
            continue
        if not m[1]:
            continue
        key, _, value = m[1].partition(":" if ":" in m[1].split()[0] else " ")  # `eval: false` or `default_exp core`
        found[key.strip()] = value.strip()
    return found


def skipped(cell) -> bool:
    "A cell the docs show without running: `#| eval: false` or a test flag the docs do not run."
    d = directives(cell)
    return d.get("eval", "").lower() == "false" or bool(SKIP_FLAGS & set(d))


def source_key(nb_path: Path) -> str:
    """Cache key: the notebook, the library, the recipes it runs and the benchmark records some lessons plot and check
    (a change in any re-executes: the test command runs the notebooks only here)."""
    h = hashlib.sha256(nb_path.read_bytes() + CACHE_VERSION.encode())
    sources = [*(ROOT / "audioflamingo_lab").glob("*.py"), *(ROOT / "data_recipes").rglob("*.py")]
    records = [p for p in (ROOT / "benchmarks" / "results").rglob("*") if p.suffix in (".json", ".csv", ".yaml")]
    for p in sorted(sources + records):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def kernel_env(threads: int | None = None) -> dict:
    """The kernels' environment: this interpreter (the kernelspec says `python`), this checkout's library, inline
    figures, and `threads` threads for torch, BLAS and faiss (unless the caller's environment sets them)."""
    env = dict(
        os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline"
    )  # Agg (the tests' setting) shows none
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS") if threads else ():
        env.setdefault(name, str(threads))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    return env


def execute(nb_path: Path, use_cache: bool = True, threads: int | None = None) -> tuple[Path, float]:
    "Execute a copy of the notebook (or reuse the cached copy); returns (executed path, seconds spent)."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"{nb_path.stem}.{source_key(nb_path)}.ipynb"
    if use_cache and out.exists():
        return out, 0.0
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and skipped(cell):
            cell.metadata.setdefault("tags", []).append("skip-execution")
    start = time.time()
    client = NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(nb_path.parent)}},
        store_widget_state=True,
    )
    try:
        client.execute(env=kernel_env(threads))
    except CellExecutionError as e:
        raise RuntimeError(f"{nb_path}: a cell failed while building the docs:\n{str(e)[-3000:]}") from None
    for old in CACHE.glob(f"{nb_path.stem}.*.ipynb"):
        old.unlink()
    nbformat.write(nb, out)
    return out, time.time() - start


def strip_directives(source: str) -> str:
    "The code without its leading `#|` lines."
    lines = source.splitlines()
    while lines and (DIRECTIVE.match(lines[0]) or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines)


def widget_html(view: dict, state: dict | None) -> str:
    "Embed markup for one widget view; the first carries the page's widget state and the manager script."

    def script(mime, data):
        body = json.dumps(data).replace("</", "<\\/")  # no `</script>` inside the script
        return f'<script type="{mime}">{body}</script>'

    head = "" if state is None else script(WIDGET_STATE, state) + '<script src="assets/widgets/embed.js"></script>'
    return head + script(WIDGET_VIEW, view)


def to_page(executed: Path, dest: Path):
    "Write the page form of an executed notebook: directives applied, widgets embedded, nothing else changed."
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE)
    cells = []
    pages = {p.name for p in NBS.glob("*.ipynb")}
    for cell in nb.cells:
        if cell.cell_type == "markdown":  # a link to a notebook opens its page, not the .ipynb file
            cell.source = re.sub(
                r"\]\(([\w-]+)\.ipynb(#[^)]*)?\)",
                lambda m: f"]({m[1]}.html{m[2] or ''})" if f"{m[1]}.ipynb" in pages else m[0],
                cell.source,
            )
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        d = directives(cell)
        if "hide" in d or "default_exp" in d:
            continue
        tags = [t for t in cell.metadata.get("tags", []) if t != "skip-execution"]  # the page need not show our marker
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
        if d.get("echo", "").lower() == "false":
            cell.metadata.setdefault("tags", []).append("remove_input")
        if d.get("output", "").lower() == "false":
            cell.outputs = []
        cell.source = strip_directives(cell.source)
        for out in cell.outputs:
            if WIDGET_VIEW in out.get("data", {}):
                out.data = {"text/html": widget_html(out.data[WIDGET_VIEW], state)}
                state = None  # the state and the script go in once per page
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, dest)


def title_of(nb_path: Path) -> str:
    "The notebook's first `# Heading`."
    import nbformat

    for cell in nbformat.read(nb_path, as_version=4).cells:
        if cell.cell_type == "markdown" and (m := re.search(r"^#\s+(.+)$", cell.source, re.M)):
            return m[1].strip()
    return nb_path.stem


def api_pages() -> list[tuple[str, str]]:
    "An mkdocstrings page per library module with public names; returns [(title, path)]."
    pages = []
    (SRC / "api").mkdir(parents=True, exist_ok=True)
    for py in sorted((ROOT / "audioflamingo_lab").glob("*.py")):
        if py.stem.startswith("_"):
            continue
        names = re.search(r"__all__ = \[(.*?)\]", py.read_text(), re.S)
        if not names or not names[1].strip():
            continue
        doc = f"# `audioflamingo_lab.{py.stem}`\n\n::: audioflamingo_lab.{py.stem}\n"
        (SRC / "api" / f"{py.stem}.md").write_text(doc)
        pages.append((py.stem, f"api/{py.stem}.md"))
    return pages


def mkdocs_config(lessons: list[tuple[str, str]], api: list[tuple[str, str]], site: Path) -> Path:
    "mkdocs.yml (settings in git) + docs_dir, site_dir and the nav in reading order."
    import yaml

    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    cfg.update(docs_dir=str(SRC), site_dir=str(site))
    cfg["nav"] = [
        {"Start here": "index.ipynb"},
        {"Lessons": [{t: p} for t, p in lessons]},
        {"API": [{t: p} for t, p in api]},
    ]
    path = BUILD / "mkdocs.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


EXTRA_CSS = """/* code cells are up to 120 columns: give the content the room */
.md-grid { max-width: 1600px; }
.jupyter-wrapper .jp-OutputArea-output img { max-width: 100%; height: auto; }
"""


def assets():
    "The html-manager script, self-contained (fonts inlined), for the pages with widgets; the extra CSS."
    sys.path.insert(0, str(ROOT))
    from audioflamingo_lab.widget_export import embed_js_inline

    (SRC / "assets" / "widgets").mkdir(parents=True, exist_ok=True)
    (SRC / "assets" / "widgets" / "embed.js").write_text(embed_js_inline(), encoding="utf-8")
    (SRC / "assets" / "extra.css").write_text(EXTRA_CSS)


def build(out: Path = ROOT / "_docs", only: list[str] | None = None, workers: int = 2, use_cache: bool = True) -> dict:
    "Execute, convert and render; returns timings {notebook: seconds executing} plus 'mkdocs' and 'total'."
    start = time.time()
    notebooks = sorted(p for p in NBS.glob("*.ipynb") if only is None or p.stem in only or p.stem == "index")
    if not (NBS / "index.ipynb").exists():
        raise FileNotFoundError(f"{NBS / 'index.ipynb'}: the landing page is missing")
    shutil.rmtree(SRC, ignore_errors=True)
    SRC.mkdir(parents=True)
    rank = {stem: i for i, stem in enumerate(LONGEST_FIRST)}
    queue = sorted(notebooks, key=lambda p: rank.get(p.stem, len(rank)))  # stable: the rest in reading order
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // workers)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = dict(zip(queue, pool.map(execute, queue, [use_cache] * len(queue), [threads] * len(queue))))
    timings = {p.stem: round(done[p][1], 1) for p in notebooks}
    for p in notebooks:
        executed = done[p][0]
        to_page(executed, SRC / p.name)
    assets()
    lessons = [(f"{p.stem.split('_')[0]} · {title_of(p)}", p.name) for p in notebooks if p.stem != "index"]
    config = mkdocs_config(lessons, api_pages(), out)
    t = time.time()
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--quiet", "--clean", "-f", str(config)],
        check=True,
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    timings.update(mkdocs=round(time.time() - t, 1), total=round(time.time() - start, 1))
    return timings


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "_docs"), help="site folder (open index.html from disk)")
    ap.add_argument("--only", default=None, help="comma-separated notebook names (index is always built)")
    ap.add_argument("--workers", type=int, default=2, help="notebooks executed at once")
    ap.add_argument("--no-cache", action="store_true", help="execute every notebook again")
    a = ap.parse_args(argv)
    timings = build(Path(a.out).resolve(), a.only.split(",") if a.only else None, a.workers, not a.no_cache)
    print(json.dumps(timings, indent=1))
    print(f"docs: {Path(a.out).resolve() / 'index.html'}")


if __name__ == "__main__":
    main()
