"""The tables of README.md and docs/*.md, written from the committed result files (`docs/results/<profile>/`) by
code, never by hand. A table's place in a page is a pair of markers,

    <!-- table: embedded/fewshot/accuracy -->
    ...written here by `python -m genie_utils.tables` (make tables)...
    <!-- /table -->

named after the result files it is drawn from. `--check` rewrites nothing and fails, naming each table, where a
page differs from its files (the tests run it). An unknown name or a marker left open is an error.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from . import claims, longtail, results, settle
from .fewshot import CLAIMS, table_rows
from .profiles import load_profile, project_root

# The pages with tables: README and every page under docs/ (not the executed notebooks).
PAGES = ("README.md", "docs/*.md")
# A marker is a line of its own (a mention inside a sentence is prose).
BLOCK = re.compile(r"^<!-- table: (?P<name>[^ ]+) -->\n(?P<body>.*?)^<!-- /table -->$", re.S | re.M)
OPENED = re.compile(r"^<!-- table: (?P<name>[^ ]+) -->$", re.M)
CLOSED = re.compile(r"^<!-- /table -->$", re.M)

# The few-shot comparisons README shows of the quick run (docs/results.md shows every one).
MAIN_COMPARISONS = ("genie - weak", "genie - img2img_low", "genie - img2img_high", "genie - txt2img",
                    "genie_ada - genie")
# The long-tail rows README shows (docs/results.md shows every one).
MAIN_LONGTAIL_ROWS = ("plain", "logit_adjusted", "genie", "genie_ada", "txt2img", "genie+logit_adjusted")


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(stralign="right") + "\n"


def fewshot_accuracy(folder: Path, rows=None) -> str:
    """The few-shot table (mean ± 95% Student-t interval over episodes, percent) from `fewshot/results.csv`."""
    summary = results.summarise(pd.read_csv(folder / "fewshot" / "results.csv"), ["backbone", "shots", "method"])
    return _markdown(results.wide_table(summary, rows or table_rows(), ["backbone", "shots"]))


def fewshot_differences(folder: Path, comparisons=None) -> str:
    """The paired differences (points, mean ± 95% Student-t interval over episodes) from `fewshot/results.csv`."""
    differences = results.paired_differences(pd.read_csv(folder / "fewshot" / "results.csv"), order=table_rows())
    if comparisons:
        rank = {c: i for i, c in enumerate(comparisons)}
        differences = differences[differences.comparison.isin(comparisons)]
        differences = differences.iloc[differences.comparison.map(rank).argsort(kind="stable")]
    return _markdown(results.difference_table(differences))


def fewshot_precision(folder: Path, targets: dict[int, float]) -> str:
    """The claims' half-widths against those asked (`targets`: shots -> points), with the episodes each would need
    (Student-t), from `fewshot/results.csv`."""
    differences = results.paired_differences(pd.read_csv(folder / "fewshot" / "results.csv"), order=table_rows())
    return results.precision_table(results.precision_against_targets(differences, targets, CLAIMS))


def longtail_accuracy(folder: Path, rows=longtail.ROWS) -> str:
    """The long-tail table (top-1 per bin, mean ± 95% Student-t interval over seeds) from `longtail/results.csv`."""
    return _markdown(longtail.accuracy_table(pd.read_csv(folder / "longtail" / "results.csv"), rows))


def longtail_test_set(folder: Path, name: str, rows=longtail.ROWS) -> str:
    """A long-tail table of each row minus a reference per bin, with its bootstrap interval over the test images,
    from `longtail/<name>.csv` (`differences`: minus plain cross-entropy; `added_to_logit_adjustment`: minus logit
    adjustment alone)."""
    differences = pd.read_csv(folder / "longtail" / f"{name}.csv")
    return _markdown(results.interval_table(differences, rows).rename(columns=str.capitalize))


def noise_sources(folder: Path) -> str:
    """The queries' share of each claim's spread over episodes, from `fewshot/noise_sources.csv`."""
    table = pd.read_csv(folder / "fewshot" / "noise_sources.csv")
    table = table[table.comparison.isin(CLAIMS)]
    table = table.iloc[table.comparison.map({c: i for i, c in enumerate(CLAIMS)}).argsort(kind="stable")]
    table = table.sort_values(["backbone", "shots"], kind="stable")
    lines = ["| shots | comparison | episodes | queries per episode | 95% half-width | queries' share of the variance "
             "| half-width with very many queries |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in table.itertuples():
        label = " - ".join(results.method_label(m) for m in row.comparison.split(" - "))
        lines.append(f"| {row.shots} | {label} | {row.episodes} | {row.queries_per_episode:.0f} | {row.half_width:.1f} "
                     f"| {row.query_share:.2f} | {row.half_width_without_queries:.1f} |")
    return "\n".join(lines) + "\n"


def label_consistency(folder: Path) -> str:
    """The oracle's judgement of every augmentation, from `fewshot/label_consistency.csv`."""
    table = pd.read_csv(folder / "fewshot" / "label_consistency.csv")
    order = {row: i for i, row in enumerate(table_rows())}
    table = table.iloc[table.row.map(order).argsort(kind="stable")]
    lines = ["| augmentation | images judged | oracle's top class = label | mean P(label) |",
             "| --- | ---: | ---: | ---: |"]
    for row in table.itertuples():
        label = results.method_label(row.row) + (" (real support images)" if row.row in ("weak", "strong") else "")
        lines.append(f"| {label} | {row.images} | {row.oracle_agrees:.2f} | {row.p_label:.2f} |")
    return "\n".join(lines) + "\n"


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


