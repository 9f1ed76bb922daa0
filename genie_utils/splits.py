"""Splits as data files: the evaluation pool, few-shot eligible classes and the long-tail split.

The evaluation pool holds whole identities (an emoji and its skin-tone variants), a share of every class;
no generator, judge or backbone ever trains on it. Everything else is the generator pool. Selection is by
a hash of (seed, identity), so it does not depend on library versions or row order.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from .profiles import resolve
from .run_files import RunFiles

GENERATOR, EVALUATION = "generator", "evaluation"
BINS = ("many", "medium", "few")  # ImageNet-LT's bins of classes by training images (`bin_of`)
SPLIT_FILES = ("splits.csv", "fewshot_classes.csv", "longtail_classes.csv")


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def evaluation_identities(dataset: pd.DataFrame, evaluation_fraction: float, seed: int = 0) -> set[str]:
    """The identities held out per class: round(fraction * identities), at least one, never all.

    A class with a single identity stays wholly in the generator pool.
    """
    if not 0 < evaluation_fraction < 1:
        raise ValueError(f"evaluation_fraction must be in (0, 1), got {evaluation_fraction}")
    held_out = set()
    for _, identities in dataset.groupby("class_name")["identity"]:
        ordered = sorted(set(identities), key=lambda i: _rank(seed, i))
        if len(ordered) < 2:
            continue
        count = min(len(ordered) - 1, max(1, round(evaluation_fraction * len(ordered))))
        held_out.update(ordered[:count])
    return held_out


def fewshot_eligibility(pool: pd.DataFrame, shots: list[int], queries_per_class: int) -> pd.DataFrame:
    """Per class of `pool`: can a K-shot episode draw K support identities and still leave
    `queries_per_class` query images of other identities? (Support and query never share an identity.)"""
    rows = []
    for class_name, images in pool.groupby("class_name"):
        sizes = images.groupby("identity").size().sort_values(ascending=False)
        row = {"class_name": class_name, "images": len(images), "identities": len(sizes)}
        for k in shots:
            row[f"eligible_{k}shot"] = bool(len(sizes) > k and len(images) - sizes.iloc[:k].sum() >= queries_per_class)
        rows.append(row)
    return pd.DataFrame(rows).sort_values("images", ascending=False, ignore_index=True)


def bin_of(train_images: int, many_above: int, few_below: int) -> str:
    """ImageNet-LT's bins by training images: many > `many_above`, few < `few_below`, medium between."""
    return "many" if train_images > many_above else "few" if train_images < few_below else "medium"


def longtail_split(dataset: pd.DataFrame, pool: pd.Series, test_per_class: int, seed: int,
                   many_shot_threshold: int, few_shot_threshold: int) -> tuple[pd.Series, pd.DataFrame]:
    """Train on the (naturally long-tailed) generator pool, test on `test_per_class` evaluation images
    per class (balanced). Classes with too few evaluation images are left out of the experiment.

    Returns the per-image role ('train', 'test' or '') and a per-class table with ImageNet-LT's bins.
    """
    role = pd.Series("", index=dataset.index)
    rows = []
    for class_name, images in dataset.groupby("class_name"):
        held_out = images[pool[images.index] == EVALUATION]
        train = images[pool[images.index] == GENERATOR]
        if len(held_out) < test_per_class or len(train) == 0:
            continue
        test = sorted(held_out.index, key=lambda i: _rank(seed, dataset.image_id[i]))[:test_per_class]
        role[train.index] = "train"
        role[test] = "test"
        size = len(train)
        rows.append({"class_name": class_name, "train_images": size, "test_images": len(test),
                     "bin": bin_of(size, many_shot_threshold, few_shot_threshold)})
    classes = pd.DataFrame(rows).sort_values("train_images", ascending=False, ignore_index=True)
    return role, classes


def make_splits(dataset: pd.DataFrame, settings: dict) -> dict[str, pd.DataFrame]:
    """All split tables from a dataset and a profile's `[splits]` settings."""
    seed = settings["seed"]
    held_out = evaluation_identities(dataset, settings["evaluation_fraction"], seed)
    pool = dataset.identity.map(lambda i: EVALUATION if i in held_out else GENERATOR)
    role, longtail_classes = longtail_split(
        dataset, pool, settings["longtail_test_per_class"], seed,
        settings["many_shot_threshold"], settings["few_shot_threshold"])
    splits = pd.DataFrame({"image_id": dataset.image_id, "class_name": dataset.class_name,
                           "identity": dataset.identity, "pool": pool, "longtail": role})
    fewshot = fewshot_eligibility(dataset[pool == EVALUATION], settings["shots"], settings["queries_per_class"])
    return {"splits.csv": splits, "fewshot_classes.csv": fewshot, "longtail_classes.csv": longtail_classes}


