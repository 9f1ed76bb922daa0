"""Figures, drawn only from result files and image files; computing results happens elsewhere.

One style for every figure, set here on import: seaborn's paper theme, its colour-blind-safe palette, widths of
a two-column paper (`COLUMN_INCHES`, `PAGE_INCHES`), one colour per method and per role (source, target).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

from .recipe import ADA_RATIOS
from .results import method_label, row_name

COLUMN_INCHES = 3.4  # one column of a two-column paper
PAGE_INCHES = 7.0  # both columns
PALETTE = sns.color_palette("colorblind")
GREY = PALETTE[7]
# Source blue and target vermillion in every figure; GeNIe takes the target's colour (it makes hard negatives
# for the target class), GeNIe-Ada purple, and the baselines the rest of the palette.
ROLE_COLOURS = {"source": PALETTE[0], "target": PALETTE[3]}
METHOD_COLOURS = {
    "genie": PALETTE[3], "genie_ada": PALETTE[4], "txt2img": PALETTE[9], "img2img_high": PALETTE[2],
    "img2img_low": PALETTE[8], "mixup": PALETTE[1], "cutmix": PALETTE[5], "weak": GREY, "strong": PALETTE[6],
    "balanced": PALETTE[0], "logit_adjusted": PALETTE[1], "plain": GREY,
}
BIN_COLOURS = {"many": PALETTE[2], "medium": PALETTE[9], "few": PALETTE[1], "": GREY}
# A regenerated PNG whose pixels all lie within this many grey levels of the committed one is float noise of
# another machine: the committed file is kept, so `git status` after `make reproduce` shows real changes only.
PNG_TOLERANCE_LEVELS = 2
# Plots are saved at 200 dpi; figures of images at 100 dpi, about the images' own resolution (64 px).
PLOT_DPI, IMAGE_DPI = 200, 100


def use_style() -> None:
    """The house style (called on import; call again after changing matplotlib's settings)."""
    sns.set_theme(context="paper", style="ticks", palette=PALETTE, rc={
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "figure.dpi": 100, "savefig.bbox": "tight",
        "pdf.fonttype": 42, "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
        "xtick.labelsize": 7, "ytick.labelsize": 7})


use_style()


def _same_pixels(old: Path, new: Path, tolerance: int = PNG_TOLERANCE_LEVELS) -> bool:
    with Image.open(old) as a, Image.open(new) as b:
        if a.size != b.size or a.mode != b.mode:
            return False
        difference = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return int(difference.max(initial=0)) <= tolerance


def save(figure, folder: str | os.PathLike, name: str) -> Path:
    """Save a figure as `<name>.png` and `.pdf` in `folder` (a run's figures, `RunFiles.figures`) without time stamps;
    returns the PNG's path.

    A PNG within `PNG_TOLERANCE_LEVELS` grey levels of the existing file keeps the existing bytes (see above).
    PDFs are built, not committed (`.gitignore`). The figure stays open, for the notebook to show it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fresh = folder / f".{name}.new.png"
    dpi = IMAGE_DPI if any(axis.images for axis in figure.axes) else PLOT_DPI
    figure.savefig(fresh, dpi=dpi, metadata={"Software": None})
    if path.is_file() and _same_pixels(path, fresh):
        fresh.unlink()
    else:
        fresh.replace(path)
    figure.savefig(folder / f"{name}.pdf", dpi=dpi, metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return path


def class_sizes(class_sizes_csv: str | os.PathLike):
    """Images per class, largest first, log scale, coloured by long-tail bin: the natural long tail."""
    table = pd.read_csv(class_sizes_csv, keep_default_na=False)
    figure, axis = plt.subplots(figsize=(PAGE_INCHES, 2.6))
    colours = [BIN_COLOURS.get(b, BIN_COLOURS[""]) for b in table.longtail_bin]
    axis.bar(np.arange(len(table)), table.images, color=colours, width=0.85)
    axis.set_yscale("log")
    axis.set_xlim(-1, len(table))
    axis.set_xticks(np.arange(len(table)), table.class_name, rotation=90, fontsize=4)
    axis.set_ylabel("images per class (log scale)")
    axis.grid(axis="x", visible=False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in BIN_COLOURS.values()]
    labels = ["long-tail many", "long-tail medium", "long-tail few", "not in long-tail test"]
    axis.legend(handles, labels)
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
    width = min(per_class * 0.45 + 2.2, PAGE_INCHES)
    figure, axis = plt.subplots(figsize=(width, rows * (width - 2.2) / per_class + 0.4))
    axis.imshow(canvas)
    axis.grid(False)
    axis.set_yticks((np.arange(rows) + 0.5) * thumbnail,
                    [f"{n} ({i})" for n, i in zip(table.class_name, table.images)], fontsize=7)
    axis.set_xticks([])
    for side in axis.spines.values():
        side.set_visible(False)
    figure.tight_layout()
    return figure


def image_grid(rows: list[list[Image.Image]], row_labels=None, column_labels=None, size: float = 1.0, title=None):
    """A grid of images (rows x columns) with optional labels; None cells stay blank."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    size = min(size, (PAGE_INCHES - 1.2) / n_cols)  # never wider than a page
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * size + 1.2, n_rows * size + 0.5), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            axis.grid(False)
            for side in axis.spines.values():
                side.set_visible(False)
            if c < len(row) and row[c] is not None:
                axis.imshow(row[c])
            if r == 0 and column_labels is not None:
                axis.set_title(column_labels[c], fontsize=8)
            if c == 0 and row_labels is not None:
                axis.set_ylabel(row_labels[r], fontsize=7, rotation=0, ha="right", va="center")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def pairs_by_noise_ratio(store, rows: pd.DataFrame, max_pairs: int = 6, size: float = 1.0):
    """Paper figure 2 in miniature: one row per (source, target) pair, the source then its outputs as r
    grows, read from the store's manifest rows."""
    ratios = sorted(rows.noise_ratio.unique())
    pairs = rows.drop_duplicates(["source_id", "target_class"]).head(max_pairs)
    grid, labels = [], []
    for pair in pairs.itertuples():
        same = rows[(rows.source_id == pair.source_id) & (rows.target_class == pair.target_class)]
        by_ratio = dict(zip(same.noise_ratio, same.key))
        with Image.open(pair.source_path) as source:
            grid.append([source.convert("RGB")] + [store.load_image(by_ratio[r]) for r in ratios])
        labels.append(f"{pair.source_class}\n-> {pair.target_class}")
    return image_grid(grid, labels, ["source"] + [f"r = {r:g}" for r in ratios], size)


