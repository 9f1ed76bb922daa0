"""Result tables: means with 95% intervals, paired differences, and the paper's table layout in Markdown and
LaTeX. Everything here reads tidy result files (one row per episode or seed and method) and writes tables;
nothing here computes features or trains.

An interval over episodes or training seeds is Student's: mean ± t(0.975, n - 1) · s / √n (s the sample standard
deviation of the n values, or of the n paired differences), as a mean over few values needs; an interval over
test images is a bootstrap (`bootstrap_differences`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .recipe import GENIE_NOISE_RATIO, METHODS
from .store import atomic_write

# Method names as the paper writes them: (Markdown, LaTeX).
METHOD_LABELS = {
    "weak": ("Weak aug.", "Weak aug."), "strong": ("Strong aug.", "Strong aug."),
    "mixup": ("MixUp", "MixUp"), "cutmix": ("CutMix", "CutMix"),
    "img2img_low": ("Img2Img^L", "Img2Img$^L$"), "img2img_high": ("Img2Img^H", "Img2Img$^H$"),
    "txt2img": ("Txt2Img", "Txt2Img"),
    "genie": (f"GeNIe (r = {GENIE_NOISE_RATIO:g})", f"GeNIe ($r={GENIE_NOISE_RATIO:g}$)"),
    "genie_ada": ("GeNIe-Ada", "GeNIe-Ada"),
    "balanced": ("Class-balanced sampling", "Class-balanced sampling"),
    "logit_adjusted": ("Logit adjustment", "Logit adjustment"), "plain": ("Cross-entropy", "Cross-entropy"),
}


def method_label(method: str, latex: bool = False) -> str:
    if method in METHOD_LABELS:
        return METHOD_LABELS[method][latex]
    if "+" in method:  # a long-tail row that combines an augmentation with a loss, e.g. genie+logit_adjusted
        return " + ".join(method_label(part, latex) for part in method.split("+"))
    if method.startswith("genie_r"):
        r = method[len("genie_r"):]
        return f"GeNIe ($r={r}$)" if latex else f"GeNIe (r = {r})"
    return method


def t_quantile(n: int, level: float = 0.95) -> float:
    """Student's two-sided quantile for a mean over `n` values: t(1 - (1 - level) / 2, n - 1); 4.303 for n = 3,
    2.201 for n = 12, 1.96 in the limit."""
    if n < 2:
        raise ValueError(f"an interval over {n} value(s) has no spread: it needs at least 2")
    return float(stats.t.ppf(1 - (1 - level) / 2, n - 1))


def half_width(std: float, n: int) -> float:
    """The 95% half-width of a mean over `n` values of sample standard deviation `std`: t(n - 1) * std / sqrt(n)."""
    return t_quantile(n) * float(std) / np.sqrt(n)


def interval(values) -> tuple[float, float, int]:
    """(mean, 95% half-width t(n - 1) * std / sqrt(n), n) with the sample standard deviation (ddof = 1); the
    half-width is 0 for n = 1 (no interval: tables show the mean alone)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("no values to summarise")
    if len(values) == 1:
        return float(values[0]), 0.0, 1
    return float(values.mean()), half_width(values.std(ddof=1), len(values)), len(values)


