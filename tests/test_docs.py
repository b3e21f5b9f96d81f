"""The docs site (`make docs`): built once per session from the executed notebooks, then checked in headless Chromium.

Every notebook is a page and its figures load, the API pages list every public name of the library, no page has a
script error or a failed request; screenshots of the landing page, one lesson and one widget page go to
test-artifacts/docs/. Also: an exported widget page opens from another folder with the network blocked."""

import json, re, shutil, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "docs"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "nbs").glob("*.ipynb"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # the first test builds the site


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    "Build the site once for the session (notebooks executed once; cached copies reused when nothing changed)."
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_docs import build

    out = tmp_path_factory.mktemp("site")
    start = time.time()
    timings = build(out)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "build-timings.json").write_text(
        json.dumps({**timings, "wall_s": round(time.time() - start, 1)}, indent=1)
    )
    return out


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url: str, offline: bool = False):
    "A page with its errors and failed requests recorded; `offline` aborts every request that is not a local file."
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.errors, page.failed = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("requestfailed", lambda r: page.failed.append(r.url))
    if offline:
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(url, wait_until="load")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=60_000)
    return page


def broken_images(page) -> list[str]:
    return page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")


def test_every_notebook_is_a_page_with_its_figures(site, browser):
    for name in NOTEBOOKS:
        html = site / f"{name}.html"
        assert html.exists(), f"{name}.ipynb has no page in the site"
        page = open_page(browser, html.as_uri())
        try:
            assert not page.errors and not page.failed, (name, page.errors, page.failed)
            assert not broken_images(page), (name, broken_images(page))
            text = page.inner_text("article")
            assert "#|" not in text, f"{name}: an nbdev directive is shown on the page"
            assert "Traceback" not in text and "Error" not in page.title(), name
            if name == "index":
                page.screenshot(path=str(ARTIFACTS / "landing.png"), full_page=True)
                assert page.locator("article img").count() >= 1  # the architecture figure
                lessons = page.eval_on_selector_all("article table a", "els => els.map(e => e.getAttribute('href'))")
                assert len(lessons) == len(NOTEBOOKS) - 1 and all(
                    (site / h).exists() and h.endswith(".html") for h in lessons
                )
                for cls in ("MelConvEncoder", "AudioTransformer", "XAttnDecoderLayer", "ClipIndex", "RetrievedShots"):
                    assert cls in text, f"the architecture figure does not name {cls}"  # read from the model
        finally:
            page.close()


def test_lessons_carry_their_pictures(site):
    "The lessons with a picture to show have at least one image output on their page."
    for name in ("index", "01_audio", "04_xattn", "07_training", "10_rag", "11_datamodule"):  # 17: widgets, drawn live
        html = (site / f"{name}.html").read_text()
        assert html.count("<img") >= 1, f"{name}: no figure on the page"
    assert (site / "10_rag.html").read_text().count("data:image/png") >= 3  # similarity, hits, spectrogram panel


def test_api_pages_list_the_public_functions(site, browser):
    import importlib

    for py in sorted((ROOT / "audioflamingo_lab").glob("*.py")):
        if py.stem.startswith("_"):
            continue
        module = importlib.import_module(f"audioflamingo_lab.{py.stem}")
        names = [n for n in getattr(module, "__all__", []) if callable(getattr(module, n))]  # functions and classes
        if not names:
            continue
        html = site / "api" / f"{py.stem}.html"
        assert html.exists(), f"no API page for audioflamingo_lab.{py.stem}"
        page = open_page(browser, html.as_uri())
        try:
            ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
            missing = [n for n in names if f"audioflamingo_lab.{py.stem}.{n}" not in ids]
            assert not missing, f"API page of {py.stem} lacks {missing}"
            assert not page.errors and not page.failed, (py.stem, page.errors, page.failed)
        finally:
            page.close()


def test_widget_page_renders_the_trained_demo(site, browser):
    page = open_page(browser, (site / "17_widgets.html").as_uri())
    try:
        page.wait_for_selector(".widget-vbox", timeout=60_000)
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=60_000)
        assert not page.errors and not page.failed, (page.errors, page.failed)
        assert not broken_images(page)
        assert page.locator(".widget-vbox").count() >= 7  # tiny run: three widgets (17b has the attention); demo: four
        assert page.locator(".widget-text input").count() >= 1  # the demo's attention view: its token filter
        assert page.locator("h2", has_text="On a trained run").count() == 1
        demo_attention_top = page.evaluate("""() => {                // the demo's attention explorer: its token filter
            const y = e => e.getBoundingClientRect().top + window.scrollY;
            const heading = [...document.querySelectorAll('h2')].find(h => h.textContent.includes('On a trained run'));
            return y([...document.querySelectorAll('.widget-text input')].find(i => y(i) > y(heading)));
        }""")
        page.evaluate(f"window.scrollTo(0, {demo_attention_top} - 150)")
        page.screenshot(path=str(ARTIFACTS / "widgets.png"))
        page.screenshot(path=str(ARTIFACTS / "widgets-full.png"), full_page=True)
    finally:
        page.close()
    lesson = open_page(browser, (site / "04_xattn.html").as_uri())
    try:
        lesson.screenshot(path=str(ARTIFACTS / "lesson-04_xattn.png"), full_page=True)
    finally:
        lesson.close()


def test_exported_widget_page_opens_elsewhere_offline(browser, tmp_path):
    "Exported here, copied to another folder, opened with every non-file request aborted: it renders, nothing fails."
    sys.path.insert(0, str(Path(__file__).parent))
    from _widgets_run import tiny_run
    from audioflamingo_lab.attention_explorer import AttentionExplorer
    from audioflamingo_lab.widget_export import export_html, embed_js

    run = tiny_run()
    ax = AttentionExplorer(run.model, run.episodes[:2], cache=run.cache, max_rows=12)
    exported = export_html(ax, tmp_path / "made-here" / "attention.html", title='<script>alert("x")</script> & co')
    text = exported.read_text()
    cache = embed_js().parents[2]  # where the exporting machine keeps the script
    assert (
        str(cache) not in text and cache.as_uri() not in text and "<script src=" not in text
    )  # nothing outside the page
    assert "<title>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co</title>" in text
    elsewhere = tmp_path / "another-machine" / "page.html"
    elsewhere.parent.mkdir()
    shutil.copy(exported, elsewhere)
    shutil.rmtree(exported.parent)
    page = open_page(browser, elsewhere.as_uri(), offline=True)
    try:
        page.wait_for_selector(".widget-vbox", timeout=60_000)
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
        assert not page.errors and not page.failed, (page.errors, page.failed)
        assert page.evaluate("Array.from(document.images).filter(i => i.naturalWidth > 0).length") == 2
        assert page.title() == '<script>alert("x")</script> & co'
        assert page.locator(".widget-text input").count() == 1
    finally:
        page.close()