def loss_curves(*csv_paths, window: int = 50):
    """Training loss per step (moving average), one panel per CSV (columns step, loss, stage)."""
    figure, axes = plt.subplots(1, len(csv_paths), figsize=(min(COLUMN_INCHES * len(csv_paths), PAGE_INCHES), 2.4),
                             squeeze=False)
    for axis, path in zip(axes[0], csv_paths):
        table = pd.read_csv(path)
        axis.plot(table.step, table.loss, color=GREY, alpha=0.5, linewidth=0.6)
        axis.plot(table.step, table.loss.rolling(window, min_periods=1).mean(), color=PALETTE[0])
        axis.set_xlabel("training step")
        axis.set_ylabel("loss (log scale)")
        axis.set_yscale("log")
        axis.set_title(table.stage.iloc[0] if "stage" in table else Path(path).stem)
    figure.tight_layout()
    return figure


def class_probability_curve(summary_csv: str | os.PathLike, title: str | None = None):
    """Mean oracle P(target) and P(source) of GeNIe outputs versus r (paper's class-probability analysis)."""
    table = pd.read_csv(summary_csv)
    figure, axis = plt.subplots(figsize=(COLUMN_INCHES, 2.4))
    axis.plot(table.noise_ratio, table.p_target, "o-", color=ROLE_COLOURS["target"], label="P(target)")
    axis.plot(table.noise_ratio, table.p_source, "s-", color=ROLE_COLOURS["source"], label="P(source)")
    axis.set_xlabel("noise ratio r")
    axis.set_ylabel("mean oracle probability")
    axis.set_ylim(0, 1)
    axis.legend()
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def noise_ratio_explorer(store, rows: pd.DataFrame, interactive: bool = True, size: float = 1.6):
    """One pair's outputs over r: an ipywidgets slider in JupyterLab, a static strip when headless."""
    rows = rows.sort_values("noise_ratio")
    images = [store.load_image(k) for k in rows.key]
    ratios = list(rows.noise_ratio)
    if interactive:
        try:
            import ipywidgets  # here: optional at run time; without it the strip is drawn as a grid
        except ImportError:
            interactive = False
    if not interactive:
        return image_grid([images], None, [f"r = {r:g}" for r in ratios], size)

    def show(r):
        figure = image_grid([[images[ratios.index(r)]]], None, [f"r = {r:g}"], 3)
        plt.show()
        return figure

    return ipywidgets.interact(show, r=ipywidgets.SelectionSlider(options=ratios, value=ratios[len(ratios) // 2],
                                                                   description="noise ratio"))


def ada_projection(choice: pd.Series, store, ratios=ADA_RATIOS):
    """Paper figure 3 for one pair: candidates' projections on the source-to-target line, the largest jump
    marked, the candidate images below with the chosen one framed."""
    projections = [choice[f"s_{r:g}"] for r in ratios]
    figure = plt.figure(figsize=(PAGE_INCHES * 0.7, 2.8))
    axis = figure.add_axes([0.12, 0.46, 0.84, 0.46])
    axis.plot(ratios, projections, "o-", color=GREY)
    jumps = np.abs(np.diff(projections))
    i = int(np.argmax(jumps))
    axis.annotate("", xy=(ratios[i + 1], projections[i + 1]), xytext=(ratios[i], projections[i]),
                  arrowprops=dict(arrowstyle="->", color=METHOD_COLOURS["genie_ada"], linewidth=2))
    axis.axvline(choice.noise_ratio, color=METHOD_COLOURS["genie_ada"], linestyle=":", linewidth=1)
    axis.set_xticks(ratios)
    axis.set_xlabel("noise ratio r")
    axis.set_ylabel("projection on\nsource -> target")
    axis.set_title(f"{choice.source_class} -> {choice.target_class}: r* = {choice.noise_ratio:g}")
    for k, (r, key) in enumerate(zip(ratios, choice.candidate_keys)):
        inset = figure.add_axes([0.12 + k * 0.84 / len(ratios), 0.0, 0.84 / len(ratios) - 0.01, 0.3])
        inset.imshow(store.load_image(key))
        inset.set_xticks([])
        inset.set_yticks([])
        inset.grid(False)
        for side in inset.spines.values():
            side.set_visible(True)
            side.set_edgecolor(METHOD_COLOURS["genie_ada"] if r == choice.noise_ratio else "#dddddd")
            side.set_linewidth(3 if r == choice.noise_ratio else 1)
    return figure


def ada_ratio_histogram(choices_csv: str | os.PathLike, ratios=ADA_RATIOS):
    """How often GeNIe-Ada chose each r (0.5 never can be)."""
    table = pd.read_csv(choices_csv)
    counts = table.noise_ratio.value_counts().reindex(ratios, fill_value=0)
    figure, axis = plt.subplots(figsize=(COLUMN_INCHES, 2.2))
    axis.bar([f"{r:g}" for r in ratios], counts.values, color=METHOD_COLOURS["genie_ada"])
    axis.set_xlabel("chosen noise ratio r*")
    axis.set_ylabel("pairs")
    axis.set_title(f"GeNIe-Ada over {len(table)} pairs")
    axis.grid(axis="x", visible=False)
    figure.tight_layout()
    return figure


def latent_images(latents, size: int = 64) -> list[Image.Image]:
    """Each channel of one latent (C, h, w) as a grey image, stretched to its own range, `size` px wide."""
    images = []
    for channel in latents.float().cpu().numpy():
        scaled = (channel - channel.min()) / (np.ptp(channel) or 1.0)
        images.append(Image.fromarray((scaled * 255).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST))
    return images


# --------------------------------------------------------------------------------------------------
# Few-shot analyses (notebook 05), each from one result file

def accuracy_against_ratio(summary_csv: str | os.PathLike):
    """Few-shot accuracy (mean and 95% interval over episodes) of GeNIe at each fixed r, with GeNIe-Ada and
    the weak-augmentation baseline as horizontal references; one panel per backbone and shots."""
    table = pd.read_csv(summary_csv)
    groups = list(table.groupby(["backbone", "shots"]))
    figure, axes = plt.subplots(1, len(groups), figsize=(min(COLUMN_INCHES * len(groups), PAGE_INCHES), 2.4),
                             squeeze=False)
    for axis, ((backbone, shots), group) in zip(axes[0], groups):
        group = group.set_index("method")
        ratios = [r for r in ADA_RATIOS if row_name("genie", r) in group.index]
        means = [group.loc[row_name("genie", r), "mean"] for r in ratios]
        halves = [group.loc[row_name("genie", r), "half_width"] for r in ratios]
        axis.errorbar(ratios, means, yerr=halves, fmt="o-", color=METHOD_COLOURS["genie"], capsize=3,
                      label="GeNIe (fixed r)")
        for method, style in (("genie_ada", "--"), ("txt2img", "-."), ("weak", ":")):
            if method in group.index:
                axis.axhline(group.loc[method, "mean"], color=METHOD_COLOURS[method], linestyle=style,
                             label=method_label(method, latex=True))
        axis.set_xticks(ratios)
        axis.set_xlabel("noise ratio r")
        axis.set_ylabel("accuracy (%)")
        axis.set_title(f"{backbone}, {shots}-shot ({int(group['n'].iloc[0])} episodes)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=len(labels))
    figure.tight_layout()
    return figure


def class_probability_against_ratio(summary_csv: str | os.PathLike, shots: int | None = None):
    """Mean P(source) and P(target) of GeNIe's candidates under each episode's support-only classifier, with
    95% intervals over pairs (the paper's class-probability figure; 5-shot by default)."""
    table = pd.read_csv(summary_csv)
    shots = shots or int(table.shots.max())
    table = table[table.shots == shots]
    backbones = sorted(table.backbone.unique())
    figure, axes = plt.subplots(1, len(backbones), figsize=(min(COLUMN_INCHES * len(backbones), PAGE_INCHES), 2.4),
                             squeeze=False)
    for axis, backbone in zip(axes[0], backbones):
        part = table[table.backbone == backbone]
        for value, colour, marker, label in (("p_target", ROLE_COLOURS["target"], "o", "P(target)"),
                                             ("p_source", ROLE_COLOURS["source"], "s", "P(source)")):
            rows = part[part.value == value].sort_values("noise_ratio")
            axis.errorbar(rows.noise_ratio, rows["mean"], yerr=rows.half_width, fmt=f"{marker}-", color=colour,
                          capsize=3, label=label)
        axis.set_ylim(0, 1)
        axis.set_xticks(sorted(part.noise_ratio.unique()))
        axis.set_xlabel("noise ratio r")
        axis.set_ylabel("mean class probability")
        axis.set_title(f"{backbone}, {shots}-shot, episodes' own classifiers")
        axis.legend()
    figure.tight_layout()
    return figure


def label_consistency(consistency_csv: str | os.PathLike, order: list[str]):
    """Share of each method's augmentations whose oracle top class is the label they are trained with, and
    the oracle's mean probability of that label."""
    table = pd.read_csv(consistency_csv).set_index("row").reindex([r for r in order])
    table = table.dropna(subset=["images"])
    figure, axis = plt.subplots(figsize=(COLUMN_INCHES, 2.4))
    positions = np.arange(len(table))
    axis.bar(positions - 0.2, table.oracle_agrees, width=0.4, color=PALETTE[0], label="oracle's top class = label")
    axis.bar(positions + 0.2, table.p_label, width=0.4, color=PALETTE[1], label="mean oracle P(label)")
    axis.set_xticks(positions, [method_label(r, latex=True) for r in table.index], rotation=45, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("share / probability")
    axis.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=2)
    axis.grid(axis="x", visible=False)
    figure.tight_layout()
    return figure


def embedding_view(view_csv: str | os.PathLike):
    """Paper figure 5: PCA of one episode's support (stars), queries (dots) and augmentations (one marker per
    method), coloured by class label."""
    table = pd.read_csv(view_csv)
    classes = sorted(table.class_name.unique())
    colours = dict(zip(classes, PALETTE))
    markers = {"genie": "^", "img2img_low": "v", "img2img_high": "D", "txt2img": "P", "mixup": "X", "cutmix": "h"}
    figure, axis = plt.subplots(figsize=(PAGE_INCHES * 0.6, 3.0))
    query = table[table.role == "query"]
    axis.scatter(query.x, query.y, s=10, c=[colours[c] for c in query.class_name], alpha=0.35, linewidths=0)
    for method, part in table[table.role == "augmentation"].groupby("method"):
        axis.scatter(part.x, part.y, s=26, marker=markers.get(method, "o"), facecolors="none",
                     edgecolors=[colours[c] for c in part.class_name], linewidths=0.9, label=method_label(method, latex=True))
    support = table[table.role == "support"]
    axis.scatter(support.x, support.y, s=140, marker="*", c=[colours[c] for c in support.class_name],
                 edgecolors="black", linewidths=0.6, label="support")
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")
    handles, labels = axis.get_legend_handles_labels()
    class_handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[c]) for c in classes]
    first = axis.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.add_artist(first)
    axis.legend(class_handles, classes, loc="lower left", bbox_to_anchor=(1.0, 0.0), title="label (class)",
                title_fontsize=7)
    axis.set_title(f"{table.backbone.iloc[0]}, {int(table.shots.iloc[0])}-shot episode {int(table.episode.iloc[0])}: "
                   "queries as dots")
    figure.tight_layout()
    return figure


