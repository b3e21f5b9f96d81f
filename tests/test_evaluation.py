import math
from collections import Counter
import numpy as np
import pytest
from audioflamingo_lab.evaluation import (
    normalize_answer,
    match_answer,
    match_option,
    MATCH_THRESHOLD,
    accuracy,
    nearest_option,
    embedding_similarity,
    ptb_tokenize,
    cider_d,
    multilabel_f1,
    label_counts,
    f1_from_counts,
    wilson_interval,
    bootstrap_interval,
    score_predictions,
    metric_for_task,
)
from audioflamingo_lab.core import Item


# ---- AF1 matching protocol --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred,answer",
    [("Dogs barking.", "dog barking"), ("RAIN;", "rain"), ("car, horns", "car horn"), ("happily", "happily.")],
)
def test_exact_after_stem_and_punctuation(pred, answer):
    assert match_answer(pred, answer)


def test_nearest_option_decides_when_not_exact():
    opts = ["dog barking", "rain", "siren"]
    assert match_option("a dog barks loudly", opts) == "dog barking"
    assert match_answer("a dog barks loudly", "dog barking", opts)
    assert not match_answer("a dog barks loudly", "rain", opts)
    assert not match_answer("a dog barks loudly", "dog barking")  # exact only without options
    assert nearest_option("sirens wailing", opts) == "siren"


def test_pluggable_embedding_similarity():
    # a bag-of-words "embedding" over a fixed vocabulary: the nearest option by cosine is the one sharing words
    vocab = ["dog", "bark", "rain", "siren", "loud"]
    encode = lambda texts: np.array([[t.split().count(v) for v in vocab] for t in texts], float)
    sim = embedding_similarity(encode)
    assert nearest_option("loud bark", ["rain", "dog bark"], sim) == "dog bark"
    assert match_answer("loud bark", "dog bark", ["rain", "dog bark"], similarity=sim, threshold=0.4)  # its own scale
    assert match_answer("loud bark", "dog bark", ["rain", "dog bark"], similarity=sim, matching="af1")


def test_accuracy_and_errors():
    assert accuracy(["rain", "x"], ["rain", "siren"]) == 0.5
    with pytest.raises(ValueError, match="2 predictions for 1"):
        accuracy(["a", "b"], ["a"])


# ---- CIDEr-D ----------------------------------------------------------------------------------------------------
def cider_d_brute_force(cands, refs, n_max=4, sigma=6.0):
    "CIDEr-D from its formula (Vedantam et al. 2015, as in coco-caption): raw tf x idf, clipped cosine, length penalty."
    grams = lambda toks, n: Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    cands = [c.split() for c in cands]
    refs = [[r.split() for r in rs] for rs in refs]
    N = len(cands)
    scores = []
    for c, rs in zip(cands, refs):
        per_n = []
        for n in range(1, n_max + 1):
            df = Counter(g for rs2 in refs for g in set().union(*[grams(r, n) for r in rs2]))
            vec = lambda toks: {g: tf * (math.log(N) - math.log(max(1.0, df[g]))) for g, tf in grams(toks, n).items()}
            norm = lambda v: math.sqrt(sum(x * x for x in v.values()))
            gc, total = vec(c), 0.0
            for r in rs:
                gr = vec(r)
                dot = sum(min(v, gr.get(g, 0.0)) * gr.get(g, 0.0) for g, v in gc.items())
                cos = dot / (norm(gc) * norm(gr)) if norm(gc) and norm(gr) else 0.0
                total += cos * math.exp(-((len(c) - len(r)) ** 2) / (2 * sigma**2))
            per_n.append(total / len(rs))
        scores.append(10 * sum(per_n) / n_max)
    return float(np.mean(scores)), np.array(scores)


def test_cider_d_hand_computed_value():
    # disjoint vocabularies -> every idf = log 2 and each cosine is 1 where the n-gram order exists: 10*3/4, 10*2/4
    score, per = cider_d(["A dog barks.", "Rain falls"], [["a dog barks"], ["rain falls"]])
    assert np.allclose(per, [7.5, 5.0]) and math.isclose(score, 6.25)


def test_cider_d_matches_brute_force():
    cands = [
        "a dog barks in the distance",
        "rain falls on a tin roof",
        "a man speaks while a car passes by",
        "birds chirp",
    ]
    refs = [
        ["a dog is barking far away", "dog barks in the distance"],
        ["heavy rain falls on a metal roof"],
        ["a man talks as a car drives by", "a car passes by and a man speaks", "someone speaks"],
        ["birds are chirping loudly", "many birds chirp in the trees"],
    ]
    want, want_per = cider_d_brute_force(
        [ptb_tokenize(c) for c in cands], [[ptb_tokenize(r) for r in rs] for rs in refs]
    )
    got, got_per = cider_d(cands, refs)
    assert np.allclose(got_per, want_per) and math.isclose(got, want, rel_tol=1e-9)
    assert 0 < got < 10


def test_ptb_tokenize_like_coco():
    assert ptb_tokenize("A dog's barking, loudly (twice)!") == "a dog 's barking loudly twice"
    assert ptb_tokenize("It doesn't stop.") == "it does n't stop"


def test_cider_d_errors():
    with pytest.raises(ValueError, match="item 1 has no reference"):
        cider_d(["a", "b"], [["a"], []])


