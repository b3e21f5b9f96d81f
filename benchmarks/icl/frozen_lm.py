"""What the val sweeps of the frozen LM share: the accuracy of a model on episodes, read as the demo reads them."""

from audioflamingo_lab.evaluation import score_predictions
from audioflamingo_lab.fewshot import generate_answers


def options_accuracy(net, episodes, cache) -> float:
    "Greedy answers in batches of 8 (prompts up to 384 tokens), options readout, scored by exact label."
    answers, _ = generate_answers(
        net, episodes, cache, None, 8, 384, readout="options", max_new_tokens=12, do_sample=False, num_beams=1
    )
    return round(score_predictions("accuracy", answers, [e.query for e in episodes]).score, 3)