def method_comparison(comparison_csv: str | os.PathLike, store, size: float = 1.1):
    """Paper figure 4: each source, then Img2Img^L, Img2Img^H, Txt2Img (own class) and GeNIe at several r."""
    table = pd.read_csv(comparison_csv, dtype={"source_id": str})
    columns = list(dict.fromkeys(table.column))
    grid, labels = [], []
    for source_id, group in table.groupby("source_id", sort=False):
        row = []
        for column in columns:
            entry = group[group.column == column].iloc[0]
            path = store.root / entry.file if entry.in_store else Path(entry.file)
            with Image.open(path) as image:
                row.append(image.convert("RGB"))
        grid.append(row)
        genie = group[group.column.str.startswith("genie")].class_name.iloc[0]
        labels.append(f"{group.class_name.iloc[0]}\n(GeNIe -> {genie})")
    return image_grid(grid, labels, ["source"] + [method_label(c, latex=True).replace(" (", "\n(") for c in columns[1:]],
                      size)


def evaluation_benchmark(record_json: str | os.PathLike):
    """Seconds to evaluate every few-shot row from cached features: fitting and reading, per shot count."""
    record = json.loads(Path(record_json).read_text())
    parts = sorted(record["fitting_seconds"])
    figure, axis = plt.subplots(figsize=(COLUMN_INCHES, 2.0))
    fitting = [record["fitting_seconds"][p] / 60 for p in parts]
    reading = [record["reading_seconds"].get(p, 0) / 60 for p in parts]
    axis.barh(parts, fitting, color=PALETTE[0], label="fitting every row")
    axis.barh(parts, reading, left=fitting, color=PALETTE[1], label="reading cached features")
    axis.axvline(5, color=GREY, linestyle=":", label="5 min")
    axis.set_xlabel(f"minutes for {record['episodes']} episodes")
    axis.legend()
    axis.set_title(f"total {record['total_seconds'] / 60:.1f} min ({record['machine']})")
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------------------------------
# Long tail (notebook 06)


