"""Datasets as tidy tables: the embedded OpenMoji set (`openmoji`) or local class folders (`class_folders`), as a
profile names it.

Every dataset is a pandas DataFrame with one row per image: `image_id` (stable, unique), `class_name`
(the label), `display_name` (the class as written in prompts), `identity` (images of one identity must
never sit on both sides of a split) and `path` (absolute path of the image file).
"""
from __future__ import annotations

import difflib

import pandas as pd

from .class_folders import load_class_folders
from .images import COLUMNS
from .openmoji import load_openmoji
from .profiles import resolve

__all__ = ["COLUMNS", "load_dataset", "class_display_names", "class_sizes", "pick_image"]


def load_dataset(profile: dict, progress: bool = True) -> pd.DataFrame:
    """The dataset a profile names (`[dataset] kind` = openmoji or folders)."""
    spec = profile["dataset"]
    if spec["kind"] == "openmoji":
        return load_openmoji(resolve(profile, spec["cache_dir"]), spec["resolution"], progress)
    names = resolve(profile, spec["class_names"]) if spec.get("class_names") else None
    return load_class_folders(resolve(profile, spec["root"]), names)


def class_display_names(dataset: pd.DataFrame) -> dict[str, str]:
    """class_name -> display_name (the words used in prompts)."""
    return dict(zip(dataset.class_name, dataset.display_name))


def class_sizes(dataset: pd.DataFrame) -> pd.DataFrame:
    """Images and identities per class, largest first: the long tail as a table."""
    sizes = dataset.groupby("class_name").agg(images=("image_id", "size"), identities=("identity", "nunique"))
    return sizes.sort_values(["images", "identities"], ascending=False).reset_index()


def pick_image(dataset: pd.DataFrame, image_id: str = "") -> pd.Series:
    """One dataset row by id (the first row when `image_id` is empty), or an error naming close ids."""
    if not image_id:
        return dataset.iloc[0]
    match = dataset[dataset.image_id == image_id]
    if match.empty:
        close = difflib.get_close_matches(image_id, list(dataset.image_id), n=3)
        raise KeyError(f"no image {image_id!r} in the dataset" + (f"; did you mean {close}?" if close else ""))
    return match.iloc[0]
