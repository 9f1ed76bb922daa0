"""Figures, drawn only from result files and image files; computing results happens elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from .profiles import resolve

BIN_COLOURS = {"many": "#1b7837", "medium": "#7fbf7b", "few": "#c2a5cf", "": "#bbbbbb"}


def save(figure, profile: dict, name: str) -> Path:
    """Save a figure as `figures/<profile>/<name>.png` with no time stamp (same bytes on a rerun)."""
    folder = resolve(profile, profile["paths"]["figures"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    return path


def class_sizes(class_sizes_csv: str | os.PathLike):
    """Images per class, largest first, log scale, coloured by long-tail bin: the natural long tail."""
    table = pd.read_csv(class_sizes_csv, keep_default_na=False)
    figure, axis = plt.subplots(figsize=(12, 3.6))
    colours = [BIN_COLOURS.get(b, BIN_COLOURS[""]) for b in table.longtail_bin]
    axis.bar(np.arange(len(table)), table.images, color=colours, width=0.85)
    axis.set_yscale("log")
    axis.set_xlim(-1, len(table))
    axis.set_xticks(np.arange(len(table)), table.class_name, rotation=90, fontsize=6)
    axis.set_ylabel("images per class")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in BIN_COLOURS.values()]
    labels = ["long-tail many", "long-tail medium", "long-tail few", "not in long-tail test"]
    axis.legend(handles, labels, frameon=False, fontsize=8)
    axis.set_title(f"{len(table)} classes, {table.images.sum()} images")
    figure.tight_layout()
    return figure


def class_grid(dataset: pd.DataFrame, class_sizes_csv: str | os.PathLike, per_class: int = 10,
               classes: int | None = None, thumbnail: int = 40):
    """A strip of `per_class` images for each class (largest classes first), labelled with its size."""
    table = pd.read_csv(class_sizes_csv, keep_default_na=False).head(classes)
    rows = len(table)
    canvas = Image.new("RGB", (per_class * thumbnail, rows * thumbnail), "white")
    for r, class_name in enumerate(table.class_name):
        members = dataset[dataset.class_name == class_name].drop_duplicates("identity").head(per_class)
        for c, path in enumerate(members.path):
            with Image.open(path) as image:
                canvas.paste(image.convert("RGB").resize((thumbnail, thumbnail), Image.Resampling.LANCZOS),
                             (c * thumbnail, r * thumbnail))
    figure, axis = plt.subplots(figsize=(per_class * 0.45 + 2.2, rows * 0.45 + 0.4))
    axis.imshow(canvas)
    axis.set_yticks((np.arange(rows) + 0.5) * thumbnail,
                    [f"{n} ({i})" for n, i in zip(table.class_name, table.images)], fontsize=7)
    axis.set_xticks([])
    for side in axis.spines.values():
        side.set_visible(False)
    figure.tight_layout()
    return figure