def longtail_gain(gain_csv: str | os.PathLike, thresholds: Sequence[int],
                  reference_label: str = "cross-entropy without augmentation"):
    """Per-class top-1 gain over the reference against the class's training images (log scale), one marker
    per method; the bins' `thresholds` (the profile's few- and many-shot thresholds) as vertical lines."""
    table = pd.read_csv(gain_csv)
    figure, axis = plt.subplots(figsize=(PAGE_INCHES * 0.6, 2.8))
    rng = np.random.default_rng(0)
    for method, part in table.groupby("method", sort=False):
        jitter = np.exp(rng.uniform(-0.06, 0.06, len(part)))  # classes of one size would hide each other
        axis.scatter(part.train_images * jitter, part.gain * 100, s=16, alpha=0.7, color=METHOD_COLOURS.get(method),
                     label=f"{method_label(method, latex=True)}, mean gain on few: "
                           f"{part[part.bin == 'few'].gain.mean() * 100:+.1f} points")
    axis.axhline(0, color=GREY, linewidth=0.8)
    for threshold in thresholds:
        axis.axvline(threshold, color=GREY, linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.set_xlabel("training images of the class (log scale)")
    axis.set_ylabel(f"top-1 gain over\n{reference_label} (points)")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25))
    figure.tight_layout()
    return figure


