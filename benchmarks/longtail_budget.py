"""The long tail against the generation budget, and against the generation seed.

    python benchmarks/longtail_budget.py                          # budgets 4, 8 and 16, generation seed 0
    python benchmarks/longtail_budget.py --budgets 4 --seed 1     # the profile's budget with other images

For each budget (images per class with fewer than `[longtail] top_up_below` training images), plain cross-entropy,
GeNIe, GeNIe-Ada and Txt2Img are trained as notebook 06 trains them (a linear head on frozen features, the
profile's training seeds), and each generative row minus plain cross-entropy is written per bin and overall
with a 95% interval over the test images (`longtail.budget_curve`). The generation seed draws GeNIe's
sources and every image's noise; seed 0 with the profile's budget makes notebook 06's own images, so those rows
repeat its `differences.csv`. Images go into the profile's store (what is there is reused: a budget's images are
the first ones of every larger budget). Rows of each (seed, budget) are written to
results/<profile>/benchmarks/longtail_budget.csv as soon as they are done, replacing earlier rows of the same
(seed, budget); the figure figures/<profile>/benchmark_longtail_budget.png is drawn from the whole file.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from genie_utils import data, generate, longtail, plots, profiles, splits
from genie_utils.results import write_table
from genie_utils.run_files import RunFiles
from genie_utils.store import Store


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a budget is at least 1 image per class")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profiles.profile_argument,
                        help="a profile name or .toml file")
    parser.add_argument("--budgets", type=positive, nargs="+", default=[4, 8, 16],
                        help="images per rare class (default: 4 8 16)")
    parser.add_argument("--seed", type=int, default=0, help="the generation seed (default 0: notebook 06's images)")
    args = parser.parse_args(argv)

    settings = profiles.load_profile(args.profile)
    files = RunFiles.of(settings)
    files.benchmarks.folder.mkdir(parents=True, exist_ok=True)
    out = files.benchmarks.longtail_budget
    dataset = data.load_dataset(settings)
    tables, names = splits.load_splits(settings, dataset), data.class_display_names(dataset)
    train, test, classes = longtail.load_split(settings, dataset, tables)
    store = Store(files.store)
    seeded = {**settings, "generation": {**settings["generation"], "seed": args.seed}}
    generator = generate.GenieGenerator.from_profile(seeded)
    backbone, cache = longtail.frozen_backbone(settings)
    for images in sorted(set(args.budgets)):
        began = time.perf_counter()
        rows = longtail.budget_curve(settings, generator, backbone, train, test, classes, store, names, [images], cache)
        rows["seconds"] = time.perf_counter() - began
        earlier = pd.read_csv(out) if out.is_file() else rows.iloc[:0]
        keep = earlier[(earlier.generation_seed != args.seed) | (earlier.budget != images)]
        table = pd.concat([keep, rows], ignore_index=True).sort_values(["generation_seed", "budget"], kind="stable")
        write_table(table, out)
        print(f"\nbudget {images}, generation seed {args.seed} ({rows.seconds.iloc[0] / 60:.1f} min): gain over plain "
              "cross-entropy, points [95% interval over the test images]")
        print(rows[["group", "method", "mean", "low", "high"]].round(1).to_string(index=False), flush=True)
    print(out)
    print(plots.save(plots.longtail_budget(out), files.figures, "benchmark_longtail_budget"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
