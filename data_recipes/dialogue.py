"""Small templated multi-turn dialogues (task "dialogue", `turns`) made from another recipe's manifest: all items about
one audio file (its caption, its class, its questions and answers) become one conversation about that file.

With no `source`, the synthetic recipe is built first into `out/audio/synthetic` (quick when `quick`).

    python -m data_recipes.dialogue --out data/dialogue --quick
    python -m data_recipes.dialogue --out data/dialogue --source data/instruments/manifest.jsonl
"""

from __future__ import annotations
from pathlib import Path
from tqdm.auto import tqdm
from audioflamingo_lab.core import Item
from audioflamingo_lab.manifest import read_manifest, write_manifest
from data_recipes._common import MANIFEST, prepare_out, rng_for, write_readme, main

OPENERS = (
    "what can you hear?",
    "describe this recording.",
    "what is going on in this audio?",
    "can you describe the sound?",
)


def _a(text: str) -> str:
    "Add an article unless there is one or the word is a mass noun ('static', 'rain')."
    from data_recipes.synthetic import MASS_NOUNS

    if text in MASS_NOUNS:
        return text
    return text if text.split(" ")[0] in ("a", "an", "the", "some") else ("an " if text[0] in "aeiou" else "a ") + text


def dialogue_turns(items: list[Item], rng, max_turns: int = 4) -> list[dict]:
    "Turns about one audio from its items: the caption first, then its class (with a yes/no follow-up), then its Q&A."
    turns = []
    for it in (i for i in items if i.task == "captioning"):
        turns.append({"user": OPENERS[int(rng.integers(len(OPENERS)))], "assistant": it.answer.rstrip(".") + "."})
        break
    for it in (i for i in items if i.task == "classification"):
        turns.append({"user": it.prompt, "assistant": f"it sounds like {_a(it.answer)}."})
        others = [o for o in it.options if o != it.answer]
        if others and rng.uniform() < 0.5:
            wrong = others[int(rng.integers(len(others)))]
            turns.append(
                {
                    "user": f"are you sure it is not {_a(wrong)}?",
                    "assistant": f"yes, it is {_a(it.answer)}, not {_a(wrong)}.",
                }
            )
        else:
            turns.append({"user": f"is it {_a(it.answer)}?", "assistant": f"yes, it is {_a(it.answer)}."})
    qa = [i for i in items if i.task not in ("captioning", "classification", "dialogue")]
    for k in rng.permutation(len(qa)):
        turns.append({"user": qa[k].prompt, "assistant": qa[k].answer.rstrip(".") + "."})
    return turns[:max_turns]


def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    source=None,
    max_turns: int = 4,
    exclude_datasets=("synthetic-unseen-classification",),
) -> Path:
    "Write dialogues about the audio of `source` (a manifest) into `out`; returns the manifest path."
    # held-out classes stay unheard: no dialogue is made from the unseen dataset by default
    out = prepare_out(out, overwrite)
    if source is None:
        from data_recipes.synthetic import build as build_synthetic

        source = build_synthetic(out / "audio" / "synthetic", quick=quick, seed=seed)
    groups: dict[str, list[Item]] = {}
    for it in read_manifest(source):
        if it.audio is not None and it.task != "dialogue" and it.dataset not in set(exclude_datasets or ()):
            groups.setdefault(it.audio, []).append(it)
    items = []
    for n, (audio, group) in enumerate(tqdm(groups.items(), desc="dialogue", unit="audio")):
        turns = dialogue_turns(group, rng_for(seed, "dialogue", group[0].id), max_turns)
        if len(turns) < 2:
            continue
        splits = sorted({i.split for i in group})
        if len(splits) > 1:
            raise ValueError(
                f"{source}: the items of {audio} are in several splits {splits}; one audio belongs to one split"
            )
        items.append(
            Item(
                f"dialogue-{group[0].id}",
                audio,
                task="dialogue",
                split=splits[0],
                dataset="dialogue",
                turns=turns,
                extra={"source_ids": [i.id for i in group], "source_datasets": sorted({i.dataset for i in group})},
            )
        )
    write_readme(
        out,
        f"# dialogue (data_recipes.dialogue, seed {seed})\n"
        f"{len(items)} templated dialogues about the audio of {Path(source).resolve()}.",
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(build, __doc__, [(("--source",), {}), (("--max-turns",), {"type": int, "dest": "max_turns"})])