def longtail_budget(budget_csv: str | os.PathLike, group: str = "few"):
    """Each generative row's top-1 gain over plain cross-entropy on `group` against the images generated per rare
    class, with its 95% interval over the test images; other generation seeds as open markers beside seed 0."""
    table = pd.read_csv(budget_csv)
    table = table[table.group == group]
    figure, axis = plt.subplots(figsize=(COLUMN_INCHES, 2.6))
    offsets = {m: 1 + 0.04 * (i - 1) for i, m in enumerate(table.method.unique())}  # keep the intervals apart
    for method, part in table.groupby("method", sort=False):
        colour = METHOD_COLOURS.get(method)
        for seed, runs in part.groupby("generation_seed"):
            runs = runs.sort_values("budget")
            x = runs.budget * offsets[method] * (1.06 if seed else 1)
            axis.errorbar(x, runs["mean"], yerr=[runs["mean"] - runs.low, runs.high - runs["mean"]], color=colour,
                          marker="o", markerfacecolor="white" if seed else colour, capsize=2, linewidth=1,
                          linestyle="-" if seed == part.generation_seed.min() else "none",
                          label=f"{method_label(method, latex=True)}, generation seed {seed}"
                          if part.generation_seed.nunique() > 1 else method_label(method, latex=True))
    axis.axhline(0, color=GREY, linewidth=0.8)
    axis.set_xscale("log", base=2)
    axis.set_xticks(sorted(table.budget.unique()), [str(b) for b in sorted(table.budget.unique())])
    axis.set_xlabel("images generated per rare class")
    axis.set_ylabel(f"top-1 gain on {group}\nover cross-entropy (points)")
    axis.legend(fontsize="small")
    figure.tight_layout()
    return figure


