"Few-shot evaluation: stand-in models against the baselines and controls, the report, the output folder, seeds."

import json, os, random, zlib
from pathlib import Path
from types import SimpleNamespace as NS
import numpy as np
import pytest, torch
from audioflamingo_lab.core import Item, Episode
from audioflamingo_lab.template import build_tiny_tokenizer, SEP
from audioflamingo_lab.evaluation import wilson_interval
from audioflamingo_lab.fewshot import evaluate, generate_answers, FewShotValidation
from audioflamingo_lab.fewshot_controls import LabelCopier, AudioOracle, knn_label, gates_closed
from audioflamingo_lab.fewshot_controls import without_query_audio, shuffled_shot_audio
from audioflamingo_lab.fewshot_report import FewShotReport
from audioflamingo_lab.flamingo import build_model
from audioflamingo_lab.audio_codes import codebook_fitted_on, vote

CLASSES = ["bell", "dog", "rain", "siren", "wind"]


class OneHotCache:
    "One window per clip: the one-hot vector of its class (the file name starts with it). Counts calls."

    def __init__(self):
        self.calls = 0

    def get(self, path, start=None, duration=None):
        self.calls += 1
        return torch.eye(len(CLASSES))[CLASSES.index(Path(path).stem.split("-")[0])][None], torch.tensor([True])


class SameClassIndex:
    "A perfect retriever: train clips of the query's class first."

    def __init__(self, pool):
        self.pool = pool

    def search(self, queries, k):
        return [
            [
                NS(item=it, score=float(it.answer == q.answer))
                for it in sorted(self.pool, key=lambda it: it.answer != q.answer)
                if it.id != q.id
            ][:k]
            for q in queries
        ]


