"Widget state against the model: gates, attention maps, retrieved neighbours, few-shot points."

import json, io
from datetime import datetime, timezone
from pathlib import Path
import numpy as np, pytest, soundfile as sf, torch
from audioflamingo_lab.widgets import GateInspector, RetrievalBrowser, FewShotExplorer, ALL_CLASSES
from audioflamingo_lab.attention_explorer import AttentionExplorer, window_labels, episodes_batch
from audioflamingo_lab.checkpoint import checkpoint_gates, load_checkpoint
from audioflamingo_lab.xattn import media_attention_mask
from audioflamingo_lab.audio import load_audio
from _widgets_run import tiny_run


@pytest.fixture(scope="module")
def run():
    return tiny_run()


def test_gate_inspector_equals_gate_values_of_each_checkpoint(run):
    gi = GateInspector(list(reversed(run.checkpoints)))  # order comes from the saved steps, not the list
    assert gi.steps == [2, 4, 6]
    table = gi.gate_table()
    assert table.shape == (3, len(run.model.gate_values()), 2)
    for s, path in enumerate(sorted(run.checkpoints)):
        want = load_checkpoint(path).gate_values()
        assert gi.layers == [g["layer"] for g in want]
        assert np.allclose(table[s], [[g["attn"], g["ff"]] for g in want], atol=1e-7)
    assert np.allclose(table[-1], [[g["attn"], g["ff"]] for g in run.model.gate_values()], atol=1e-7)  # the live model
    assert np.all(table != 0) and not np.allclose(table[0], table[-1])  # trained: gates moved
    gi.slider.value = 1
    assert gi.step == 4 and np.array_equal(gi.shown, table[1]) and gi.image.value[:4] == b"\x89PNG"
    assert GateInspector(run.folder / "checkpoints").steps == [2, 4, 6]  # a run folder works too


def test_gate_reader_refuses_pickles(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="pickle"):
        checkpoint_gates(tmp_path / "bad.safetensors")


def test_attention_explorer_equals_model_cross_attention(run):
    ax = AttentionExplorer(run.model, run.episodes[:2], cache=run.cache)
    model_attn = run.model.cross_attention(ax.batch)
    allowed = media_attention_mask(ax.batch["input_ids"], run.model.token_ids["audio"], ax.batch["media_mask"])
    for b, j, h in [(0, 0, 0), (1, 3, 2), (0, 2, 3)]:
        ax.select(example=b, block=j, head=h)
        rows = ax.batch["attention_mask"][b].nonzero().flatten()
        mm = ax.batch["media_mask"][b]
        assert len(ax.window_slots) == int(mm.sum()) and len(ax.token_rows) == len(rows)
        want = model_attn[j][b, h][rows][:, ax.window_slots]
        assert np.allclose(ax.matrix, want.numpy(), atol=1e-6)
        ok = allowed[b][rows][:, ax.window_slots].numpy()
        assert np.array_equal(ax.allowed, ok) and np.all(ax.matrix[~ok] == 0)
        sums = ax.matrix.sum(1)
        assert np.allclose(sums[ok.any(1)], 1, atol=1e-5) and np.all(sums[~ok.any(1)] == 0)
        first_audio = int((ax.batch["input_ids"][b][rows] == run.model.token_ids["audio"]).nonzero()[0])
        assert not ok[:first_audio].any() and ok[first_audio:].any(1).all()  # no audio before the first <audio>
    # a token's bars are its row of the heatmap
    t = ax.token_pick.options[-1][1]
    ax.select(token=t)
    assert np.array_equal(ax.token_weights, ax.matrix[ax.token_rows.index(t)]) and ax.bars.value[:4] == b"\x89PNG"
    # different examples and heads really are different pictures
    ax.select(example=0, block=3, head=0)
    m0 = ax.matrix.copy()
    ax.select(head=1)
    assert not np.allclose(m0, ax.matrix)


def png_height(png: bytes) -> int:
    return int.from_bytes(png[20:24], "big")  # the IHDR height field