def normal_interval(values) -> tuple[float, float, int]:
    """(mean, 1.96 * std / sqrt(n), n): the normal approximation, for means over many units (e.g. the editing
    benchmark's classes); `interval` for means over episodes or seeds."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("no values to summarise")
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return float(values.mean()), float(1.96 * spread / np.sqrt(len(values))), len(values)


def episodes_needed(std: float, target: float, at_least: int = 2, limit: int = 1_000_000) -> int:
    """The fewest episodes (or seeds) n >= `at_least` whose 95% half-width t(n - 1) * std / sqrt(n) is at most
    `target`, at the spread `std`; `limit` + 1 when even `limit` would not reach it."""
    if target <= 0:
        raise ValueError(f"a target half-width must be positive, not {target}")
    if std <= 0:
        return at_least
    n = max(at_least, 2, int(np.floor((1.959963984540054 * std / target) ** 2)))  # the normal bound: t only adds
    while n <= limit and half_width(std, n) > target:
        n += 1
    return n


def summarise(results: pd.DataFrame, by: Sequence[str], value: str = "accuracy", scale: float = 100.0) -> pd.DataFrame:
    """Mean and 95% half-width of `value` (times `scale`, i.e. in percent) per group of `by`."""
    rows = []
    for keys, group in results.groupby(list(by), sort=False):
        mean, half, n = interval(group[value] * scale)
        rows.append({**dict(zip(by, keys if isinstance(keys, tuple) else (keys,))), "mean": mean,
                     "half_width": half, "n": n})
    return pd.DataFrame(rows)


def comparison_pairs(methods: Sequence[str], reference: str, extra: Sequence[tuple[str, str]] = (),
                     order: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The (first, second) pairs a paired comparison reports: `reference` against every other of `methods` (in
    `order`, else sorted; methods not in `methods` are skipped), then the `extra` pairs whose methods are both there."""
    methods = list(methods)
    others = [m for m in (order or sorted(methods)) if m in methods and m != reference]
    return [(reference, m) for m in others] + [tuple(p) for p in extra if set(p) <= set(methods)]


