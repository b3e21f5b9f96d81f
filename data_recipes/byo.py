"""Bring your own audio: a folder of clips plus a CSV with a header `file,label` (classification) or `file,caption`
(captioning; several rows for one file become extra references) -> a manifest with a seeded split, stratified by label.

Bad rows (missing or unreadable file, empty label/caption) are reported with their CSV line numbers: all of them in one
error by default, or skipped with a warning with `skip_bad=True`. The audio stays where it is (the manifest points to
it with relative paths) unless `copy=True`.

    python -m data_recipes.byo --out data/mine --csv my_clips/labels.csv [--audio-dir my_clips] [--dataset mine]
"""

from __future__ import annotations
import csv, shutil, warnings
from pathlib import Path
import soundfile as sf
from tqdm.auto import tqdm
from audioflamingo_lab.core import Item
from audioflamingo_lab.manifest import ManifestError, write_manifest
from data_recipes._common import MANIFEST, prepare_out, rng_for, stratified_splits, split_counts, write_readme, main


def read_rows(csv_path, audio_dir=None, skip_bad: bool = False):
    "Good rows as (line, absolute audio path, text) and the column kind ('label' | 'caption'); reports bad rows."
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: CSV not found")
    audio_dir = Path(audio_dir) if audio_dir else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        kind = "label" if "label" in header else "caption" if "caption" in header else None
        if "file" not in header or kind is None:
            raise ManifestError(
                csv_path, [(1, "(header)", f"expected columns `file,label` or `file,caption`, got {header}")]
            )
        reader.fieldnames = header
        rows, problems = [], []
        for row in reader:
            line = reader.line_num
            name, text = (row.get("file") or "").strip(), (row.get(kind) or "").strip()
            bad = []
            if not name:
                bad.append(("file", "empty"))
            if not text:
                bad.append((kind, "empty"))
            path = (audio_dir / name).resolve()
            if name:
                if not path.is_file():
                    bad.append(("file", f"not found: {path}"))
                else:
                    try:
                        sf.info(str(path))
                    except Exception as e:
                        bad.append(("file", f"not readable audio: {path} ({e})"))
            if bad:
                problems += [(line, fld, msg) for fld, msg in bad]
            else:
                rows.append((line, path, text))
    if problems:
        if not skip_bad:
            raise ManifestError(csv_path, problems)
        lines = sorted({l for l, _, _ in problems})
        warnings.warn(
            f"{csv_path}: skipped {len(lines)} bad row(s) on line(s) {', '.join(map(str, lines))}", stacklevel=2
        )
    if not rows:
        raise ManifestError(csv_path, [(0, "(rows)", "no usable rows")])
    return rows, kind


def build(
    out,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    csv: str | None = None,
    audio_dir=None,
    dataset: str | None = None,
    skip_bad: bool = False,
    copy: bool = False,
    prompt: str | None = None,
) -> Path:
    "Write a manifest for your own clips into `out`; returns its path. `quick` has no effect (your data, your size)."
    if csv is None:
        raise ValueError("byo needs csv= (a CSV with a header `file,label` or `file,caption`)")
    rows, kind = read_rows(csv, audio_dir, skip_bad)
    dataset = dataset or Path(csv).resolve().parent.name
    out = prepare_out(out, overwrite)

    def place(path: Path) -> str:
        if not copy:
            return str(path)
        dest = out / "audio" / path.name
        if dest.exists() and dest.resolve() != path:
            dest = out / "audio" / f"{path.stem}-{abs(hash(str(path))) % 10**8}{path.suffix}"
        shutil.copyfile(path, dest)
        return str(dest)

    items = []
    if kind == "label":
        labels = [t for _, _, t in rows]
        options = sorted(set(labels))
        for (line, path, label), split in zip(
            tqdm(rows, desc="byo", unit="row"), stratified_splits(labels, (seed, dataset))
        ):
            items.append(
                Item(
                    f"{dataset}-{line:05d}",
                    place(path),
                    task="classification",
                    prompt=prompt or "what is this sound?",
                    answer=label,
                    options=options,
                    split=split,
                    dataset=dataset,
                    extra={"csv_line": line},
                )
            )
    else:
        by_file: dict[Path, list] = {}
        for line, path, caption in rows:
            by_file.setdefault(path, []).append((line, caption))
        files = list(by_file)
        order = list(range(len(files)))
        rng_for(seed, dataset, "split").shuffle(order)
        n_tr, n_va, _ = split_counts(len(files))
        for rank, i in enumerate(tqdm(order, desc="byo", unit="file")):
            caps = by_file[files[i]]
            items.append(
                Item(
                    f"{dataset}-{caps[0][0]:05d}",
                    place(files[i]),
                    task="captioning",
                    prompt=prompt or "describe the sound in a sentence.",
                    answer=caps[0][1],
                    references=[c for _, c in caps[1:]],
                    split="train" if rank < n_tr else "val" if rank < n_tr + n_va else "test",
                    dataset=dataset,
                    extra={"csv_line": caps[0][0]},
                )
            )
        items.sort(key=lambda it: it.extra["csv_line"])
    write_readme(
        out, f"# {dataset} (data_recipes.byo, seed {seed})\nFrom {Path(csv).resolve()}: {len(items)} {kind} items."
    )
    return write_manifest(items, out / MANIFEST, overwrite=overwrite)


if __name__ == "__main__":
    main(
        build,
        __doc__,
        [
            (("--csv",), {"required": True}),
            (("--audio-dir",), {"dest": "audio_dir"}),
            (("--dataset",), {}),
            (("--skip-bad",), {"action": "store_true", "dest": "skip_bad"}),
            (("--copy",), {"action": "store_true"}),
            (("--prompt",), {}),
        ],
    )