def test_attention_explorer_caps_long_prompts_and_filters_tokens(run):
    """A prompt longer than max_rows draws max_rows rows (a figure of bounded height); the filter and the pager pick
    them."""
    full = AttentionExplorer(run.model, run.episodes[:2], cache=run.cache, max_rows=10_000)
    ax = AttentionExplorer(run.model, run.episodes[:2], cache=run.cache, max_rows=8)
    n = len(ax.token_rows)
    assert n > 8 and ax.shown_rows == list(range(8)) and len(full.shown_rows) == n
    assert png_height(ax.heatmap.value) <= (1.5 + 0.14 * 8) * 80 + 1 < png_height(full.heatmap.value)
    assert f"of {n} (" in ax.rows_note.value and np.array_equal(ax.matrix, full.matrix)  # the data stay whole
    ax.first_row.value = 5
    assert ax.shown_rows == list(range(5, 13))
    ax.token_filter.value = "audio"  # only the <audio> tokens
    want = [i for i, label in enumerate(ax.token_labels) if "audio" in label.split(":", 1)[1].lower()]
    assert want and ax.shown_rows == want[:8] and ax.first_row.max == len(want) - 1
    ax.token_filter.value = "(["  # a half-typed regex matches literally, no error
    assert ax.shown_rows == [] and ax.heatmap.value[:4] == b"\x89PNG"


def test_window_labels_follow_hop_and_window():
    mask = torch.tensor([[True, True, False], [True, False, False]])
    slots, labels = window_labels(mask, window_s=7.0, hop_s=1.75)
    assert slots == [0, 1, 3] and labels == ["a0 · 0–7 s", "a0 · 1.75–8.75 s", "a1 · 0–7 s"]


def test_to_bertviz_matches_head_view_format(run):
    ax = AttentionExplorer(run.model, episodes_batch(run.model, run.episodes[1:3], cache=run.cache))
    out = ax.to_bertviz(example=1)
    assert set(out) == {"cross_attention", "encoder_tokens", "decoder_tokens"}
    n_tok, n_win = int(ax.batch["attention_mask"][1].sum()), int(ax.batch["media_mask"][1].sum())
    assert len(out["decoder_tokens"]) == n_tok and len(out["encoder_tokens"]) == n_win
    model_attn = run.model.cross_attention(ax.batch)
    rows = ax.batch["attention_mask"][1].nonzero().flatten()
    slots = [a * ax.batch["media_mask"].shape[2] + i for a, i in ax.batch["media_mask"][1].nonzero().tolist()]
    assert len(out["cross_attention"]) == len(run.model.xattn_layers())
    for got, full in zip(out["cross_attention"], model_attn):
        assert got.shape == (1, run.model.config.xattn_heads, n_tok, n_win)
        assert torch.allclose(got[0], full[1][:, rows][:, :, slots], atol=1e-6)


def test_retrieval_browser_neighbours_equal_index_search(run):
    val = [it for it in run.items if it.split != "train"]
    rb = RetrievalBrowser(run.index, val, tokenizer=run.model.tokenizer, k=3)
    for query in val[:2]:
        for k in (1, 3):
            rb.k_pick.value = k
            rb.pick.value = query.id
            want = run.index.search([query], k)[0]
            assert [(n.item.id, n.score) for n in rb.neighbours] == [(n.item.id, n.score) for n in want]
            assert [s.id for s in rb.episode.shots] == [n.item.id for n in reversed(want)]  # most similar last
            assert len(rb.results.children) == k and rb.rendered.audios[-1].id == query.id
            labels = [l for l in rb.rendered.labels if l != -100]
            assert run.model.tokenizer.decode(labels).count(query.answer) >= 1 and "#ffd54f" in rb.prompt.value
    card = rb.results.children[0]
    png, player = card.children[0], card.children[1]
    wav, sr = sf.read(io.BytesIO(player.value), dtype="float32")
    assert png.value[:4] == b"\x89PNG" and sr == 16000
    assert np.allclose(wav, load_audio(rb.neighbours[0].item.audio, 16000), atol=1 / 16000)  # the neighbour's own audio