def _targets(profile: str) -> dict[int, float]:
    spec = load_profile(profile)["fewshot"]
    return dict(zip(spec["shots"], spec["target_half_widths"]))


def renderers(root: Path) -> dict[str, Callable[[], str]]:
    """Every table a page may name, each drawing from the committed result files under `root`/docs/results/."""
    embedded = root / "docs" / "results" / "embedded"
    return {
        "embedded/fewshot/accuracy": lambda: fewshot_accuracy(embedded),
        "embedded/fewshot/accuracy-main": lambda: fewshot_accuracy(embedded, list(table_rows()[:9])),
        "embedded/fewshot/differences": lambda: fewshot_differences(embedded),
        "embedded/fewshot/differences-main": lambda: fewshot_differences(embedded, MAIN_COMPARISONS),
        "embedded/fewshot/label-consistency": lambda: label_consistency(embedded),
        "embedded/fewshot/precision": lambda: fewshot_precision(embedded, _targets("embedded")),
        "embedded/fewshot/noise-sources": lambda: noise_sources(embedded),
        "embedded/longtail/accuracy": lambda: longtail_accuracy(embedded),
        "embedded/longtail/minus-plain": lambda: longtail_test_set(embedded, "differences",
                                                                   [m for m in longtail.ROWS if m != "plain"]),
        "embedded/longtail/added-to-logit-adjustment": lambda: longtail_test_set(
            embedded, "added_to_logit_adjustment", longtail.COMBINED),
        "embedded/longtail/accuracy-main": lambda: longtail_accuracy(embedded, MAIN_LONGTAIL_ROWS),
        "embedded-settle/verdicts": lambda: settle_verdicts("embedded-settle"),
        "embedded-settle/record": lambda: settle_record("embedded-settle"),
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
    unknown = [name for name in closed if name not in tables]
    if unknown:
        raise ValueError(f"{page}: unknown table {unknown[0]!r}; the tables: {', '.join(tables)}")
    changed = []

    def fill(match: re.Match) -> str:
        body = tables[match.group("name")]()
        if body != match.group("body"):
            changed.append(match.group("name"))
        return f"<!-- table: {match.group('name')} -->\n{body}<!-- /table -->"

    return BLOCK.sub(fill, text), changed


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
