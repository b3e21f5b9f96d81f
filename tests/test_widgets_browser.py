"""Each widget exported to HTML (local html-manager, no CDN) and opened in headless Chromium; screenshots in
test-artifacts/."""

from pathlib import Path
import json, pytest
from audioflamingo_lab.widgets import GateInspector, RetrievalBrowser, FewShotExplorer
from audioflamingo_lab.attention_explorer import AttentionExplorer
from audioflamingo_lab.widget_export import export_html, embed_js
from _widgets_run import tiny_run, eval_report

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "widgets"
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


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh does)"
    embed_js()  # the local widget manager (scripts/setup.sh fetches it)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1200, "height": 900})
        pg.errors, pg.failed = [], []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.on("requestfailed", lambda r: pg.failed.append(r.url))
        yield pg
        browser.close()


def show(page, widget, name: str):
    "Export, open, wait for the widgets to render, screenshot; returns the page's visible text."
    html = export_html(widget, ARTIFACTS / f"{name}.html", title=name)
    page.errors.clear()
    page.failed.clear()
    page.goto(html.as_uri())
    page.wait_for_selector(".widget-vbox", timeout=60_000)
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert (ARTIFACTS / f"{name}.png").stat().st_size > 5_000
    assert not page.errors and not page.failed, (page.errors, page.failed)  # everything loaded locally, no script error
    return page.inner_text("body")


def loaded_images(page) -> int:
    return page.evaluate("Array.from(document.images).filter(i => i.naturalWidth > 0).length")


def options(page, css: str = "option") -> list[str]:
    return page.eval_on_selector_all(css, "els => els.map(e => e.textContent)")


def test_gate_inspector_in_browser(page):
    run = tiny_run()
    gi = GateInspector(run.checkpoints)
    gi.slider.value = 1
    text = show(page, gi, "gate_inspector")
    assert f"{len(gi.layers)} cross-attention blocks" in text
    assert page.locator(".widget-slider").count() == 1 and page.inner_text(".widget-readout").strip() == "step 4"
    assert loaded_images(page) == 1


def test_attention_explorer_in_browser(page):
    run = tiny_run()
    ax = AttentionExplorer(run.model, run.episodes[:2], cache=run.cache).select(example=1, block=1, head=2)
    show(page, ax, "attention_explorer")
    opts = options(page)
    assert all(i in opts for i in ax.batch["ids"]) and all(
        f"layer {l}" in [o.replace("\xa0", " ") for o in opts] for l in ax.layers
    )
    assert page.inner_text(".widget-readout").strip() == "2"  # the head slider
    assert ax.token_pick.label in [o.replace("\xa0", " ") for o in opts]  # token picker lists the tokens
    assert loaded_images(page) == 2  # heatmap + the token's bars


def test_retrieval_browser_in_browser(page):
    run = tiny_run()
    val = [it for it in run.items if it.split != "train"]
    rb = RetrievalBrowser(run.index, val, tokenizer=run.model.tokenizer, k=3)
    text = show(page, rb, "retrieval_browser")
    for n in rb.neighbours:
        assert f"{n.score:.3f} · {n.item.id}" in text and n.item.answer in text
    assert val[0].id in options(page) and page.locator("audio").count() == 4 and loaded_images(page) == 4
    assert page.locator('span[style*="background:#ffd54f"]').count() > 0  # the loss-mask highlight
    assert "Here are similar examples." in text and page.locator(".widget-upload").count() == 1


def test_fewshot_explorer_in_browser(page):
    report = eval_report()
    fe = FewShotExplorer([report])
    text = show(page, fe, "fewshot_explorer")
    rep = json.loads(report.read_text())
    classes = sorted({c for t in rep["per_class"].values() for c in t})
    assert fe.classes == classes and set(classes) <= {o.replace("\xa0", " ") for o in options(page)}
    assert "eval" in options(page) and "(all classes)" in text.replace("\xa0", " ") and loaded_images(page) == 1
    assert {s for _, s in fe.points} == {"random", "rag"} and all(len(p) == 2 for p in fe.points.values())
