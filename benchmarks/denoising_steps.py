"""Does the embedded profile lose anything with fewer denoising steps? The oracle's judgement of GeNIe outputs
(mean P(target), P(source), share named target) against r, at several step counts, on the same random pairs.

    python benchmarks/denoising_steps.py --steps 50 25 20 --pairs 60

Sources from the evaluation pool, targets uniform over the few-shot eligible classes (1-shot), one noise draw
per pair. Writes results/<profile>/benchmarks/denoising_steps.csv and figures/<profile>/benchmark_denoising_steps.png.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from genie_utils import data, generate, oracle, pairing, plots, profiles, splits
from genie_utils.recipe import STEPS_BENCHMARK_RATIOS, Recipe
from genie_utils.run_files import RunFiles
from genie_utils.store import Store


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profiles.profile_argument,
                        help="a profile name or .toml file")
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 25, 20])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--ratios", type=float, nargs="+", default=list(STEPS_BENCHMARK_RATIOS))
    args = parser.parse_args(argv)

    settings = profiles.load_profile(args.profile)
    dataset = data.load_dataset(settings, progress=False)
    tables, names = splits.load_splits(settings, dataset), data.class_display_names(dataset)
    pairs = pairing.random_pairs(splits.pool_images(settings, dataset, splits.EVALUATION),
                                 pairing.eligible_classes(tables, 1), args.pairs, seed=11)
    judge = oracle.load_oracle(profiles.resolve(settings, settings["oracle"]["path"]))
    files = RunFiles.of(settings)
    store = Store(files.benchmarks.denoising_steps_store)
    generator = generate.GenieGenerator.from_profile(settings)
    rows = []
    for steps in args.steps:
        generator.recipe = Recipe(**{**generator.recipe.__dict__, "num_inference_steps": steps})
        began = time.perf_counter()
        table = oracle.label_consistency(generator, judge, pairs, args.ratios, store, names, progress=False)
        seconds = time.perf_counter() - began
        summary = oracle.consistency_summary(table).assign(steps=steps, seconds_per_image=seconds / len(table))
        rows.append(summary)
        print(summary.round(3).to_string(index=False), flush=True)
    result = pd.concat(rows, ignore_index=True)
    files.benchmarks.folder.mkdir(parents=True, exist_ok=True)
    result.to_csv(files.benchmarks.denoising_steps, index=False)
    print(result.pivot_table(index="noise_ratio", columns="steps", values=["p_target", "p_source"]).round(3))
    print(plots.save(plots.curves_by_steps(files.benchmarks.denoising_steps), files.figures,
                     "benchmark_denoising_steps"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
