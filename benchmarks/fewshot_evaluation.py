"""How long does evaluating every few-shot row take once features are cached?

    python benchmarks/fewshot_evaluation.py --episodes 600 --profile embedded

1. Fitting: `fewshot.fit_rows` (every row: 11 logistic regressions, 2 SGD heads, GeNIe-Ada's choices), one
   process per core as `fewshot.evaluate` does, on synthetic features with the exact shapes of the profile's N-way K-shot episodes (1280-d, 5 views per support
   image, (N-1)*K generated images per class and method), for `--episodes` episodes of each shot count.
2. Reading: `fewshot.episode_features` on the profile's real episodes, whose features notebook 04 cached,
   timed per feature read, and scaled to `--episodes` episodes.

Writes results/<profile>/benchmarks/fewshot_evaluation.json, figures/<profile>/benchmark_fewshot_evaluation.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from genie_utils import augment, data, features, fewshot, pairing, plots, profiles
from genie_utils.recipe import ADA_RATIOS
from genie_utils.run_files import RunFiles
from genie_utils.store import Store


def synthetic_episode(ways: int, shots: int, queries: int, views: int, dims: int, seed: int):
    """(EpisodeFeatures, support, augmentations) with random unit features around one centre per class."""
    rng = np.random.default_rng(seed)
    classes = [f"class{c}" for c in range(ways)]
    centres = rng.normal(size=(ways, dims))

    def sample(class_names):
        index = [classes.index(c) for c in class_names]
        x = centres[index] + 3 * rng.normal(size=(len(index), dims))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    support = pd.DataFrame({"image_id": [f"{c}-{k}" for c in classes for k in range(shots)],
                            "class_name": [c for c in classes for _ in range(shots)], "path": ""})
    rows = []
    for job in pairing.episode_jobs(support, "genie"):
        rows += [("genie", r, job.source_id, job.source_class, job.target_class) for r in ADA_RATIOS]
    for method in pairing.BASELINES:
        rows += [(method, j.noise_ratio, j.source_id, j.source_class, j.target_class)
                 for j in pairing.episode_jobs(support, method)]
    augmentations = pd.DataFrame(rows, columns=["method", "noise_ratio", "source_id", "source_class", "target_class"])
    augmentations["key"] = [f"k{i}" for i in range(len(augmentations))]
    labels = np.repeat(support.class_name.to_numpy(), views)
    mixed = {}
    for method in augment.MIX_METHODS:
        count = ways * (ways - 1) * shots
        weights = rng.beta(0.8, 0.8, size=(count, 1))
        first, second = rng.integers(ways, size=count), rng.integers(ways, size=count)
        soft = weights * np.eye(ways)[first] + (1 - weights) * np.eye(ways)[second]
        mixed[method] = (sample([classes[i] for i in first]), soft)
    episode = fewshot.EpisodeFeatures(
        weak=sample(labels), strong=sample(labels), labels=labels,
        centre=dict(zip(support.image_id, sample(support.class_name))),
        queries=sample([c for c in classes for _ in range(queries)]),
        query_labels=np.array([c for c in classes for _ in range(queries)]),
        generated=dict(zip(augmentations.key, sample(augmentations.target_class))), mixed=mixed)
    return episode, support, augmentations


def fit_synthetic(ways, shots, queries, views, dims, seed):
    return fewshot._fit_episode(*synthetic_episode(ways, shots, queries, views, dims, seed))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profiles.profile_argument,
                        help="a profile name or .toml file")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--dims", type=int, default=1280)
    parser.add_argument("--workers", type=int, default=0, help="processes fitting episodes (default: every core)")
    args = parser.parse_args(argv)
    settings = profiles.load_profile(args.profile)
    spec = settings["fewshot"]
    queries = settings["splits"]["queries_per_class"]
    record = {"profile": args.profile, "episodes": args.episodes, "dims": args.dims, "machine": platform.machine(),
              "processor": platform.processor(), "fitting_seconds": {}, "reading_seconds": {}}

    workers = args.workers or os.cpu_count() or 1
    record["workers"] = workers
    for shots in spec["shots"]:
        began = time.perf_counter()
        Parallel(n_jobs=workers)(delayed(fit_synthetic)(spec["ways"], shots, queries, spec["views_per_image"],
                                                        args.dims, seed) for seed in range(args.episodes))
        record["fitting_seconds"][f"{shots}-shot"] = time.perf_counter() - began
        print(f"fitting, {shots}-shot: {record['fitting_seconds'][f'{shots}-shot']:.1f} s for {args.episodes} episodes "
              f"({workers} processes, synthetic features made in them included)", flush=True)

    files = RunFiles.of(settings)
    if files.fewshot.augmentations.is_file():
        dataset = data.load_dataset(settings, progress=False)
        episodes = pairing.read_episodes(files.fewshot.episodes, dataset)
        augmentations = pd.read_csv(files.fewshot.augmentations, keep_default_na=False, dtype={"key": str})
        store = Store(files.store)
        cache = features.FeatureCache(profiles.resolve(settings, settings["features"]["cache_dir"]))
        backbone = features.load_backbone(settings, spec["backbones"][0])
        for shots, group in episodes.groupby("shots"):
            mine = augmentations[augmentations.shots == shots]
            began, count = time.perf_counter(), 0
            for episode in sorted(group.episode.unique()):
                support, query = pairing.episode_sets(group, episode)
                fewshot.episode_features(backbone, support, query, mine[mine.episode == episode], store, cache,
                                         spec["views_per_image"])
                count += 1
            seconds = (time.perf_counter() - began) / count * args.episodes
            record["reading_seconds"][f"{shots}-shot"] = seconds
            print(f"reading cached features, {shots}-shot: {seconds:.1f} s for {args.episodes} episodes "
                  f"(measured on {count})", flush=True)
    record["total_seconds"] = sum(record["fitting_seconds"].values()) + sum(record["reading_seconds"].values())
    print(f"total: {record['total_seconds']:.0f} s ({record['total_seconds'] / 60:.1f} min)")
    out = files.benchmarks.fewshot_evaluation
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(plots.save(plots.evaluation_benchmark(out), files.figures, "benchmark_fewshot_evaluation"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