def hear(windows, mask):
    return CLASSES[int(windows[0].argmax())]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(save_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def items():
    "5 classes: 5 train clips and 4 test clips each (hand-built, no audio files needed with the one-hot cache)."
    return [
        Item(
            f"{sp}{i}",
            f"/toy/{CLASSES[i % 5]}-{sp}{i}.wav",
            task="classification",
            prompt="what is it?",
            answer=CLASSES[i % 5],
            options=CLASSES,
            split=sp,
        )
        for sp, n in (("train", 25), ("test", 20))
        for i in range(n)
    ]


def run(model, items, tmp_path, name, **kw):
    args = dict(
        shots=[0, 1, 4],
        select=["random", "rag", "balanced"],
        index=SameClassIndex(items[:25]),
        ways=5,
        cache=OneHotCache(),
        seeds=[0, 1],
        controls=["no-query-audio", "shuffled-shot-audio"],
        batch_size=8,
    )
    return evaluate(model, items, out=tmp_path / name, **{**args, **kw})


def test_a_label_copier_scores_the_knn_row_and_loses_nothing_without_audio(tok, items, tmp_path):
    rep = run(LabelCopier(tok), items, tmp_path, "copier")
    for s, k in [("random", 1), ("random", 4), ("rag", 1), ("rag", 4), ("balanced", 1), ("balanced", 4)]:
        assert rep.row(s, k)["score"] == rep.row(s, k, "knn")["score"], (s, k)
    assert rep.row("rag", 4)["score"] == 1.0  # retrieved shots carry the label: copying "wins"
    for s in ("random", "rag", "balanced"):
        for control in ("no-query-audio", "shuffled-shot-audio"):
            assert rep.row(s, 4, control)["score"] == rep.row(s, 4)["score"], (s, control)
    assert rep.row("none", 0)["score"] == 0.0 and rep.row("none", 0)["no_match"] == 1.0  # "nothing" names no option


def test_an_audio_oracle_ignores_shot_audio_and_falls_to_chance_without_the_query(tok, items, tmp_path):
    rep = run(AudioOracle(tok, hear), items, tmp_path, "oracle", ways=3)
    assert all(r["score"] == 1.0 for r in rep.rows if r["condition"] == "model")
    for s in ("random", "rag", "balanced"):
        assert rep.row(s, 4, "shuffled-shot-audio")["score"] == 1.0
    row, chance = rep.row("balanced", 4, "no-query-audio"), rep.row("balanced", 4, "chance")
    assert chance["score"] == pytest.approx(1 / 3) and row["ci95"][0] <= chance["score"] <= row["ci95"][1]
    assert rep.row("balanced", 4)["score"] > row["ci95"][1]  # listening is visible: the control falls out of reach


def test_controls_on_the_first_draw_only(tok, items, tmp_path):
    "control_draws=1 runs the controls on seed 0 only and leaves the model rows as they were."
    full = run(AudioOracle(tok, hear), items, tmp_path, "full", ways=3)
    lean = run(AudioOracle(tok, hear), items, tmp_path, "lean", ways=3, control_draws=1)
    lines = lambda name, c: [
        x for x in map(json.loads, open(tmp_path / name / "predictions.jsonl")) if x["condition"] == c
    ]
    assert {x["seed"] for x in lines("lean", "no-query-audio")} == {0}
    assert {x["seed"] for x in lines("full", "no-query-audio")} == {0, 1}
    key = lambda x: (x["select"], x["shots"], x["seed"], x["id"], x["prediction"])
    assert sorted(map(key, lines("lean", "model"))) == sorted(map(key, lines("full", "model")))
    assert lean.row("balanced", 4, "no-query-audio")["score"] < lean.row("balanced", 4)["score"]
    assert lean.meta["control_draws"] == 1 and full.meta["control_draws"] is None


def test_empty_and_unrelated_answers_score_zero(tok, items, tmp_path):
    class Says(LabelCopier):
        def __init__(self, tok, word):
            super().__init__(tok)
            self.word = word

        def answer(self, text, media, mask):
            return self.word

    for word in ("", "chirp"):
        rep = run(
            Says(tok, word), items, tmp_path, f"says-{word or 'nothing'}", controls=[], select=["random"], seeds=[0]
        )
        assert (
            all(r["score"] == 0 for r in rep.rows if r["condition"] == "model")
            and rep.row("none", 0)["no_match"] == 1.0
        )


def test_report_files_rows_and_round_trip(tok, items, tmp_path):
    rep = run(LabelCopier(tok), items, tmp_path, "files", checkpoint="ckpt.safetensors")
    out = tmp_path / "files"
    assert FewShotReport.from_json(out / "report.json") == rep and rep.meta["checkpoint"] == "ckpt.safetensors"
    assert rep.matching == "strict" and rep.meta["seeds"] == [0, 1] and rep.meta["prompts"][0]["text"].endswith(SEP)
    r = rep.row("random", 4)
    assert r["seeds"] == 2 and len(r["per_seed"]) == 2 and r["n"] == 20 and r["kind"] == "model"
    assert r["spread"] == pytest.approx(abs(r["per_seed"][0] - r["per_seed"][1]) / 2**0.5)
    lines = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    one = next(l for l in lines if l["select"] == "rag" and l["shots"] == 4 and l["condition"] == "model")
    random4 = [l for l in lines if (l["select"], l["shots"], l["condition"]) == ("random", 4, "model")]
    correct = sum(l["score"] for l in random4) / 2  # each query's mean over its two draws, summed
    assert len({l["id"] for l in random4}) == 20 and r["ci95"] == list(wilson_interval(correct, 20))  # not 40 trials
    assert {"id", "seed", "prediction", "matched", "answer", "score", "shot_ids", "shot_labels"} <= one.keys()
    assert len(one["shot_ids"]) == 4 and one["matched"] == one["prediction"]
    assert rep.row("balanced", 1)["ways"] == 5 and rep.row("rag", 4)["order"] == "shuffle"
    assert (out / "fewshot.png").read_bytes()[:4] == b"\x89PNG" and "knn" in rep.table()
    assert set(rep.curves()) == {"random", "rag", "balanced"} and rep.curves()["rag"][0]["shots"] == 0


def test_zero_shot_episodes_are_generated_once_across_seeds(tok, items, tmp_path):
    calls = []

    class Counting(LabelCopier):
        def generate(self, input_ids, attention_mask, **kw):
            calls.append(input_ids.shape[0])
            return super().generate(input_ids, attention_mask, **kw)

    run(Counting(tok), items, tmp_path, "memo", select=[], shots=[0], controls=[], seeds=[0, 1, 2])
    assert sum(calls) == 20  # 20 queries, not 60


def test_output_folder_is_checked_before_any_work(tok, items, tmp_path):
    out = tmp_path / "user"
    out.mkdir()
    (out / "predictions.jsonl").write_text("mine")
    model = LabelCopier(tok)
    with pytest.raises(FileExistsError, match="already holds predictions.jsonl"):
        evaluate(model, items, shots=[0], select=[], out=out, cache=OneHotCache())
    assert (out / "predictions.jsonl").read_text() == "mine"
    if os.geteuid() != 0:  # root writes anywhere: the check cannot fail there
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cache = OneHotCache()
        with pytest.raises(PermissionError, match="cannot write"):
            evaluate(model, items, shots=[0], select=[], out=ro, cache=cache)
        assert cache.calls == 0


def test_errors_name_the_problem(tok, items, tmp_path):
    model = LabelCopier(tok)
    with pytest.raises(ValueError, match="needs index="):
        evaluate(model, items, shots=[1], select=["rag"], out=tmp_path / "a", cache=OneHotCache())
    with pytest.raises(ValueError, match="unknown controls"):
        evaluate(model, items, shots=[1], select=["random"], out=tmp_path / "b", cache=OneHotCache(), controls=["mute"])
    with pytest.raises(ValueError, match="select must be among"):
        evaluate(model, items, shots=[1], select=["best"], out=tmp_path / "c", cache=OneHotCache())
    cap = items + [Item(id="c", audio=None, task="captioning", answer="a dog", split="test")]
    with pytest.raises(ValueError, match="mix tasks"):
        evaluate(model, cap, shots=[0], out=tmp_path / "d", cache=OneHotCache())
    with pytest.raises(ValueError, match="no val items"):
        evaluate(model, items[:25], shots=[0], out=tmp_path / "e", cache=OneHotCache())


class VectorIndex(SameClassIndex):
    "SameClassIndex that also holds unit clip vectors: the pool's (`vectors`) and any item's (`query_vectors`)."

    def __init__(self, pool, rows):
        super().__init__(pool)
        self.rows, self.vectors = rows, np.stack([rows[it.id] for it in pool])

    def query_vectors(self, items):
        return np.stack([self.rows[it.id] for it in items])


def test_knn_centred_is_the_vote_on_pool_centred_vectors(tok, items, tmp_path):
    rng = np.random.default_rng(0)
    lean, directions = rng.normal(size=16) * 3, rng.normal(size=(5, 16))  # every clip shares the lean
    raw = {it.id: lean + directions[CLASSES.index(it.answer)] + rng.normal(size=16) * 1.5 for it in items}
    unit = {i: (v / np.linalg.norm(v)).astype(np.float32) for i, v in raw.items()}
    index = VectorIndex(items[:25], unit)
    kw = dict(index=index, shots=[1], select=["balanced"], seeds=[0], controls=[])
    rep = run(LabelCopier(tok), items, tmp_path, "centred", **kw)
    mean = index.vectors.mean(0)
    centred = {i: (v - mean) / np.linalg.norm(v - mean) for i, v in unit.items()}
    lines = [json.loads(x) for x in (tmp_path / "centred" / "predictions.jsonl").read_text().splitlines()]
    votes = [x for x in lines if x["condition"] == "knn-centred"]
    assert len(votes) == 20 and rep.row("balanced", 1, "knn-centred")["n"] == 20
    for x in votes:  # one shot per class: the vote is the most similar shot after centring (brute force)
        sims = [centred[s] @ centred[x["id"]] for s in x["shot_ids"]]
        assert x["prediction"] == x["shot_labels"][int(np.argmax(sims))], x["id"]
    assert rep.meta["knn_centre"] == "mean of the index's pool vectors"
    assert (
        run(LabelCopier(tok), items, tmp_path, "no-vectors", **{**kw, "index": SameClassIndex(items[:25])}).row(
            "balanced", 1, "knn-centred"
        )
        is None
    )  # an index without vectors: no centred row


class ClipCache:
    "One window per clip of the model's width: a fixed random vector per file name."

    def __init__(self, dim):
        self.dim = dim

    def get(self, path, start=None, duration=None):
        g = torch.Generator().manual_seed(zlib.crc32(Path(path).name.encode()))
        return torch.randn(1, self.dim, generator=g), torch.tensor([True])


def test_code_fits_answer_the_vote_of_each_fits_answers(items, tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", audio_codes=2, code_gate_init=4.0).eval()
    cache = ClipCache(model.config.encoder_dim)
    controls = ["no-query-audio", "gates-off"]
    kw = dict(shots=[1], select=["balanced"], ways=3, seeds=[0], cache=cache, max_new_tokens=4, readout="options")
    kw.update(controls=controls, limit=9)
    pool = [it for it in items if it.split == "train"]

    def answers(folder):
        lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
        return {(x["condition"], x["id"]): x["prediction"] for x in lines if x["condition"] in ("model", *controls)}

    single = []
    for fit in (0, 1, 2):
        with codebook_fitted_on(model, pool, cache, fit):
            evaluate(model, items, out=tmp_path / f"fit{fit}", **kw)
        single.append(answers(tmp_path / f"fit{fit}"))
    voted = evaluate(model, items, out=tmp_path / "vote", code_fits=[0, 1, 2], **kw)
    got = answers(tmp_path / "vote")
    assert len(got) == 27 and got == {key: vote([s[key] for s in single]) for key in got}
    assert voted.meta["code_fits"] == [0, 1, 2] and not model.codebook.fitted  # the model's own (unfitted) book back
    assert any(len({s[key] for s in single}) > 1 for key in got)  # the fits disagree somewhere: the vote decides


def test_knn_ties_go_to_the_most_similar_shot():
    shots = [Item(f"s{i}", None, answer=a) for i, a in enumerate(["dog", "rain", "rain", "dog"])]
    ep = Episode(Item("q", None, answer="dog"), shots)
    assert knn_label(ep, [0.9, 0.1, 0.2, 0.3]) == "dog" and knn_label(ep, [0.1, 0.95, 0.2, 0.3]) == "rain"
    assert knn_label(ep) == "dog"  # without similarities: the later shot


def test_controls_change_only_what_they_say(items):
    pool = items[:25]
    ep = Episode(items[25], [pool[0], pool[1], pool[2]], "balanced")
    ep = Episode(Item(**{**items[25].__dict__, "options": ["bell", "dog", "rain"]}), ep.shots, "balanced")
    nq = without_query_audio(ep, pool, random.Random(0))
    assert nq.query.answer == ep.query.answer and nq.shots == ep.shots
    assert Path(nq.query.audio).stem.split("-")[0] in ("siren", "wind")  # a class that is not on the page
    sh = shuffled_shot_audio(ep, random.Random(0))
    assert [s.answer for s in sh.shots] == [s.answer for s in ep.shots]
    assert all(a.audio != b.audio for a, b in zip(sh.shots, ep.shots)) and sorted(s.audio for s in sh.shots) == sorted(
        s.audio for s in ep.shots
    )


def test_gates_off_gives_the_plain_lm_and_restores_the_gates():
    from audioflamingo_lab.flamingo import build_model

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    for _, layer in model.xattn_layers():
        with torch.no_grad():
            layer.xattn.alpha_attn.fill_(0.7), layer.xattn.alpha_ff.fill_(-0.4)
    ids = torch.tensor([[model.token_ids["bos"], model.token_ids["audio"], 5, 6, 7]])
    emb, mask = torch.randn(1, 1, 2, model.config.encoder_dim), torch.ones(1, 1, 2, dtype=torch.bool)
    with torch.no_grad():
        open_logits = model(ids, audio_embeds=emb, media_mask=mask).logits
        with gates_closed(model):
            closed = model(ids, audio_embeds=emb, media_mask=mask).logits
            plain = model.lm(input_ids=ids).logits
        again = model(ids, audio_embeds=emb, media_mask=mask).logits
    assert torch.allclose(closed, plain, atol=1e-5) and not torch.allclose(open_logits, plain, atol=1e-3)
    assert torch.equal(again, open_logits) and all(v["attn"] > 0.5 for v in model.gate_values())


def test_generate_answers_captions_cider(tok, tmp_path):
    from audioflamingo_lab.fewshot import evaluate as ev

    caps = [
        Item(id=f"c{i}", audio=None, task="captioning", prompt="describe the sound.", answer=a, split=sp)
        for i, (a, sp) in enumerate(
            [("a dog barks", "train"), ("rain falls", "train"), ("a dog barks loudly", "test"), ("heavy rain", "test")]
        )
    ]
    rep = ev(LabelCopier(tok), caps, shots=[0, 1], select=["random"], out=tmp_path / "cap", batch_size=2)
    assert rep.metric == "cider_d" and rep.row("random", 1)["ci95"][0] <= rep.row("random", 1)["score"]
    assert not [r for r in rep.rows if r["kind"] == "baseline"]  # knn/chance are classification rows


def test_per_class_curves_are_read_by_the_report_itself():
    "Curves per class come from FewShotReport, not from key parsing in the widgets."
    from audioflamingo_lab import widgets
    from audioflamingo_lab.fewshot_report import FewShotReport

    report = FewShotReport(
        "accuracy",
        "classification",
        "test",
        "strict",
        per_class={
            "none/0": {"dog": {"accuracy": 0.5, "n": 2}},
            "rag/4": {"dog": {"accuracy": 1.0, "n": 2}},
            "rag/2": {"dog": {"accuracy": 0.5, "n": 2}},
            "balanced/1": {"cat": {"accuracy": 1.0, "n": 1}},
        },
    )
    again = FewShotReport.from_json(report.to_json())
    assert again.class_curves("dog") == {"rag": [(0, 0.5, 2), (2, 0.5, 2), (4, 1.0, 2)]}
    assert again.class_curves("cat") == {"balanced": [(1, 1.0, 1)]}
    assert list(again.largest_k_classes()) == ["rag/4"]
    assert not hasattr(widgets, "fewshot_curves") and not hasattr(widgets, "_per_class_key")


class RandomWindowCache:
    "One window per clip: a fixed random vector of `dim` for each file (a random model hears noise, not classes)."

    def __init__(self, dim):
        self.dim = dim

    def get(self, path, start=None, duration=None):
        g = torch.Generator().manual_seed(sum(map(ord, str(path))))
        return torch.randn(1, self.dim, generator=g), torch.tensor([True])


def test_the_options_readout_writes_only_the_querys_options(items, tmp_path):
    from audioflamingo_lab.flamingo import build_model

    torch.manual_seed(0)
    model = build_model("tiny").eval()  # random weights: free answers are noise
    kw = dict(shots=[0, 1], select=["balanced"], ways=3, index=SameClassIndex(items[:25]), max_new_tokens=6)
    kw.update(cache=RandomWindowCache(model.config.encoder_dim), controls=["gates-off"], batch_size=8)
    free = evaluate(model, items, out=tmp_path / "free", **kw)
    closed = evaluate(model, items, out=tmp_path / "options", readout="options", **kw)
    lines = {
        name: [json.loads(x) for x in (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
        for name in ("free", "options")
    }
    shown = lambda line, opts: line["prediction"] in opts
    assert not all(shown(x, CLASSES) for x in lines["free"] if x["condition"] in ("model", "gates-off"))
    for x in lines["options"]:
        if x["condition"] in ("model", "gates-off"):  # zero-shot: all 5 classes; balanced: the episode's 3
            assert x["prediction"] in (CLASSES if x["shots"] == 0 else set(x["shot_labels"])), x
    assert closed.meta["decoding"]["readout"] == "options" and free.meta["decoding"]["readout"] == "free"
    with pytest.raises(ValueError, match="readout must be one of"):
        evaluate(model, items, out=tmp_path / "bad", readout="closed", **kw)
    assert not (tmp_path / "bad").exists()  # refused before any work


def test_the_val_callback_reads_answers_as_asked(items, monkeypatch):
    import audioflamingo_lab.fewshot as F

    with pytest.raises(ValueError, match="readout must be one of"):
        FewShotValidation(items[25:], items[:25], OneHotCache(), ways=3, k=1, limit=6, readout="closed")
    asked = {}

    def right_answers(model, episodes, *args, **kw):  # records how the callback asks for its answers
        asked.update(kw)
        return [ep.query.answer for ep in episodes], []

    monkeypatch.setattr(F, "generate_answers", right_answers)
    model = NS(training=True, train=lambda mode=True: None)
    for readout in ("options", "free"):
        fsv = FewShotValidation(items[25:], items[:25], OneHotCache(), ways=3, k=1, limit=6, readout=readout)
        assert fsv.score(model) == 1.0 and asked["readout"] == readout