def curves_by_steps(steps_csv: str | os.PathLike):
    """The oracle's mean P(target) and P(source) of GeNIe outputs against r, one line style per step count."""
    table = pd.read_csv(steps_csv)
    figure, axis = plt.subplots(figsize=(COLUMN_INCHES, 2.6))
    styles = ["-", "--", ":", "-."]
    for style, (steps, part) in zip(styles, table.groupby("steps", sort=False)):
        axis.plot(part.noise_ratio, part.p_target, style, marker="o", color=ROLE_COLOURS["target"],
                  label=f"P(target), {steps} steps")
        axis.plot(part.noise_ratio, part.p_source, style, marker="s", color=ROLE_COLOURS["source"],
                  label=f"P(source), {steps} steps")
    axis.set_xlabel("noise ratio r")
    axis.set_ylabel("mean oracle probability")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    axis.set_title(f"{int(table.pairs.iloc[0])} random pairs, same noise per pair")
    figure.tight_layout()
    return figure


EDITING_PANELS = {"p_target": "oracle P(target)", "p_source": "oracle P(source)", "copy_rate": "copy rate",
                  "keep": "source keep (text-only = 1)", "hard_negative_rate": "hard-negative rate"}


def editing_curves(editing_csv: str | os.PathLike, group: str = "all classes"):
    """The editing benchmark against r for one group of target classes: one panel per measure, one line per
    setting (steps, guidance), with the 95% band over target classes."""
    table = pd.read_csv(editing_csv)
    table = table[table.group == group]
    settings = list(dict.fromkeys(table.setting))
    figure, axes = plt.subplots(1, len(EDITING_PANELS), figsize=(PAGE_INCHES, 2.1 + 0.15 * -(-len(settings) // 3)),
                                sharex=True)
    colours = dict(zip(settings, sns.color_palette("viridis", len(settings)))) if len(settings) > 1 \
        else {settings[0]: ROLE_COLOURS["target"]}
    for axis, (measure, title) in zip(axes, EDITING_PANELS.items()):
        for setting in settings:
            part = table[table.setting == setting].sort_values("noise_ratio")
            axis.plot(part.noise_ratio, part[measure], "o-", markersize=2.5, color=colours[setting], label=setting)
            axis.fill_between(part.noise_ratio, part[measure] - part[f"{measure}_half_width"],
                              part[measure] + part[f"{measure}_half_width"], color=colours[setting], alpha=0.15,
                              linewidth=0)
        axis.set_title(title, fontsize=7)
        axis.set_xlabel("noise ratio r")
        axis.set_ylim(0, 1.3 if measure == "keep" else 1)
    figure.suptitle(f"editing benchmark, {group} ({int(table.classes.iloc[0])} target classes, "
                    f"{int(table.pairs.iloc[0])} pairs)", fontsize=8)
    rows = -(-len(settings) // 3)  # the settings' legend below the panels, three to a row
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(3, len(settings)), fontsize=6, frameon=False)
    figure.tight_layout(rect=(0, 0.07 * rows + 0.02, 1, 1))
    return figure
