"""The tables of README.md and docs/*.md, written from the committed result files (`docs/results/<profile>/`) by
code, never by hand. A table's place in a page is a pair of markers,

    <!-- table: embedded/fewshot/accuracy -->
    ...written here by `python -m genie_utils.tables` (make tables)...
    <!-- /table -->

named after the result files it is drawn from. A number in a sentence is marked the same way, inside its line:

    P(target) crosses P(source) at r = <!-- value: companion/crossover -->0.68<!-- /value -->.

`--check` rewrites nothing and fails, naming each table or value, where a page differs from its files (the tests run
it). An unknown name or a marker left open is an error.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from . import claims, editing, longtail, preflight, results, settle
from .companion import card
from .fewshot import SIZED_COMPARISONS, table_rows
from .profiles import load_profile, project_root
from .recipe import EDITING_RATIOS, GENIE_NOISE_RATIO
from .run_files import BenchmarkFiles, RunFiles

# The shipped model's folder, whose editing benchmark (editing.csv) README quotes.
COMPANION = Path("models") / "genie-companion"
# The pages with tables: README and every page under docs/ (not the executed notebooks).
PAGES = ("README.md", "docs/*.md")
# A marker is a line of its own (a mention inside a sentence is prose).
BLOCK = re.compile(r"^<!-- table: (?P<name>[^ ]+) -->\n(?P<body>.*?)^<!-- /table -->$", re.S | re.M)
OPENED = re.compile(r"^<!-- table: (?P<name>[^ ]+) -->$", re.M)
CLOSED = re.compile(r"^<!-- /table -->$", re.M)
# A value is marked inside one line.
VALUE = re.compile(r"<!-- value: (?P<name>[^ ]+) -->(?P<body>[^\n]*?)<!-- /value -->")
VALUE_OPENED = re.compile(r"<!-- value: (?P<name>[^ ]+) -->")

# The few-shot comparisons README shows of the quick run (docs/results.md shows every one).
MAIN_COMPARISONS = ("genie - weak", "genie - img2img_low", "genie - img2img_high", "genie - txt2img",
                    "genie_ada - genie")
# The long-tail rows README shows (docs/results.md shows every one).
MAIN_LONGTAIL_ROWS = ("plain", "logit_adjusted", "genie", "genie_ada", "txt2img", "genie+logit_adjusted")


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(stralign="right") + "\n"


def fewshot_accuracy(path: Path, rows=None) -> str:
    """The few-shot table (mean ± 95% Student-t interval over episodes, percent) from `path` (a run's
    `fewshot/results.csv`)."""
    summary = results.summarise(pd.read_csv(path), ["backbone", "shots", "method"])
    return _markdown(results.wide_table(summary, rows or table_rows(), ["backbone", "shots"]))


def fewshot_differences(path: Path, comparisons=None) -> str:
    """The paired differences (points, mean ± 95% Student-t interval over episodes) from `path` (a run's
    `fewshot/results.csv`)."""
    differences = results.paired_differences(pd.read_csv(path), order=table_rows())
    if comparisons:
        rank = {c: i for i, c in enumerate(comparisons)}
        differences = differences[differences.comparison.isin(comparisons)]
        differences = differences.iloc[differences.comparison.map(rank).argsort(kind="stable")]
    return _markdown(results.difference_table(differences))


def fewshot_precision(path: Path, targets: dict[int, float]) -> str:
    """The claims' half-widths against those asked (`targets`: shots -> points), with the episodes each would need
    (Student-t), from `path` (a run's `fewshot/results.csv`)."""
    differences = results.paired_differences(pd.read_csv(path), order=table_rows())
    return results.precision_table(results.precision_against_targets(differences, targets, SIZED_COMPARISONS))


def longtail_accuracy(path: Path, rows=longtail.ROWS) -> str:
    """The long-tail table (top-1 per bin, mean ± 95% Student-t interval over seeds) from `path` (a run's
    `longtail/results.csv`)."""
    return _markdown(longtail.accuracy_table(pd.read_csv(path), rows))


def longtail_test_set(path: Path, rows=longtail.ROWS) -> str:
    """A long-tail table of each row minus a reference per bin, with its bootstrap interval over the test images,
    from `path` (`longtail/differences.csv`: minus plain cross-entropy; `longtail/added_to_logit_adjustment.csv`:
    minus logit adjustment alone)."""
    differences = pd.read_csv(path)
    return _markdown(results.interval_table(differences, rows).rename(columns=str.capitalize))


def noise_sources(path: Path) -> str:
    """The queries' share of each claim's spread over episodes, from `path` (a run's `fewshot/noise_sources.csv`)."""
    table = pd.read_csv(path)
    table = table[table.comparison.isin(SIZED_COMPARISONS)]
    table = table.iloc[table.comparison.map({c: i for i, c in enumerate(SIZED_COMPARISONS)}).argsort(kind="stable")]
    table = table.sort_values(["backbone", "shots"], kind="stable")
    lines = ["| shots | comparison | episodes | queries per episode | 95% half-width | queries' share of the variance "
             "| half-width with very many queries |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in table.itertuples():
        label = " - ".join(results.method_label(m) for m in row.comparison.split(" - "))
        lines.append(f"| {row.shots} | {label} | {row.episodes} | {row.queries_per_episode:.0f} | {row.half_width:.1f} "
                     f"| {row.query_share:.2f} | {row.half_width_without_queries:.1f} |")
    return "\n".join(lines) + "\n"


def label_consistency(path: Path) -> str:
    """The oracle's judgement of every augmentation, from `path` (a run's `fewshot/label_consistency.csv`)."""
    table = pd.read_csv(path)
    order = {row: i for i, row in enumerate(table_rows())}
    table = table.iloc[table.row.map(order).argsort(kind="stable")]
    lines = ["| augmentation | images judged | oracle's top class = label | mean P(label) |",
             "| --- | ---: | ---: | ---: |"]
    for row in table.itertuples():
        label = results.method_label(row.row) + (" (real support images)" if row.row in ("weak", "strong") else "")
        lines.append(f"| {label} | {row.images} | {row.oracle_agrees:.2f} | {row.p_label:.2f} |")
    return "\n".join(lines) + "\n"


def genie_oracle_agreement(path: Path) -> str:
    """How often the oracle names the target class of GeNIe's few-shot images at each r, from
    `path` (a run's `fewshot/label_consistency.csv`)."""
    table = pd.read_csv(path)
    genie = table[table.method == "genie"].sort_values("noise_ratio")
    shares = ", ".join(f"{share:.0%}" for share in genie.oracle_agrees)
    ratios = ", ".join(f"{r:g}" for r in genie.noise_ratio)
    return f"the oracle names the target class for {shares} of GeNIe's few-shot images at r = {ratios}"


def ada_cost(path: Path) -> str:
    """GeNIe-Ada's cost per kept image against GeNIe's, from `path` (a run's `ada/cost.csv`) (notebook 03)."""
    table = pd.read_csv(path)
    lines = ["| method | images timed | UNet steps | VAE encodes | VAE decodes | seconds | relative |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in table.itertuples():
        lines.append(f"| {row.method} | {row.kept_images} | {row.unet_steps_per_image:.0f} | "
                     f"{row.vae_encodes_per_image:.0f} | {row.vae_decodes_per_image:.0f} | {row.seconds_per_image:.2f} | "
                     f"{row.relative_time:.1f}x |")
    return "\n".join(lines) + "\n"


def ada_choices(path: Path) -> str:
    """How many pairs GeNIe-Ada gave each r*, from `path` (a run's `ada/choices.csv`) (notebook 03)."""
    counts = pd.read_csv(path).noise_ratio.value_counts().sort_index()
    return "r* = " + ", ".join(f"{ratio:g}: {count}" for ratio, count in counts.items()) + " pairs"


def ada_pairs(path: Path) -> str:
    """The pairs and episodes of notebook 03's GeNIe-Ada run, from `path` (a run's `ada/choices.csv`)."""
    choices = pd.read_csv(path)
    return f"{len(choices)} GeNIe pairs of {choices.episode.nunique()}"


def class_probabilities(path: Path, shots: int = 5) -> str:
    """P(source) and P(target) of GeNIe's candidates at the lowest and highest r, and the r where they are closest,
    from `path` (a run's `fewshot/class_probability_summary.csv`) (notebook 05)."""
    table = pd.read_csv(path)
    table = table[table.shots == shots].pivot(index="noise_ratio", columns="value", values="mean").sort_index()
    low, high = table.index[0], table.index[-1]
    closest = (table.p_source - table.p_target).abs().idxmin()
    return (f"P(source) falls from {table.p_source[low]:.2f} to {table.p_source[high]:.2f} and P(target) rises from "
            f"{table.p_target[low]:.2f} to {table.p_target[high]:.2f} between r = {low:g} and {high:g}; they are "
            f"closest at r = {closest:g} ({table.p_source[closest]:.2f} and {table.p_target[closest]:.2f})")


def support_share(path: Path, comparisons=("genie - img2img_low", "genie - img2img_high")) -> str:
    """The range, over shots, of the share of the spread over episodes that is not the queries' (1 - query share) in
    `comparisons`, from `path` (a run's `fewshot/noise_sources.csv`)."""
    table = pd.read_csv(path)
    share = 1 - table[table.comparison.isin(comparisons)].query_share
    return f"{share.min():.2f} to {share.max():.2f}"


def query_share(path: Path, comparison: str) -> str:
    """The queries' share of the spread of one comparison, per shot count, from `path` (a run's
    `fewshot/noise_sources.csv`)."""
    table = pd.read_csv(path).sort_values("shots")
    part = table[table.comparison == comparison]
    return " and ".join(f"{row.query_share:.2f} ({row.shots}-shot)" for row in part.itertuples())


def queries_per_episode(path: Path) -> str:
    """The mean number of queries an episode is scored on, per shot count, from `path` (a run's
    `fewshot/noise_sources.csv`)."""
    table = pd.read_csv(path).drop_duplicates("shots").sort_values("shots")
    return " and ".join(f"{row.queries_per_episode:.0f} in {row.shots}-shot" for row in table.itertuples())


def _gain(row) -> str:
    return f"{row['mean']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}]"


def test_set_gain(path: Path, method: str, group: str = "few") -> str:
    """One row's difference with its bootstrap interval over the test images, from a long-tail differences file
    (`path`: `longtail/differences.csv` or `longtail/added_to_logit_adjustment.csv`)."""
    table = pd.read_csv(path)
    rows = table[(table.method == method) & (table.group == group)]
    if len(rows) != 1:
        raise ValueError(f"{path} has {len(rows)} rows of {method!r} in {group!r}, not one")
    return _gain(rows.iloc[0])


def budget_curve(path: Path) -> str:
    """The long tail's gain over plain cross-entropy against the budget and the generation seed (Few bin and
    overall, bootstrap interval over the test images), from `benchmarks/longtail_budget.py`'s file `path`."""
    table = pd.read_csv(path)
    lines = ["| generation seed | images per rare class | row | Few | Overall | minutes (this run) |",
             "| ---: | ---: | --- | ---: | ---: | ---: |"]
    for (seed, images, method), part in table.groupby(["generation_seed", "budget", "method"], sort=False):
        by_group = part.set_index("group")
        few, overall = by_group.loc["few"], by_group.loc["overall"]
        lines.append(f"| {seed} | {images} | {results.method_label(method)} | {_gain(few)} | {_gain(overall)} | "
                     f"{part.seconds.iloc[0] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def budget_gain(path: Path, method: str, images: int, seed: int = 0, group: str = "few") -> str:
    """One row's gain at one budget and generation seed, from `benchmarks/longtail_budget.py`'s file `path`."""
    table = pd.read_csv(path)
    rows = table[(table.method == method) & (table.budget == images) & (table.generation_seed == seed)
                 & (table.group == group)]
    if len(rows) != 1:
        raise ValueError(f"{path} has {len(rows)} rows of {method!r} at budget {images}, seed {seed}, {group!r}")
    return _gain(rows.iloc[0])


def budget_clear_of_zero(path: Path, group: str = "few") -> str:
    """Which rows of the budget benchmark (`path`) gain over plain cross-entropy with the whole interval above 0 in
    `group`, in words: "none", or each as row (budget, seed)."""
    table = pd.read_csv(path)
    clear = table[(table.group == group) & (table.low > 0)]
    return ", ".join(f"{results.method_label(row.method)} ({row.budget} images, seed {row.generation_seed})"
                     for row in clear.itertuples()) or "none"


def stock_pipeline(path: Path, measure: str, ratio: float) -> str:
    """One measure at one r of the stock diffusers pipeline's judgement (`benchmarks/stock_pipeline.py`'s file)."""
    table = pd.read_csv(path)
    rows = table[table.noise_ratio.round(6) == ratio]
    if len(rows) != 1:
        raise ValueError(f"{path} has {len(rows)} rows at r = {ratio:g}; rerun benchmarks/stock_pipeline.py with that r")
    return f"{rows[measure].iloc[0]:.2f}"


def throughput(path: Path, setting: str, measure: str = "images_per_second") -> str:
    """The best `measure` of one setting in a throughput record (`benchmarks/throughput.py`'s throughput.csv)."""
    table = pd.read_csv(path)
    values = table[table.setting == setting][measure].dropna()
    if values.empty:
        raise ValueError(f"{path} has no {measure} for setting {setting!r}")
    return f"{values.max():.2f}"


def throughput_table(path: Path) -> str:
    """Every timed setting of a throughput record (`benchmarks/throughput.py`'s throughput.csv) as Markdown."""
    lines = ["| setting | batch | images/s (range of repeats) | max abs. difference to float32 | GeNIe-Ada: kept images/s, "
             "time per image vs GeNIe |", "| --- | ---: | --- | ---: | --- |"]
    for row in pd.read_csv(path).itertuples():
        ada = "" if pd.isna(row.ada_images_per_second) else (
            f"{row.ada_images_per_second:.2f}, {row.ada_relative_cost:.2f}x")
        lines.append(f"| {row.setting} | {row.batch_size} | {row.images_per_second:.2f} ({row.slowest:.2f}-"
                     f"{row.fastest:.2f}) | {row.max_abs_difference:.1e} | {ada} |")
    return "\n".join(lines) + "\n"


def throughput_relative(path: Path, setting: str, reference: str = "fp16") -> str:
    """The best images/s of `setting` over the best of `reference`, from a throughput record."""
    table = pd.read_csv(path)
    best = table.groupby("setting").images_per_second.max()
    return f"{best[setting] / best[reference]:.2f}"


def image_steps_per_second(path: Path, setting: str) -> float:
    """The best UNet image-steps per second of `setting` in a throughput record."""
    table = pd.read_csv(path)
    part = table[table.setting == setting]
    return float((part.images_per_second * part.unet_steps_per_image).max())


def companion_rows(path: Path, steps: int | str | None = None) -> pd.DataFrame:
    """An editing benchmark's rows (`path`: an editing.csv) at the embedded recipe, at `steps` denoising steps (the
    paper's 50) with guidance at every step, or (`steps` a setting's label, e.g. "20 steps, guidance 7.5 at t 0-500")
    at that setting."""
    own, rows = card.editing_rows(load_profile("embedded"), path)
    if steps is not None:
        everything = pd.read_csv(path)
        rows = everything[everything.setting == steps] if isinstance(steps, str) else everything[
            (everything.steps == steps) & (everything.guidance_timesteps.isna())]
        if rows.empty:
            raise ValueError(f"{path} has no rows at {steps}; it has {sorted(set(everything.setting))}")
    return rows


def companion_targets(path: Path) -> str:
    """An editing benchmark (`path`: an editing.csv) at the embedded recipe against its targets (`editing.TARGETS`)."""
    return card.targets_table(companion_rows(path)) + "\n"


def companion_measure(path: Path, measure: str, ratio: float = GENIE_NOISE_RATIO, group: str = "all classes",
                      steps: int | str | None = None, percent: bool = False) -> str:
    """One measure of an editing benchmark (`path`: an editing.csv) for one group of target classes (`crossover`:
    where P(target) crosses P(source); else its value at `ratio`)."""
    rows = companion_rows(path, steps)
    rows = rows[rows.group == group]
    value = rows.crossover.iloc[0] if measure == "crossover" else rows[rows.noise_ratio.round(6) == ratio][measure].iloc[0]
    return f"{value:.0%}" if percent else f"{value:.2f}"


def companion_editing(path: Path, steps: int | None = None) -> str:
    """An editing benchmark (`path`: an editing.csv) over all classes, a row per r."""
    return card.editing_table(companion_rows(path, steps)) + "\n"


def steps_difference(path: Path, measure: str, low: float = 0.0, high: float = 1.0, absolute: bool = False) -> str:
    """The largest difference, 50 steps minus the embedded recipe's, of one measure over all classes at r in
    [`low`, `high`] (with `absolute`, the largest absolute difference), from an editing.csv."""
    def curve(steps):
        rows = companion_rows(path, steps)
        return rows[rows.group == "all classes"].set_index("noise_ratio")[measure]
    difference = (curve(50) - curve(None)).loc[low - 1e-9:high + 1e-9]
    return f"{(difference.abs() if absolute else difference).max():.2g}"


def editing_agreement(benchmarks: BenchmarkFiles, name: str) -> str:
    """Each cheaper setting of the editing benchmark `name` in a run's `benchmarks` against the profile's recipe
    (`<name>_agreement.csv`, `editing.agreement`): the cells outside the recipe's 95% half-width, and the seconds
    each setting took (`<name>.csv`)."""
    cells = pd.read_csv(benchmarks.editing_agreement(name))
    seconds = pd.read_csv(benchmarks.editing(name)).groupby("setting", sort=False).seconds.first()
    labels = {"p_target": "P(target)", "p_source": "P(source)", "copy_rate": "copy rate", "keep": "source keep",
              "hard_negative_rate": "hard negatives", "oracle_target": "oracle names the target"}
    lines = ["| setting | seconds | cells outside the recipe's half-width | where: value against the recipe's ± half-width |",
             "| --- | ---: | ---: | --- |"]
    for setting, part in cells.groupby("setting", sort=False):
        missed = part[~part.within.astype(bool)]
        where = "; ".join(f"{labels.get(row.measure, row.measure)} at r = {row.noise_ratio:g}: {row.value:.3f} against "
                          f"{row.reference:.3f} ± {row.half_width:.3f}" for row in missed.itertuples())
        lines.append(f"| {setting} | {seconds.get(setting, float('nan')):.0f} | {len(missed)} of {len(part)} | "
                     f"{where or '-'} |")
    return "\n".join(lines) + "\n"


def oracle_reference(path: Path, group: str = "all classes", measure: str = "p_true") -> str:
    """What the oracle gives real images of identities the generator never saw, for one group of classes, from
    `editing.oracle_reference`'s table (`path`)."""
    value = pd.read_csv(path).set_index("group").loc[group, measure]
    return f"{value:,}" if measure in ("images", "classes") else f"{value:.2f}"


def agreeing(path: Path) -> str:
    """The cheaper settings of an editing benchmark whose every cell lies within the recipe's half-width
    (`editing.agreeing_settings` on its `<name>_agreement.csv`, `path`), in words: "none", or their labels."""
    return ", ".join(editing.agreeing_settings(pd.read_csv(path))) or "none"


def companion_judge(root: Path) -> str:
    """The oracle's judgement of the shipped model's GeNIe images per r and bin, from `judge_curve.csv`."""
    return card.judge_table(pd.read_csv(root / COMPANION / "judge_curve.csv")) + "\n"


# The editing benchmark's measures and groups a page may quote, at each of its r (`companion/editing/...` values).
EDITING_MEASURES = ("p_target", "p_source", "oracle_target", "copy_rate", "keep", "hard_negative_rate")
EDITING_GROUPS = {"": "all classes", "/many": "many (generator pool)", "/medium": "medium (generator pool)",
                  "/few": "few (generator pool)"}


def editing_values(name: str, path: Path, settings=(("editing", None), ("editing-50", 50)),
                   tables: bool = True) -> dict[str, Callable[[], str]]:
    """`<name>/targets` and `<name>/editing` (tables, with `tables`), `<name>/crossover[-50]`, and
    `<name>/<label>/<measure>/<r>[/<bin>]` for each (label, steps) of `settings`: one cell of an editing benchmark
    (`path`: an editing.csv) at the embedded recipe (steps None) or at that many steps, for all classes or one bin."""
    values = {f"{name}/targets": lambda: companion_targets(path),
              f"{name}/editing": lambda: companion_editing(path)} if tables else {}
    for label, steps in settings:
        crossover = f"{name}/crossover" + ("" if steps is None else f"-{steps}" if isinstance(steps, int) else
                                           f"-{label}")
        values[crossover] = lambda s=steps: companion_measure(path, "crossover", steps=s)
        for measure in EDITING_MEASURES:
            for ratio in EDITING_RATIOS:
                for suffix, group in EDITING_GROUPS.items():
                    values[f"{name}/{label}/{measure}/{ratio:g}{suffix}"] = (
                        lambda m=measure, r=ratio, g=group, s=steps: companion_measure(path, m, r, g, s))
    return values


def settle_verdicts(profile: str) -> str:
    """The verdict of every claim from the committed slices of a settle profile."""
    return claims.verdict_table(settle.verdicts(load_profile(profile)))


def settle_record(profile: str) -> str:
    """One paragraph on the committed slices of a settle profile: episodes run, dates, devices and commits."""
    settings = load_profile(profile)
    finished = settle.done(settings)
    records = [json.loads((settle.folder(settings) / f"{s.name}.json").read_text()) for s in finished]
    spec = settings["fewshot"]
    counts = ", ".join(f"{sum(s.stop - s.start for s in finished if s.shots == shots)} of {count} {shots}-shot "
                       "episodes" for shots, count in zip(spec["shots"], spec["episodes"]))
    tail = "done" if any(s.shots is None for s in finished) else "not yet run"
    days = ", ".join(sorted({r["finished"][:10] for r in records}))
    devices = "; ".join(sorted({f"{r['device']}, {r['processor']}" for r in records}))
    commits = ", ".join(sorted({r["commit"] for r in records}))
    minutes = sum(r["seconds"] for r in records) / 60
    return (f"Slices run: {len(finished)} of {len(settle.plan(settings))} ({counts}; the long tail {tail}), "
            f"{minutes:.0f} minutes in all, finished on {days}, on {devices}, at commit {commits}. Each slice's "
            "command, time and machine are in its `.json` beside its rows.\n")


def settle_slices(profile: str) -> str:
    """A row per committed slice of a settle profile: its episodes, minutes, when it finished, machine and commit."""
    settings = load_profile(profile)
    lines = ["| slice | minutes | finished (UTC) | machine | commit |", "| --- | ---: | --- | --- | --- |"]
    for piece in settle.done(settings):
        record = json.loads((settle.folder(settings) / f"{piece.name}.json").read_text())
        lines.append(f"| {piece.name} | {record['seconds'] / 60:.1f} | {record['finished'][:16].replace('T', ' ')} | "
                     f"{record['device']}, {record['processor']} | {record['commit']} |")
    return "\n".join(lines) + "\n"


def _targets(profile: str) -> dict[int, float]:
    spec = load_profile(profile)["fewshot"]
    return dict(zip(spec["shots"], spec["target_half_widths"]))


def renderers(root: Path) -> dict[str, Callable[[], str]]:
    """Every table and value a page may name, each drawing from the committed result files under
    `root`/docs/results/ and the shipped model's folder."""
    embedded = RunFiles(root / "docs" / "results" / "embedded")  # the published copies have a run's layout
    fewshot, tail, ada, benchmarks = embedded.fewshot, embedded.longtail, embedded.ada, embedded.benchmarks
    budget = benchmarks.longtail_budget
    speed = RunFiles(root / "docs" / "results" / "paper").benchmarks.throughput
    first_model = benchmarks.editing("editing_first_model")
    return {
        "embedded/ada/cost": lambda: ada_cost(ada.cost),
        "embedded/ada/choices": lambda: ada_choices(ada.choices),
        "embedded/ada/pairs": lambda: ada_pairs(ada.choices),
        "embedded/fewshot/class-probabilities": lambda: class_probabilities(fewshot.class_probability_summary),
        "embedded/fewshot/queries-per-episode": lambda: queries_per_episode(fewshot.noise_sources),
        "embedded/fewshot/support-share-img2img": lambda: support_share(fewshot.noise_sources),
        "embedded/fewshot/query-share-txt2img": lambda: query_share(fewshot.noise_sources, "genie - txt2img"),
        # one row's Few-bin difference with its interval over the test images: minus plain cross-entropy, and (the
        # rows on top of logit adjustment) minus logit adjustment alone
        **{f"embedded/longtail/minus-plain/{method}": (lambda method=method: test_set_gain(tail.differences, method))
           for method in longtail.ROWS if method != "plain"},
        **{f"embedded/longtail/added-to-logit-adjustment/{method}": (lambda method=method: test_set_gain(
            tail.added_to_logit_adjustment, method)) for method in longtail.COMBINED},
        "embedded/benchmarks/longtail-budget": lambda: budget_curve(budget),
        "embedded/benchmarks/longtail-budget/clear-of-zero": lambda: budget_clear_of_zero(budget),
        **{f"embedded/benchmarks/stock-pipeline/{measure}/{ratio:g}": (lambda m=measure, r=ratio: stock_pipeline(
            benchmarks.stock_pipeline, m, r))
           for measure in ("p_target", "p_source", "oracle_target") for ratio in EDITING_RATIOS},
        "embedded/benchmarks/editing-steps": lambda: editing_agreement(benchmarks, "editing_steps"),
        "embedded/benchmarks/editing-guidance-interval": lambda: editing_agreement(
            benchmarks, "editing_guidance_interval"),
        **{f"embedded/benchmarks/{name.replace('_', '-')}/agreeing": (lambda name=name: agreeing(
            benchmarks.editing_agreement(name))) for name in ("editing_steps", "editing_guidance_interval")},
        **editing_values("embedded/benchmarks/editing-steps", benchmarks.editing("editing_steps"),
                         (("editing-10", 10), ("editing-15", 15)), tables=False),
        **editing_values("embedded/benchmarks/editing-guidance-interval",
                         benchmarks.editing("editing_guidance_interval"),
                         (("t-0-500", "20 steps, guidance 7.5 at t 0-500"),
                          ("t-500-999", "20 steps, guidance 7.5 at t 500-999")), tables=False),
        # one row's gain over plain cross-entropy at a budget and generation seed, Few bin or overall
        **{f"embedded/benchmarks/longtail-budget/{method}/{images}/seed-{seed}/{group}":
           (lambda method=method, images=images, seed=seed, group=group: budget_gain(budget, method, images, seed, group))
           for method in longtail.BUDGET_ROWS if method != "plain" for images in (4, 8, 16) for seed in (0, 1)
           for group in ("few", "overall")},
        "paper/benchmarks/throughput/float16": lambda: throughput(speed, "fp16"),
        "paper/benchmarks/throughput/compiled": lambda: throughput(speed, "fp16-compile"),
        "paper/benchmarks/throughput/ada-relative-cost": lambda: throughput(speed, "fp16", "ada_relative_cost"),
        "paper/benchmarks/throughput": lambda: throughput_table(speed),
        "paper/benchmarks/throughput/compiled-relative": lambda: throughput_relative(speed, "fp16-compile"),
        "paper/benchmarks/throughput/channels-last-relative": lambda: throughput_relative(speed, "fp16-channels-last"),
        "paper/benchmarks/throughput/float16-image-steps": lambda: f"{image_steps_per_second(speed, 'fp16'):.0f}",
        # hours of generation of a paper profile's image-steps (docs/profiles.md counts them) at a setting's best rate
        **{f"paper/benchmarks/throughput/{name}-hours-{dataset}":
           (lambda setting=setting, steps=steps: f"{steps / image_steps_per_second(speed, setting) / 3600:.0f}")
           for name, setting in (("float16", "fp16"), ("compiled", "fp16-compile"))
           for dataset, steps in (("mini-imagenet", preflight.fewshot_image_steps(load_profile("paper"))),
                                  ("tiered-imagenet", preflight.fewshot_image_steps(load_profile("paper-tiered"))))},
        **{f"paper/{name}/fewshot-images": (lambda name=name: f"{preflight.fewshot_images(load_profile(name)):,}")
           for name in ("paper", "paper-tiered")},
        **{f"paper/{name}/fewshot-unet-evaluations": (
            lambda name=name: f"{preflight.fewshot_image_steps(load_profile(name)) / 1e6:.3g} M")
           for name in ("paper", "paper-tiered")},
        "companion/judge": lambda: companion_judge(root),
        **{f"oracle/real-images/{measure}{suffix}": (lambda m=measure, g=group: oracle_reference(
            benchmarks.oracle_reference, g, m))
           for measure in ("p_true", "p_true_per_image", "named_per_image", "images")
           for suffix, group in EDITING_GROUPS.items()},
        **editing_values("companion", root / COMPANION / "editing.csv"),
        "companion/hard-negatives-at-0.8": lambda: companion_measure(root / COMPANION / "editing.csv",
                                                                     "hard_negative_rate", percent=True),
        **{f"companion/50-steps/{measure}-apart": (lambda measure=measure: steps_difference(
            root / COMPANION / "editing.csv", measure, absolute=True)) for measure in EDITING_MEASURES},
        **editing_values("companion/first-model", first_model),
        "companion/first-model/50-steps/p_target-above-up-to-0.3": lambda: steps_difference(
            first_model, "p_target", high=0.3),
        "companion/first-model/50-steps/copy_rate-above": lambda: steps_difference(first_model, "copy_rate"),
        "companion/first-model/50-steps/p_target-apart-from-0.7": lambda: steps_difference(
            first_model, "p_target", low=0.7, absolute=True),
        "embedded/fewshot/accuracy": lambda: fewshot_accuracy(fewshot.results),
        "embedded/fewshot/accuracy-main": lambda: fewshot_accuracy(fewshot.results, list(table_rows()[:9])),
        "embedded/fewshot/differences": lambda: fewshot_differences(fewshot.results),
        "embedded/fewshot/differences-main": lambda: fewshot_differences(fewshot.results, MAIN_COMPARISONS),
        "embedded/fewshot/label-consistency": lambda: label_consistency(fewshot.label_consistency),
        "embedded/fewshot/genie-oracle-agreement": lambda: genie_oracle_agreement(fewshot.label_consistency),
        "embedded/fewshot/precision": lambda: fewshot_precision(fewshot.results, _targets("embedded")),
        "embedded/fewshot/noise-sources": lambda: noise_sources(fewshot.noise_sources),
        "embedded/longtail/accuracy": lambda: longtail_accuracy(tail.results),
        "embedded/longtail/minus-plain": lambda: longtail_test_set(tail.differences,
                                                                   [m for m in longtail.ROWS if m != "plain"]),
        "embedded/longtail/added-to-logit-adjustment": lambda: longtail_test_set(
            tail.added_to_logit_adjustment, longtail.COMBINED),
        "embedded/longtail/accuracy-main": lambda: longtail_accuracy(tail.results, MAIN_LONGTAIL_ROWS),
        "embedded-settle/verdicts": lambda: settle_verdicts("embedded-settle"),
        "embedded-settle/record": lambda: settle_record("embedded-settle"),
        "embedded-settle/slices": lambda: settle_slices("embedded-settle"),
    }


def pages(root: Path) -> list[Path]:
    return sorted({p for pattern in PAGES for p in root.glob(pattern)})


def rewrite(text: str, tables: dict[str, Callable[[], str]], page: str = "page") -> tuple[str, list[str]]:
    """`text` with every marked table written anew, and the names of those that changed. A marker with an unknown
    name, or one left open, is a ValueError naming the page and the marker."""
    opened = [m.group("name") for m in OPENED.finditer(text)]
    closed = [m.group("name") for m in BLOCK.finditer(text)]
    if len(opened) != len(closed) or len(CLOSED.findall(text)) != len(closed):
        raise ValueError(f"{page}: a table marker is left open or closes nothing (opened: {opened}); each "
                         "`<!-- table: NAME -->` needs a `<!-- /table -->` after it")
    values = [m.group("name") for m in VALUE.finditer(text)]
    if len(VALUE_OPENED.findall(text)) != len(values) or text.count("<!-- /value -->") != len(values):
        raise ValueError(f"{page}: a value marker is left open or closes nothing (closed: {values}); each "
                         "`<!-- value: NAME -->` needs a `<!-- /value -->` after it on the same line")
    unknown = [name for name in closed + values if name not in tables]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(tables), n=3, cutoff=0.5)
        raise ValueError(f"{page}: unknown table or value {unknown[0]!r}" + (f"; did you mean {close}?" if close else "")
                         + " The names are those of `tables.renderers`.")
    changed = []

    def fill(match: re.Match, kind: str) -> str:
        body = tables[match.group("name")]()
        if kind == "value":
            body = body.strip()
            if "\n" in body:
                raise ValueError(f"{page}: {match.group('name')!r} is a table; mark it on lines of its own with "
                                 f"`<!-- table: {match.group('name')} -->`")
        if body != match.group("body"):
            changed.append(match.group("name"))
        if kind == "value":
            return f"<!-- value: {match.group('name')} -->{body}<!-- /value -->"
        return f"<!-- table: {match.group('name')} -->\n{body}<!-- /table -->"

    text = BLOCK.sub(lambda match: fill(match, "table"), text)
    return VALUE.sub(lambda match: fill(match, "value"), text), changed


def write(root: Path | None = None, check: bool = False) -> dict[str, list[str]]:
    """Write (or with `check`, compare) every marked table of every page; returns page -> tables that differed."""
    root = root or project_root()
    tables = renderers(root)
    differed = {}
    for path in pages(root):
        text = path.read_text()
        new, changed = rewrite(text, tables, str(path.relative_to(root)))
        if changed:
            differed[str(path.relative_to(root))] = changed
            if not check:
                path.write_text(new)
    return differed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from its files")
    args = parser.parse_args(argv)
    differed = write(check=args.check)
    for page, names in differed.items():
        print(f"{page}: {', '.join(names)} {'differ from their files' if args.check else 'written'}")
    if args.check and differed:
        print("run `make tables` to write them from the result files", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