def write_splits(dataset: pd.DataFrame, settings: dict, folder: str | os.PathLike) -> Path:
    """Compute and write the split files (run once; the files are committed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in make_splits(dataset, settings).items():
        table.to_csv(folder / name, index=False)
    return folder


def load_splits(profile: dict, dataset: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The profile's committed split files, checked against the dataset.

    A profile with no split folder (paper: the test classes' folders) puts every image in the
    evaluation pool.
    """
    settings = profile["splits"]
    if not settings.get("folder"):
        splits = pd.DataFrame({"image_id": dataset.image_id, "class_name": dataset.class_name,
                               "identity": dataset.identity, "pool": EVALUATION, "longtail": ""})
        fewshot = fewshot_eligibility(dataset, settings["shots"], settings["queries_per_class"])
        return {"splits.csv": splits, "fewshot_classes.csv": fewshot, "longtail_classes.csv": pd.DataFrame()}
    folder = resolve(profile, settings["folder"])
    missing = [name for name in SPLIT_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"split files {missing} not found in {folder}. Rebuild them with "
                                "genie_utils.splits.write_splits(dataset, profile['splits'], folder).")
    tables = {name: pd.read_csv(folder / name, keep_default_na=False, dtype={"image_id": str, "identity": str})
              for name in SPLIT_FILES}
    if set(tables["splits.csv"].image_id) != set(dataset.image_id):
        raise ValueError(f"the split files in {folder} do not match the dataset "
                         f"({len(tables['splits.csv'])} rows vs {len(dataset)} images). "
                         "Were they made with other package versions? Rebuild them with write_splits.")
    return tables


def split_summary(tables: dict[str, pd.DataFrame], shots: list[int]) -> pd.DataFrame:
    """The counts worth showing: images, identities and classes per pool, eligible and long-tail classes."""
    splits = tables["splits.csv"]
    rows = []
    for pool, part in splits.groupby("pool"):
        rows.append({"split": f"{pool} pool", "images": len(part), "identities": part.identity.nunique(),
                     "classes": part.class_name.nunique()})
    for k in shots:
        eligible = tables["fewshot_classes.csv"]
        eligible = eligible[eligible[f"eligible_{k}shot"].astype(bool)]
        rows.append({"split": f"few-shot eligible ({k}-shot)", "images": int(eligible.images.sum()),
                     "identities": int(eligible.identities.sum()), "classes": len(eligible)})
    longtail = tables["longtail_classes.csv"]
    for role in ("train", "test"):
        part = splits[splits.longtail == role]
        if len(part):
            rows.append({"split": f"long-tail {role}", "images": len(part),
                         "identities": part.identity.nunique(), "classes": part.class_name.nunique()})
    if len(longtail):
        for bin_ in BINS:
            part = longtail[longtail.bin == bin_]
            rows.append({"split": f"long-tail {bin_}-shot classes", "images": int(part.train_images.sum()),
                         "identities": None, "classes": len(part)})
    return pd.DataFrame(rows).astype({"identities": "Int64"})


def class_table(dataset: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per class: images and identities in each pool, long-tail bin, few-shot eligibility."""
    splits = tables["splits.csv"]
    counts = splits.pivot_table(index="class_name", columns="pool", values="image_id", aggfunc="size",
                                fill_value=0).rename(columns=lambda c: f"{c}_images")
    table = (dataset.groupby("class_name").agg(display_name=("display_name", "first"), images=("image_id", "size"),
                                               identities=("identity", "nunique")).join(counts))
    eligible = tables["fewshot_classes.csv"].set_index("class_name").filter(like="eligible_")
    table = table.join(eligible).fillna({c: False for c in eligible.columns})
    longtail = tables["longtail_classes.csv"]
    table["longtail_bin"] = longtail.set_index("class_name").bin if len(longtail) else ""
    table["longtail_bin"] = table["longtail_bin"].fillna("")
    return table.sort_values(["images", "identities"], ascending=False).reset_index()


def write_summary(profile: dict, dataset: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """Write the dataset-at-a-glance results (class table, split counts) under `results/<profile>/dataset/`."""
    files = RunFiles.of(profile).dataset
    files.folder.mkdir(parents=True, exist_ok=True)
    paths = {"class_sizes": files.class_sizes, "split_summary": files.split_summary}
    class_table(dataset, tables).to_csv(paths["class_sizes"], index=False)
    split_summary(tables, profile["splits"]["shots"]).to_csv(paths["split_summary"], index=False)
    return paths


def pool_images(profile: dict, dataset: pd.DataFrame, pool: str) -> pd.DataFrame:
    """The dataset rows of one pool (`generator` or `evaluation`)."""
    assignment = load_splits(profile, dataset)["splits.csv"].set_index("image_id").pool
    return dataset[dataset.image_id.map(assignment) == pool].reset_index(drop=True)
