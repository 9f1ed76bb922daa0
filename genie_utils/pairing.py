"""Pairing: which support and query images a few-shot episode has, and which (source, target) images each
augmentation method makes for a set of support images.

Episodes are drawn from the evaluation pool. Support and query never share an image or an identity (the official
sampler can overlap them; this one does not). Episode i uses seed i, so an episode is the same on every machine.
The few-shot experiment (`fewshot`), GeNIe-Ada's runs (`ada`), the long tail (`longtail`), the `genie` command and
the sweeps of r (figure 2, the model card) take their episodes and pairs from here.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .augment import view_seed
from .jobs import Job
from .recipe import METHODS
from .results import write_table
from .splits import EVALUATION
from .validation import UsageError, check_count

BASELINES = ("img2img_low", "img2img_high", "txt2img")  # the generative baselines: own-class prompts, GeNIe's budget


def eligible_classes(tables: dict[str, pd.DataFrame], shots: int) -> list[str]:
    table = tables["fewshot_classes.csv"]
    return sorted(table[table[f"eligible_{shots}shot"].astype(bool)].class_name)


def episodes_table(dataset: pd.DataFrame, tables: dict[str, pd.DataFrame], ways: int, shots: int, queries: int,
                   episodes: Sequence[int], all_queries: bool = False) -> pd.DataFrame:
    """Episodes as data: one row per (episode, role, image) with the class, episode i drawn with seed i;
    `drawn_query` marks the queries that `queries` drawn per class would be (all of them unless `all_queries`).

    Written to a file (`write_episodes`), it lets any run repeat exactly the same episodes."""
    rows = []
    for episode in episodes:
        support, query = sample_episode(dataset, tables, ways, shots, queries, int(episode), all_queries)
        for role, part in (("support", support.assign(drawn_query=False)), ("query", query)):
            rows.append(pd.DataFrame({"episode": int(episode), "ways": ways, "shots": shots, "role": role,
                                      "image_id": part.image_id, "class_name": part.class_name,
                                      "drawn_query": part.drawn_query}))
    return pd.concat(rows, ignore_index=True)


def write_episodes(table: pd.DataFrame, path) -> Path:
    """Save an episodes table as CSV, atomically."""
    return write_table(table, path)


def read_episodes(path, dataset: pd.DataFrame) -> pd.DataFrame:
    """An episodes table joined with the dataset's rows (path, identity, display name); every image must exist."""
    table = pd.read_csv(path, dtype={"image_id": str, "class_name": str}, keep_default_na=False)
    joined = table.merge(dataset.drop(columns=["class_name"]), on="image_id", how="left", validate="many_to_one")
    missing = joined[joined.path.isna()].image_id.unique()
    if len(missing):
        raise KeyError(f"{path} names {len(missing)} images the dataset lacks (e.g. {list(missing[:3])}): "
                       "it was written for another dataset. Delete it to draw the episodes again.")
    return joined