def test_retrieval_browser_upload_embeds_and_searches(run):
    val = [it for it in run.items if it.split != "train"]
    rb = RetrievalBrowser(run.index, val, tokenizer=run.model.tokenizer, k=2)
    data = Path(val[2].audio).read_bytes()
    rb.upload.value = (
        {
            "name": "upload.wav",
            "type": "audio/wav",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime.now(timezone.utc),
        },
    )
    assert rb.query.id == "upload:upload.wav" and Path(rb.query.audio).read_bytes() == data
    want = run.index.search([val[2]], 2)[0]
    assert [n.item.id for n in rb.neighbours] == [n.item.id for n in want]
    assert np.allclose([n.score for n in rb.neighbours], [n.score for n in want], atol=1e-5)


def _report(path, shift):
    "A FewShotReport with model rows (and a knn row, which the explorer must not draw) written as JSON."
    from audioflamingo_lab.fewshot_report import FewShotReport

    res = [{"shots": 0, "select": "none", "score": 0.2 + shift, "n": 10, "ci95": [0.05, 0.5]}]
    for s, base in (("random", 0.3), ("rag", 0.5)):
        res += [
            {
                "shots": k,
                "select": s,
                "score": base + 0.1 * i + shift,
                "n": 10,
                "ci95": [base - 0.2, base + 0.2 + 0.1 * i],
            }
            for i, k in enumerate((1, 2, 4))
        ]
    per = {
        f"{r['select']}/{r['shots']}": {
            "dog": {"accuracy": r["score"], "n": 5},
            "cat": {"accuracy": 1 - r["score"], "n": 5},
        }
        for r in res
    }
    rows = [{**r, "condition": "model", "kind": "model"} for r in res] + [
        {"shots": 4, "select": "rag", "score": 0.9, "n": 10, "ci95": [0.9, 0.9], "condition": "knn", "kind": "baseline"}
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    FewShotReport("accuracy", "classification", "test", "strict", rows=rows, per_class=per).to_json(path)
    return res


def test_fewshot_explorer_points_equal_reports(tmp_path):
    a, b = tmp_path / "a" / "report.json", tmp_path / "b" / "report.json"
    results = {"a": _report(a, 0.0), "b": _report(b, 0.05)}
    fe = FewShotExplorer([a, tmp_path / "b"])
    assert list(fe.reports) == ["a", "b"] and fe.classes == ["cat", "dog"]
    for name, res in results.items():
        zero = [r for r in res if r["select"] == "none"]
        for s in ("random", "rag"):
            want = [(r["shots"], r["score"], *r["ci95"]) for r in zero + [r for r in res if r["select"] == s]]
            assert fe.points[(name, s)] == want
    assert set(fe.points) == {(n, s) for n in "ab" for s in ("random", "rag")}
    fe.report_pick.value = ("b",)
    assert set(fe.points) == {("b", "random"), ("b", "rag")}
    fe.class_pick.value = "cat"
    res = results["b"]
    want = sorted((r["shots"], 1 - r["score"], 5) for r in res if r["select"] in ("none", "rag"))
    assert fe.class_points[("b", "rag")] == want
    fe.class_pick.value = ALL_CLASSES
    assert (
        fe.class_bars[("b", "rag/4", "dog")] == [r["score"] for r in res if r["shots"] == 4 and r["select"] == "rag"][0]
    )


def test_tiny_run_trains_with_lightning_and_its_checkpoints_carry_the_gates(run):
    "One training loop: the widgets' example run is FlamingoModule + lightning.Trainer, saving loadable checkpoints."
    import inspect
    from audioflamingo_lab import widget_runs
    from audioflamingo_lab.checkpoint import checkpoint_info

    assert not hasattr(widget_runs, "_batches") and "L.Trainer(" in inspect.getsource(widget_runs.tiny_trained_run)
    assert [p.name for p in run.checkpoints] == [
        "step00002.safetensors",
        "step00004.safetensors",
        "step00006.safetensors",
    ]
    for path, step in zip(run.checkpoints, (2, 4, 6)):
        extra = checkpoint_info(path)["extra"]
        assert extra["step"] == step and isinstance(extra["loss"], float) and extra["loss"] > 0
        assert list(checkpoint_gates(path)) == [g["layer"] for g in run.model.gate_values()]