# ---- F1 ---------------------------------------------------------------------------------------------------------
def test_f1_against_sklearn():
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    preds = ["dog, rain", "siren", "dog", "rain, siren, cat", ""]
    golds = ["dog, rain", "dog", "dog, siren", "rain", "siren"]
    classes = sorted({l.strip() for g in golds for l in g.split(",")})
    mlb = MultiLabelBinarizer(classes=classes + ["cat"])
    y = mlb.fit_transform([[l.strip() for l in g.split(",") if l.strip()] for g in golds])
    p = mlb.transform([[l.strip() for l in g.split(",") if l.strip()] for g in preds])
    assert math.isclose(multilabel_f1(preds, golds, "micro"), f1_score(y, p, average="micro"))
    assert math.isclose(
        multilabel_f1(preds, golds, "macro"),
        f1_score(y, p, average="macro", labels=list(range(len(classes))), zero_division=0),
    )


def test_f1_labels_are_normalized():
    assert multilabel_f1(["Dogs, Rain."], ["dog, rain"]) == 1.0
    counts, classes = label_counts(["dog, cat"], ["dog"])
    assert classes == ["dog"] and counts.sum(0).tolist() == [[1, 0, 0], [0, 1, 0]]  # cat is an extra false positive


# ---- intervals --------------------------------------------------------------------------------------------------
def test_wilson_contains_point_and_narrows():
    for k, n in [(0, 5), (3, 10), (10, 10)]:
        lo, hi = wilson_interval(k, n)
        assert lo <= k / n <= hi
    widths = [np.subtract(*wilson_interval(n * 6 // 10, n)[::-1]) for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2] > 0


def test_wilson_of_a_fractional_count_is_scipys_formula():
    "A sum of per-query means is fractional; its interval meets scipy's at the whole counts on either side."
    for k, n in [(0, 5), (3, 10), (60, 120), (10, 10)]:
        for nudge in (1e-9, -1e-9):
            if 0 <= k + nudge <= n:
                assert np.allclose(wilson_interval(k + nudge, n), wilson_interval(k, n), atol=1e-6)
    lo, hi = wilson_interval(55.5, 60)
    assert wilson_interval(55, 60)[0] < lo < wilson_interval(56, 60)[0] and lo < 55.5 / 60 < hi


def test_bootstrap_contains_point_narrows_and_is_seeded():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=20), rng.normal(size=2000)
    for x in (small, large):
        lo, hi = bootstrap_interval(x)
        assert lo <= x.mean() <= hi
    assert np.subtract(*bootstrap_interval(large)[::-1]) < np.subtract(*bootstrap_interval(small)[::-1])
    assert bootstrap_interval(small, seed=3) == bootstrap_interval(small, seed=3)


def test_f1_bootstrap_via_score():
    items = [
        Item(id=str(i), audio=None, task="tagging", answer=a) for i, a in enumerate(["dog, rain", "dog", "siren"] * 5)
    ]
    s = score_predictions("f1_micro", ["dog", "dog", "siren"] * 5, items)
    assert s.metric == "f1_micro" and s.n == 15 and s.ci95[0] <= s.score <= s.ci95[1]


def test_score_by_task():
    assert metric_for_task("captioning") == "cider_d" and metric_for_task("aqa") == "accuracy"
    items = [
        Item(id="a", audio=None, task="classification", answer="rain", options=["rain", "siren"]),
        Item(id="b", audio=None, task="classification", answer="siren", options=["rain", "siren"]),
    ]
    s = score_predictions("accuracy", ["rainfall", "rain"], items)
    assert s.score == 0.5 and s.per_item == [1, 0] and s.ci95 == wilson_interval(1, 2)
    with pytest.raises(ValueError, match="unknown metric"):
        score_predictions("bleu", ["a", "b"], items)


# ---- strict matching ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("matching", ["strict", "af1"])
def test_empty_answer_is_always_wrong(matching):
    opts = ["dog barking", "rain", "siren"]
    for empty in ("", "   ", ". ,;"):
        assert not match_answer(empty, "rain", opts, matching=matching) and match_option(empty, opts, matching) is None
    s = score_predictions("accuracy", [""], [Item(id="a", audio=None, answer="rain", options=opts)], matching=matching)
    assert s.score == 0 and s.matched == [None]


def test_unrelated_answer_scores_nothing_under_strict_matching():
    opts = ["machinery", "rain", "siren"]
    assert not match_answer("chirp", "machinery", opts)  # shares only the trigram "chi"
    assert match_answer("chirp", "machinery", opts, matching="af1")  # the paper's protocol maps it anyway
    s = score_predictions(
        "accuracy",
        ["chirp", "sirens", "rainfall"],
        [Item(id=str(i), audio=None, answer=a, options=opts) for i, a in enumerate(["machinery", "siren", "rain"])],
    )
    assert s.per_item == [0, 1, 1] and s.matched == [None, "siren", "rain"] and s.exact == [0, 1, 0]


def test_threshold_is_what_decides():
    from audioflamingo_lab.evaluation import ngram_similarity, normalize_answer

    sim = ngram_similarity(normalize_answer("sirens wailing"), normalize_answer("siren"))
    assert match_option("sirens wailing", ["siren", "rain"], threshold=sim) == "siren"
    assert match_option("sirens wailing", ["siren", "rain"], threshold=sim + 1e-6) is None
    with pytest.raises(ValueError, match="matching must be one of"):
        match_option("a", ["a"], matching="loose")