def episode_sets(table: pd.DataFrame, episode: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(support, query) of one episode of a table from `read_episodes`."""
    rows = table[table.episode == episode]
    if rows.empty:
        raise KeyError(f"no episode {episode} in the table (episodes {sorted(table.episode.unique())[:5]}...)")
    return (rows[rows.role == "support"].reset_index(drop=True), rows[rows.role == "query"].reset_index(drop=True))


def sample_episode(dataset: pd.DataFrame, tables: dict[str, pd.DataFrame], ways: int, shots: int,
                   queries: int, seed: int, all_queries: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(support, query) of one episode: `ways` eligible classes, `shots` support images of distinct
    identities per class, `queries` query images per class from the class's other identities.

    `all_queries`: every image of the class's other identities is a query instead (at least `queries` of them,
    by eligibility), which removes the noise of the query draw. The classes and support images are the same as
    with the draw (the same random numbers are consumed), so both protocols share their generated images, and
    the query column `drawn_query` marks the queries the draw takes."""
    classes = eligible_classes(tables, shots)
    if len(classes) < ways:
        raise ValueError(f"only {len(classes)} classes are eligible for {shots}-shot episodes; ways = {ways} "
                         "is too many (see fewshot_classes.csv)")
    pool = tables["splits.csv"].set_index("image_id").pool
    evaluation = dataset[dataset.image_id.map(pool) == EVALUATION]
    rng = np.random.default_rng(seed)
    support, query = [], []
    for class_name in sorted(rng.choice(classes, size=ways, replace=False)):
        images = evaluation[evaluation.class_name == class_name].sort_values("image_id")
        identities = sorted(images.identity.unique())
        chosen = set(rng.choice(identities, size=shots, replace=False))
        for identity in sorted(chosen):
            same = images[images.identity == identity]
            support.append(same.iloc[[rng.integers(len(same))]])
        rest = images[~images.identity.isin(chosen)]
        if len(rest) < queries:
            raise ValueError(f"class {class_name} has {len(rest)} query candidates, fewer than {queries}")
        drawn = np.sort(rng.choice(len(rest), size=queries, replace=False))
        if all_queries:
            query.append(rest.assign(drawn_query=np.isin(np.arange(len(rest)), drawn)))
        else:
            query.append(rest.iloc[drawn].assign(drawn_query=True))
    return pd.concat(support, ignore_index=True), pd.concat(query, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Pairing: which images each augmentation method makes for an episode's support set


def hard_negative_jobs(support: pd.DataFrame, noise_ratio: float = METHODS["genie"].noise_ratio,
                       method: str = "genie", targets: Sequence[str] | None = None) -> list[Job]:
    """GeNIe's pairing in an N-way K-shot episode: every support image of the other N-1 classes is a
    source for each target class, giving (N-1)*K images per class. `targets` (default: the support's classes)
    may name classes with no image among the sources."""
    jobs = []
    for target in (targets if targets is not None else sorted(support.class_name.unique())):
        for row in support[support.class_name != target].itertuples():
            jobs.append(Job(method, row.image_id, row.path, row.class_name, target, noise_ratio))
    return jobs


def own_class_jobs(support: pd.DataFrame, method: str, variants: int | None = None) -> list[Job]:
    """The baselines' pairing: `variants` (default N-1) images of every support image, prompted with its own
    class, so each class gets as many images as GeNIe gives it."""
    spec = METHODS[method]
    variants = support.class_name.nunique() - 1 if variants is None else check_count(variants, "variants")
    return [Job(method, row.image_id, row.path, row.class_name, row.class_name, spec.noise_ratio, v)
            for row in support.sort_values(["class_name", "image_id"]).itertuples() for v in range(variants)]


def chosen_classes(dataset: pd.DataFrame, chosen: list[str] | None, role: str) -> list[str]:
    """The classes a user chose (in their order, once each) as `role` (source or target), every one a class of
    `dataset`; all of its classes when none are chosen."""
    known = sorted(dataset.class_name.unique())
    if not chosen:
        return known
    for name in chosen:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise UsageError(f"unknown {role} class {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; the dataset's classes are folder names: {', '.join(known[:20])}"
                             + (" ..." if len(known) > 20 else ""))
    return list(dict.fromkeys(chosen))


def plan_jobs(dataset: pd.DataFrame, method: str, sources: list[str], targets: list[str], noise_ratio: float,
              variants: int = 1) -> list:
    """The jobs of one method, paired as in the few-shot episodes: for GeNIe (and GeNIe-Ada's pairs) every
    image of each source class with each target class other than its own; for the baselines `variants` images
    per image of each target class."""
    if method in ("genie", "genie_ada"):
        jobs = hard_negative_jobs(dataset[dataset.class_name.isin(sources)], noise_ratio, "genie", targets)
        if not jobs:
            raise UsageError("no (source, target) pairs: sources and targets are the same single class; "
                             "give at least two classes between --source-classes and --target-classes")
        return jobs
    return own_class_jobs(dataset[dataset.class_name.isin(targets)], method, variants)


def episode_jobs(support: pd.DataFrame, method: str) -> list[Job]:
    """The jobs of one augmentation method for an episode's support set."""
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    if METHODS[method].prompt_class == "target":
        return hard_negative_jobs(support, METHODS[method].noise_ratio, method)
    return own_class_jobs(support, method)


# --------------------------------------------------------------------------------------------------
# Pairing for a budget of images per class (the long tail)


def budget_hard_negative_jobs(train: pd.DataFrame, plan: pd.DataFrame, seed: int = 0) -> list[Job]:
    """GeNIe's pairing for a budget of images per class (`plan`: class_name, generated), as the long tail uses
    it: for the i-th image of target class T, a class other than T is drawn uniformly, then one of its training
    images uniformly (so the large classes do not supply every source), each draw seeded by (seed, T, i)."""
    by_class = {c: group.sort_values("image_id") for c, group in train.groupby("class_name")}
    jobs = []
    for target, count in zip(plan.class_name, plan.generated):
        others = sorted(c for c in by_class if c != target)
        chosen: set[str] = set()
        for i in range(count):
            rng = np.random.default_rng(view_seed(seed, "longtail-source", target, i))
            row = None
            while row is None or row.image_id in chosen:  # one image per pair: draw again on a repeat
                source = by_class[others[rng.integers(len(others))]]
                row = source.iloc[rng.integers(len(source))]
            chosen.add(row.image_id)
            jobs.append(Job("genie", row.image_id, row.path, row.class_name, target, METHODS["genie"].noise_ratio))
    return jobs


def budget_own_class_jobs(train: pd.DataFrame, plan: pd.DataFrame, method: str) -> list[Job]:
    """The baselines' pairing for a budget of images per class (Img2Img^L/^H, Txt2Img): the class's own
    training images in turn as sources (seeds for Txt2Img), with a new variant each time round."""
    jobs = []
    for target, count in zip(plan.class_name, plan.generated):
        own = train[train.class_name == target].sort_values("image_id")
        for i in range(count):
            row = own.iloc[i % len(own)]
            jobs.append(Job(method, row.image_id, row.path, target, target, METHODS[method].noise_ratio,
                            i // len(own)))
    return jobs


# --------------------------------------------------------------------------------------------------
# Pairing for a sweep of r: sources towards target classes (figure 2, the oracle's judgement, the editing
# benchmark, the model card)


def random_pairs(sources: pd.DataFrame, classes: Sequence[str], count: int, seed: int = 0) -> pd.DataFrame:
    """`count` (source image, target class) pairs: sources drawn from `sources` (rows of `classes`),
    targets from the other `classes`, uniformly, reproducibly."""
    classes = sorted(classes)
    candidates = sources[sources.class_name.isin(classes)].sort_values("image_id").reset_index(drop=True)
    if candidates.empty or len(classes) < 2:
        raise ValueError("need source images of at least one of the classes, and two classes or more")
    rng = np.random.default_rng(seed)
    rows = candidates.iloc[rng.choice(len(candidates), size=count, replace=len(candidates) < count)].copy()
    rows["target_class"] = [rng.choice([c for c in classes if c != s]) for s in rows.class_name]
    return rows.reset_index(drop=True)


def pairs_per_target(sources: pd.DataFrame, classes: Sequence[str], per_class: int, seed: int = 0) -> pd.DataFrame:
    """`per_class` (source image, target class) pairs for every class of `classes` as the target, the sources
    drawn uniformly from the images of `sources` of other classes: every target class weighs the same."""
    candidates = sources.sort_values("image_id").reset_index(drop=True)
    parts = []
    for target in sorted(classes):
        others = candidates[candidates.class_name != target]
        rng = np.random.default_rng([seed, sum(target.encode())])
        chosen = others.iloc[rng.choice(len(others), size=per_class, replace=len(others) < per_class)]
        parts.append(chosen.assign(target_class=target))
    return pd.concat(parts, ignore_index=True)


def pairs_with_targets(sources: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """Every source row paired with every target class (a `target_class` column added)."""
    return sources.merge(pd.DataFrame({"target_class": list(targets)}), how="cross")


def sweep_jobs(pairs: pd.DataFrame, noise_ratios: Sequence[float], method: str = "genie") -> list[Job]:
    """Every (source, target) pair of `pairs` (dataset rows plus a `target_class` column) at every r: the
    same noise per pair at each r, as in the paper's figure 2."""
    return [Job(method, row.image_id, row.path, row.class_name, row.target_class, r)
            for row in pairs.itertuples() for r in noise_ratios]