def paired_differences(results: pd.DataFrame, reference: str = "genie", by: Sequence[str] = ("backbone", "shots"),
                       unit: str = "episode", extra: Sequence[tuple[str, str]] = (("genie_ada", "genie"),),
                       scale: float = 100.0, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per group: `reference` minus every other method (in `order`), episode by episode (all rows share
    episodes), with mean, 95% interval (Student's t over the n paired differences) and the differences' sample
    standard deviation `std`; `extra` adds other (a, b) pairs, by default GeNIe-Ada minus GeNIe."""
    rows = []
    for keys, group in results.groupby(list(by), sort=False):
        wide = group.pivot_table(index=unit, columns="method", values="accuracy")
        for a, b in comparison_pairs(wide.columns, reference, extra, order):
            difference = (wide[a] - wide[b]).dropna()
            mean, half, n = interval(difference * scale)
            rows.append({**dict(zip(by, keys)), "comparison": f"{a} - {b}", "first": a, "second": b,
                         "mean": mean, "half_width": half, "n": n,
                         "std": float((difference * scale).std(ddof=1)) if n > 1 else float("nan"),
                         "first_better_share": float((difference > 0).mean())})
    return pd.DataFrame(rows)


def noise_sources(outcomes: pd.DataFrame, reference: str = "genie", by: Sequence[str] = ("backbone", "shots"),
                  extra: Sequence[tuple[str, str]] = (("genie_ada", "genie"),), scale: float = 100.0,
                  order: Sequence[str] | None = None) -> pd.DataFrame:
    """How much of a paired difference's spread over episodes comes from the draw of the queries.

    `outcomes`: one row per (episode, method, query) with `correct` and `query_class` (`fewshot.evaluate`'s
    `query_outcomes`). Per episode, the difference `reference` minus another row is the class-balanced mean of
    the per-query differences (the mean over classes of each class's mean, as episode accuracy is); with the
    queries drawn per class (stratified), the draw alone gives it a variance of sum_c s_c^2 / n_c / C^2 (s_c^2:
    the sample variance of the differences on class c's n_c queries, C classes). `query_share` is its mean over
    episodes divided by the variance of the episode differences (the rest is the support set's and the classes';
    a share can exceed 1 by chance with few episodes). `half_width_without_queries` is the 95% half-width left
    if the query draw added nothing, as with very many queries per episode (scoring on n' > n queries per class
    divides the query part by about n' / n). Half-widths (Student's t over the episodes) in the units of `scale`
    (percentage points)."""
    rows = []
    for keys, group in outcomes.groupby(list(by), sort=False):
        wide = group.pivot_table(index=["episode", "query", "query_class"], columns="method", values="correct")
        for a, b in comparison_pairs(wide.columns, reference, extra, order):
            diff = (wide[a].astype(float) - wide[b].astype(float)).rename("d").reset_index()
            per_class = diff.groupby(["episode", "query_class"]).d.agg(["mean", "var", "count"])
            classes = per_class.groupby("episode").size()
            draw = (per_class["var"].fillna(0.0) / per_class["count"]).groupby("episode").sum() / classes ** 2
            episode = per_class["mean"].groupby("episode").mean()
            n = len(episode)
            total = float(episode.var(ddof=1)) if n > 1 else float("nan")
            query = float(draw.mean())
            rows.append({**dict(zip(by, keys)), "comparison": f"{a} - {b}", "episodes": n,
                         "queries_per_episode": float(diff.groupby("episode").size().mean()),
                         "mean": float(episode.mean()) * scale,
                         "half_width": half_width(np.sqrt(total), n) * scale if n > 1 else float("nan"),
                         "query_share": query / total if total > 0 else float("nan"),
                         "half_width_without_queries": half_width(np.sqrt(max(total - query, 0.0)), n) * scale
                         if n > 1 else float("nan")})
    return pd.DataFrame(rows)


def episode_accuracy(outcomes: pd.DataFrame, by: Sequence[str] = ("backbone", "shots", "episode", "method")
                     ) -> pd.DataFrame:
    """Per-query hits (`query_outcomes`) to each episode's class-balanced accuracy, as `results.csv` has it."""
    per_class = outcomes.groupby([*by, "query_class"]).correct.mean()
    return per_class.groupby(list(by)).mean().rename("accuracy").reset_index()


def precision_against_targets(differences: pd.DataFrame, targets: dict, comparisons: Sequence[str],
                              drawn: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each of `comparisons` (e.g. "genie - txt2img") from `paired_differences`, per backbone and shot count, against
    the 95% half-width asked of it (`targets`: shots -> points). `episodes_needed` is the number of episodes that
    would reach the target at the same spread: the fewest n with t(n - 1) std / sqrt(n) <= target
    (`episodes_needed`). `drawn`: the same differences on fewer queries (`fewshot.drawn_query_differences`), whose
    half-widths go in `half_width_drawn_queries`."""
    other = drawn.set_index(["backbone", "shots", "comparison"]).half_width if drawn is not None else None
    rows = []
    for row in differences[differences.comparison.isin(comparisons)].itertuples():
        if row.shots not in targets:
            continue
        target = float(targets[row.shots])
        std = row.half_width * np.sqrt(row.n) / t_quantile(row.n) if row.n > 1 else float("nan")
        rows.append({"backbone": row.backbone, "shots": row.shots, "comparison": row.comparison, "episodes": row.n,
                     "half_width": row.half_width, "target": target,
                     "met": bool(row.n > 1 and row.half_width <= target),  # one episode has no interval
                     "episodes_needed": episodes_needed(std, target) if row.n > 1 else float("nan"),
                     "half_width_drawn_queries": float("nan") if other is None
                     else float(other.loc[(row.backbone, row.shots, row.comparison)])})
    frame = pd.DataFrame(rows, columns=["backbone", "shots", "comparison", "episodes", "half_width", "target", "met",
                                        "episodes_needed", "half_width_drawn_queries"])
    rank = frame.comparison.map({c: i for i, c in enumerate(comparisons)})
    return frame.assign(rank=rank).sort_values(["backbone", "shots", "rank"]).drop(columns="rank") \
        .reset_index(drop=True)


def write_precision(precision: pd.DataFrame, stem) -> dict[str, Path]:
    """`precision_against_targets` as `stem`.csv and as Markdown, `stem`.md."""
    md = Path(stem).with_suffix(".md")
    atomic_write(md, lambda f: f.write(precision_table(precision).encode()))
    return {"precision": write_table(precision, Path(stem).with_suffix(".csv")), "precision_md": md}


def precision_table(precision: pd.DataFrame) -> str:
    """`precision_against_targets` as Markdown: one line per comparison and shot count."""
    drawn = precision.half_width_drawn_queries.notna().any()
    lines = ["| backbone | shots | comparison | episodes | 95% half-width | asked | met | episodes for the asked half-width |"
             + (" half-width on the drawn queries only |" if drawn else ""),
             "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |" + (" ---: |" if drawn else "")]
    for row in precision.itertuples():
        label = " - ".join(method_label(m) for m in row.comparison.split(" - "))
        lines.append(f"| {row.backbone} | {row.shots} | {label} | {row.episodes} | {row.half_width:.1f} | "
                     f"{row.target:.1f} | {'yes' if row.met else 'no'} | {_count(row.episodes_needed)} |"
                     + (f" {row.half_width_drawn_queries:.1f} |" if drawn else ""))
    return "\n".join(lines) + "\n"


def _count(value) -> str:
    return "-" if pd.isna(value) else str(int(value))


def bootstrap_differences(outcomes: pd.DataFrame, groups: dict[str, Sequence[str]], reference: str,
                          draws: int = 2000, seed: int = 0, scale: float = 100.0) -> pd.DataFrame:
    """Each method's accuracy minus `reference`'s, per group of classes, with a 95% interval over the test set.

    `outcomes`: one row per (method, seed, test image) with `image_id`, `class_name` and `correct`. An image's
    score is its share of correct seeds; a group's difference is the mean over its images of the method's score
    minus the reference's on the same image (paired), i.e. the difference of the groups' top-1. The interval is
    the 2.5 and 97.5 percentiles of that difference over `draws` resamplings of the test images with
    replacement within each class (stratified, so every class keeps its number of test images); it covers the
    test set's noise, while averaging over seeds damps the training noise. `first_better_share`: the share of
    resamplings in which the method is ahead. In the units of `scale` (percentage points)."""
    score = outcomes.groupby(["method", "class_name", "image_id"]).correct.mean().unstack("method").sort_index()
    if reference not in score:
        raise KeyError(f"no outcomes of the reference {reference!r} (methods: {sorted(score.columns)})")
    rng = np.random.default_rng(seed)
    rows = []
    for group, classes in groups.items():
        part = score[score.index.get_level_values("class_name").isin(list(classes))]
        sizes = part.groupby(level="class_name", sort=False).size()
        starts = np.concatenate([[0], np.cumsum(sizes.to_numpy())[:-1]])
        picks = np.concatenate([start + rng.integers(0, size, (draws, size)) for start, size in
                                zip(starts, sizes.to_numpy())], axis=1)  # (draws, images of the group)
        for method in [m for m in score.columns if m != reference]:
            difference = (part[method] - part[reference]).to_numpy() * scale
            resampled = difference[picks].mean(axis=1)
            low, high = np.percentile(resampled, [2.5, 97.5])
            rows.append({"group": group, "method": method, "reference": reference, "classes": len(sizes),
                         "test_images": len(part), "mean": float(difference.mean()), "low": float(low),
                         "high": float(high), "first_better_share": float((resampled > 0).mean())})
    return pd.DataFrame(rows)


def _cell(mean: float, half: float, n: int, latex: bool, bold: bool = False) -> str:
    if n < 2:  # one episode or seed: no interval to show
        text = f"{mean:.1f}"
    else:
        text = f"{mean:.1f} $\\pm$ {half:.1f}" if latex else f"{mean:.1f} ± {half:.1f}"
    return (f"\\textbf{{{text}}}" if latex else f"**{text}**") if bold else text


def wide_table(summary: pd.DataFrame, rows: Sequence[str], columns: Sequence[str], row_key: str = "method",
               latex: bool = False, bold_best: bool = True) -> pd.DataFrame:
    """The paper's layout: one row per method (in `rows` order), one column per combination of `columns`
    (e.g. backbone, shots), cells 'mean ± interval'; the best mean of each column in bold."""
    table = {}
    for keys, group in summary.groupby(list(columns), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        name = " / ".join(_column_name(c, k) for c, k in zip(columns, keys))
        group = group.set_index(row_key)
        best = group["mean"].max()
        table[name] = {r: _cell(group.loc[r, "mean"], group.loc[r, "half_width"], group.loc[r, "n"], latex,
                                bold_best and np.isclose(group.loc[r, "mean"], best))
                       for r in rows if r in group.index}
    frame = pd.DataFrame(table).reindex([r for r in rows if any(r in col for col in table.values())])
    frame.index = [method_label(r, latex) if row_key == "method" else r for r in frame.index]
    return frame


def _column_name(column: str, key) -> str:
    return f"{key}-shot" if column == "shots" else str(key)


def row_name(method: str, noise_ratio: float | None = None) -> str:
    """The table row of a method's generated images: GeNIe at another r than its own (0.8) is the row `genie_r<r>`
    (the fixed-r rows of the ablation); every other method, and GeNIe at its own r, is its own name."""
    if method == "genie" and noise_ratio is not None and round(float(noise_ratio), 6) != METHODS["genie"].noise_ratio:
        return f"genie_r{float(noise_ratio):g}"
    return method


def read_augmentations(path) -> pd.DataFrame:
    """An `augmentations.csv` (few-shot or long tail: one row per generated image) as written: store keys and
    source ids as strings, empty cells as empty strings."""
    return pd.read_csv(path, dtype={"key": str, "source_id": str}, keep_default_na=False)


def write_table(table: pd.DataFrame, path) -> Path:
    """A result table as CSV, written atomically (a crash never leaves half a file)."""
    path = Path(path)
    atomic_write(path, lambda f: f.write(table.to_csv(index=False).encode()))
    return path


def write_tables(stem, caption: str, markdown: pd.DataFrame, latex: pd.DataFrame) -> dict[str, Path]:
    """`stem`.md and `stem`.tex, each from its own rendering of one wide table (index = first column)."""
    stem = Path(stem)
    texts = {"md": markdown.to_markdown(stralign="right") + "\n",
             "tex": latex.to_latex(escape=False, caption=caption, column_format="l" + "r" * latex.shape[1])}
    paths = {kind: stem.with_suffix(f".{kind}") for kind in texts}
    for kind, path in paths.items():
        atomic_write(path, lambda f, text=texts[kind]: f.write(text.encode()))
    return paths


def interval_table(differences: pd.DataFrame, rows: Sequence[str], latex: bool = False) -> pd.DataFrame:
    """`bootstrap_differences` as a wide table: one row per method (in `rows` order), one column per group,
    cells 'mean [low, high]' with signs (percentage points)."""
    table = {}
    for group, part in differences.groupby("group", sort=False):
        part = part.set_index("method")
        table[group] = {m: f"{part.loc[m, 'mean']:+.1f} [{part.loc[m, 'low']:+.1f}, {part.loc[m, 'high']:+.1f}]"
                        for m in rows if m in part.index}
    frame = pd.DataFrame(table).reindex([m for m in rows if m in set(differences.method)])
    frame.index = [method_label(m, latex) for m in frame.index]
    return frame


def difference_table(differences: pd.DataFrame, columns: Sequence[str] = ("backbone", "shots"),
                     latex: bool = False) -> pd.DataFrame:
    """Paired differences as a wide table: one row per comparison, 'mean ± interval' (percentage points)."""
    frame = differences.assign(method=differences.comparison)
    table = wide_table(frame, list(dict.fromkeys(frame.comparison)), columns, row_key="method", latex=latex,
                       bold_best=False)
    table.index = [" - ".join(method_label(m, latex) for m in c.split(" - ")) for c in table.index]
    return table
