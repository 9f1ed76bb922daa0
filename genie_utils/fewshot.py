"""The few-shot experiment: every episode's augmentations generated once, a classifier per episode and row on
frozen features, the tables and the analyses, each written as a result file. Episodes and pairing: `pairing`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.metrics import balanced_accuracy_score
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import results as result_tables
from .ada import choose_candidates, class_prototypes, generate_candidates
from .augment import MIX_METHODS, View, mixed_sample, view_seed
from .classifier import fit_linear_sgd, fit_logistic, one_hot, soft_labels
from .images import load_image
from .features import FeatureCache, embed, image_hash, load_backbone
from .features import mixed_features as features_of_mixes
from .jobs import run_jobs
from .oracle import NO_ORACLE
from .pairing import BASELINES, episode_jobs, episode_sets, episodes_table, read_episodes, write_episodes
from .profiles import resolve
from .recipe import ADA_RATIOS, METHODS
from .results import read_augmentations, row_name, summarise, write_table
from .run_files import FewshotFiles, RunFiles
from .store import atomic_write


# --------------------------------------------------------------------------------------------------
# Augmentations of every episode, generated once into the store


def augmentation_jobs(episodes: pd.DataFrame) -> tuple[list, list, list[tuple[int, int, int]]]:
    """The jobs of every episode's augmentations, episode by episode: GeNIe's (source, target) pairs, the baselines'
    images, and per episode (episode, its pairs, its baseline images)."""
    pairs, baselines, owners = [], [], []
    for episode, group in episodes.groupby("episode", sort=True):
        support = group[group.role == "support"]
        episode_pairs = episode_jobs(support, "genie")
        episode_baselines = [job for method in BASELINES for job in episode_jobs(support, method)]
        pairs += episode_pairs
        baselines += episode_baselines
        owners.append((episode, len(episode_pairs), len(episode_baselines)))
    return pairs, baselines, owners


def augmentation_table(generator, episodes: pd.DataFrame, store, class_names: dict[str, str],
                       noise_ratios: Sequence[float] | None = None, progress: bool = True) -> pd.DataFrame:
    """Generate every episode's augmentations into the store and list them, one row per (episode, image).

    GeNIe's pairs are made at every ratio of GeNIe-Ada's sweep (0.5 ... 0.9) with one noise draw per pair: the
    r = 0.8 candidate is GeNIe, the others are the fixed-r rows, and GeNIe-Ada chooses among them at
    evaluation. Img2Img^L, Img2Img^H and Txt2Img get (N-1) images per support image. A (source, target) pair
    shared by several episodes is generated once; a rerun generates nothing; progress bars show time left.
    Columns: episode, method, noise_ratio, variant, source_id, source_class, target_class, key, file.
    """
    ratios = list(noise_ratios or ADA_RATIOS)
    pairs, baselines, owners = augmentation_jobs(episodes)
    candidates = generate_candidates(generator, pairs, store, class_names, ratios, progress=progress)
    made = run_jobs(generator, baselines, store, class_names, progress=progress)
    columns = ["method", "noise_ratio", "variant", "source_id", "source_class", "target_class", "key", "file"]
    candidate_episode = np.repeat([e for e, n, _ in owners], [n * len(ratios) for _, n, _ in owners])
    baseline_episode = np.repeat([e for e, _, n in owners], [n for _, _, n in owners])
    table = pd.concat([candidates[columns].assign(episode=candidate_episode),
                       made[columns].assign(episode=baseline_episode)], ignore_index=True)
    return table[["episode"] + columns]


# --------------------------------------------------------------------------------------------------
# Evaluation: a logistic regression per episode and row, on frozen features

# The comparisons the profile sizes its episodes for (`[fewshot] target_half_widths`: their intervals' targets), the
# paired differences behind the paper's claims against the generative baselines and of GeNIe-Ada (all claims and
# their verdicts: `claims`).
SIZED_COMPARISONS = ("genie - img2img_low", "genie - img2img_high", "genie - txt2img", "genie_ada - genie")
ROWS = ("weak", "strong", "mixup", "cutmix", "img2img_low", "img2img_high", "txt2img", "genie", "genie_ada")


def mixing_pairs(support: pd.DataFrame) -> list[tuple[str, str]]:
    """GeNIe's budget of MixUp/CutMix samples for an episode: for every target class and every support image
    of another class, the image paired with one support image of the target (chosen by a seed of the pair):
    (N-1)*K samples per class, as (first image id, second image id)."""
    pairs = []
    for target in sorted(support.class_name.unique()):
        partners = sorted(support[support.class_name == target].image_id)
        for first in sorted(support[support.class_name != target].image_id):
            pairs.append((first, partners[view_seed(first, target) % len(partners)]))
    return pairs


def mixed_features(backbone, support: pd.DataFrame, method: str, views_per_image: int, cache=None):
    """Features (M, D) and soft labels (M, classes) of an episode's MixUp or CutMix samples, and the pairs."""
    paths, labels = dict(zip(support.image_id, support.path)), dict(zip(support.image_id, support.class_name))
    pairs = mixing_pairs(support)
    features, weights = features_of_mixes(backbone, [paths[a] for a, _ in pairs], [paths[b] for _, b in pairs],
                                          method, cache, views_per_image)
    classes = sorted(support.class_name.unique())
    soft = soft_labels(weights, [labels[a] for a, _ in pairs], [labels[b] for _, b in pairs], classes)
    return features, soft, pairs


@dataclass
class EpisodeFeatures:
    """Everything a few-shot episode's rows train and test on, as arrays (from the feature cache).

    weak, strong: (N*K*V, D) views of the support images, `labels` their classes; centre: support image id ->
    (D,) un-augmented feature (sources and prototypes of GeNIe-Ada); queries (Q, D) with `query_labels`;
    generated: store key -> (D,); mixed: method -> ((M, D) features, (M, N) soft labels)."""
    weak: np.ndarray
    strong: np.ndarray
    labels: np.ndarray
    centre: dict
    queries: np.ndarray
    query_labels: np.ndarray
    generated: dict
    mixed: dict


def episode_features(backbone, support: pd.DataFrame, query: pd.DataFrame, augmentations: pd.DataFrame, store,
                     cache=None, views_per_image: int = 5) -> EpisodeFeatures:
    """The features of one episode: computed once, then read from the cache by content and view."""
    paths = list(support.path)
    repeated = [p for p in paths for _ in range(views_per_image)]
    views = {kind: embed(backbone, repeated, cache, views=[View(kind, v) for _ in paths for v in range(views_per_image)])
             for kind in ("weak", "strong")}
    mixed = {method: mixed_features(backbone, support, method, views_per_image, cache)[:2] for method in MIX_METHODS}
    return EpisodeFeatures(
        weak=views["weak"], strong=views["strong"], labels=np.repeat(support.class_name.to_numpy(), views_per_image),
        centre=dict(zip(support.image_id, embed(backbone, paths, cache))),
        queries=embed(backbone, list(query.path), cache), query_labels=query.class_name.to_numpy(),
        generated=dict(zip(augmentations.key, embed(backbone, [store.root / f for f in augmentations.file], cache))),
        mixed=mixed)


def fit_rows(features: EpisodeFeatures, support: pd.DataFrame, augmentations: pd.DataFrame,
             ada_ratios: Sequence[float] | None = None):
    """Accuracy of every row on one episode's queries, class-balanced (the mean of the per-class accuracies, plain
    accuracy when every class has as many queries). Returns (results, class probabilities, Ada choices,
    query outcomes: whether each row got each query right, for `results.noise_sources`).

    Every row trains on the weak views of the support images (strong views for `strong`); the generative rows
    add one centre view per generated image, labelled with its prompt's class, in a logistic regression;
    MixUp and CutMix add their mixed views with soft labels and train a linear head with SGD (paper's recipe).
    GeNIe-Ada chooses, per pair, the candidate after the largest jump towards the target's prototype."""
    ratios = list(ada_ratios or ADA_RATIOS)
    classes = sorted(support.class_name.unique())
    weak, labels, generated = features.weak, features.labels, features.generated
    results, timings, correct = {}, {}, {}

    def run(row, fit):
        began = time.perf_counter()
        model = fit()
        predicted = model.predict(features.queries)
        correct[row] = predicted == np.asarray(features.query_labels)
        results[row] = float(balanced_accuracy_score(features.query_labels, predicted))
        timings[row] = time.perf_counter() - began
        return model

    def with_generated(rows: pd.DataFrame):
        extra = np.stack([generated[k] for k in rows.key])
        return fit_logistic(np.vstack([weak, extra]), np.concatenate([labels, rows.target_class.to_numpy()]))

    weak_model = run("weak", lambda: fit_logistic(weak, labels))
    run("strong", lambda: fit_logistic(features.strong, labels))
    for method in MIX_METHODS:
        mixed, soft = features.mixed[method]
        run(method, lambda: fit_linear_sgd(np.vstack([weak, mixed]), np.vstack([one_hot(labels, classes), soft]),
                                           classes, seed=0))
    for method in BASELINES:
        run(method, lambda: with_generated(augmentations[augmentations.method == method]))
    candidates = augmentations[augmentations.method == "genie"]
    for r in ratios:
        run(row_name("genie", r), lambda: with_generated(candidates[candidates.noise_ratio == r]))

    prototypes = class_prototypes(np.stack([features.centre[i] for i in support.image_id]), support.class_name)
    choices = choose_candidates(candidates, features.centre, prototypes, generated, ratios)[
        ["source_id", "source_class", "target_class", "noise_ratio", "key"]]
    run("genie_ada", lambda: with_generated(choices))

    # the paper's class-probability analysis: the support-only classifier's view of each candidate
    p = weak_model.predict_proba(np.stack([generated[k] for k in candidates.key]))
    column = {c: i for i, c in enumerate(weak_model.classes)}
    probabilities = candidates[["source_id", "source_class", "target_class", "noise_ratio"]].assign(
        p_source=p[np.arange(len(p)), candidates.source_class.map(column)],
        p_target=p[np.arange(len(p)), candidates.target_class.map(column)])
    per_class = (len(classes) - 1) * (len(support) // len(classes))
    rows = pd.DataFrame({"method": list(results), "accuracy": list(results.values()),
                         "generated_per_class": [0 if r in ("weak", "strong") else per_class for r in results],
                         "seconds": [timings[r] for r in results]})
    outcomes = pd.DataFrame({"method": np.repeat(list(correct), len(features.query_labels)),
                             "query": np.tile(np.arange(len(features.query_labels)), len(correct)),
                             "query_class": np.tile(np.asarray(features.query_labels), len(correct)),
                             "correct": np.concatenate(list(correct.values()))})
    return rows, probabilities.reset_index(drop=True), choices, outcomes


def _fit_episode(features: EpisodeFeatures, support: pd.DataFrame, augmentations: pd.DataFrame):
    with threadpool_limits(1):  # one BLAS thread: 3x faster on these small problems than two
        return fit_rows(features, support, augmentations)


def evaluate(backbone, episodes: pd.DataFrame, augmentations: pd.DataFrame, store, cache=None,
             views_per_image: int = 5, labels: dict | None = None, progress: bool = True, workers: int = 1,
             chunk: int = 16) -> dict[str, pd.DataFrame]:
    """Every row on every episode of `episodes` (from `read_episodes`) with the augmentations listed for it.

    Features are gathered in this process (the backbone uses every core), then `workers` processes fit the
    rows of `chunk` episodes at a time. Never generates: a missing augmentation image is an error naming the
    notebook that makes it. Returns the tidy tables `results` (one row per episode and method),
    `class_probabilities`, `ada_choices` and `query_outcomes` (each row's hit or miss on each query), each with
    the `labels` columns (profile, backbone, ways, shots) first."""
    missing = [f for f in augmentations.file.unique() if not (store.root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} augmentation images are not in {store.root} (e.g. {missing[0]}). "
                                "Generate them first (notebook 02_augmentations); evaluation never generates.")
    labels = {"backbone": backbone.name, **(labels or {})}
    out = {"results": [], "class_probabilities": [], "ada_choices": [], "query_outcomes": []}
    numbers = sorted(episodes.episode.unique())
    with Parallel(n_jobs=workers) as parallel, tqdm(total=len(numbers), desc=f"evaluating on {backbone.name}",
                                                    unit="episode", disable=not progress) as bar:
        for start in range(0, len(numbers), chunk):
            prepared = []
            for episode in numbers[start:start + chunk]:
                support, query = episode_sets(episodes, episode)
                mine = augmentations[augmentations.episode == episode]
                prepared.append((episode_features(backbone, support, query, mine, store, cache, views_per_image),
                                 support, mine))
            for episode, (_, support, _), tables in zip(numbers[start:start + chunk], prepared,
                                                        parallel(delayed(_fit_episode)(*job) for job in prepared)):
                ways = support.class_name.nunique()
                context = {**labels, "ways": ways, "shots": len(support) // ways, "episode": int(episode)}
                for name, table in zip(out, tables):
                    out[name].append(table.assign(**context))
            bar.update(len(prepared))
    front = list(labels) + ["ways", "shots", "episode"]
    tables = {name: pd.concat(parts, ignore_index=True) for name, parts in out.items()}
    return {name: t[front + [c for c in t.columns if c not in front]] for name, t in tables.items()}


# --------------------------------------------------------------------------------------------------
# The experiment of a profile, as files under results/<profile>/fewshot/


def draw_episodes(profile: dict, dataset: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The profile's episodes (`[fewshot]` shots, counts and `all_queries`, `[splits]` queries per class; episode i
    drawn with seed i, from `first_episode`, default 0) written to `episodes.csv` and returned joined with the
    dataset."""
    spec = profile["fewshot"]
    first = spec.get("first_episode", 0)
    parts = [episodes_table(dataset, tables, spec["ways"], shots, profile["splits"]["queries_per_class"],
                            range(first, first + count), spec.get("all_queries", False))
             for shots, count in zip(spec["shots"], spec["episodes"])]
    path = write_episodes(pd.concat(parts, ignore_index=True), RunFiles.of(profile).fewshot.episodes)
    return read_episodes(path, dataset)


def generate_augmentations(profile: dict, generator, episodes: pd.DataFrame, store, class_names: dict[str, str],
                           progress: bool = True) -> pd.DataFrame:
    """Every episode's augmentations into the store, listed in `augmentations.csv` (with a `shots` column)."""
    parts = [augmentation_table(generator, group, store, class_names, progress=progress).assign(shots=shots)
             for shots, group in episodes.groupby("shots")]
    table = pd.concat(parts, ignore_index=True)
    write_table(table, RunFiles.of(profile).fewshot.augmentations)
    return table


def generate_share(generator, episodes: pd.DataFrame, store, class_names: dict[str, str], shard: tuple[int, int],
                   progress: bool = True) -> int:
    """This process's share of `generate_augmentations`' images, made into the store and not listed: the jobs
    `in_shard(key, shard)` (`shard` = (index, count), see `jobs.process_state`). Every image depends only on its job,
    so the shards of several processes (GPUs, nodes sharing the store) make exactly the images that one process
    would; a later `generate_augmentations` finds them all. Returns how many distinct images the share holds."""
    keys = set()
    for _, group in episodes.groupby("shots"):
        pairs, baselines, _ = augmentation_jobs(group)
        made = [generate_candidates(generator, pairs, store, class_names, progress=progress, shard=shard),
                run_jobs(generator, baselines, store, class_names, progress=progress, shard=shard)]
        keys.update(key for rows in made for key in rows.get("key", []))  # a share may hold none
    return len(keys)


def evaluate_profile(profile: dict, episodes: pd.DataFrame, store, progress: bool = True) -> dict[str, Path]:
    """Every row on every episode and backbone of the profile, from `augmentations.csv`; writes `results.csv`,
    `class_probabilities.csv`, `ada_choices.csv` and `query_outcomes.csv` and returns their paths."""
    files = RunFiles.of(profile).fewshot
    path = files.augmentations
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebook 02_augmentations (or "
                                "fewshot.generate_augmentations) first; evaluation never generates.")
    augmentations = read_augmentations(path)
    cache = FeatureCache(resolve(profile, profile["features"]["cache_dir"]))
    out: dict[str, list] = {}
    for name in profile["fewshot"]["backbones"]:
        backbone = load_backbone(profile, name)
        for shots, group in episodes.groupby("shots"):
            tables = evaluate(backbone, group, augmentations[augmentations.shots == shots], store, cache,
                              profile["fewshot"]["views_per_image"], {"profile": profile["name"]}, progress,
                              workers=os.cpu_count() or 1)
            for key, table in tables.items():
                out.setdefault(key, []).append(table)
    # each of `evaluate`'s tables into the file of its name
    return {key: write_table(pd.concat(parts, ignore_index=True), getattr(files, key)) for key, parts in out.items()}


def drawn_query_differences(episodes_csv: Path, outcomes: pd.DataFrame) -> pd.DataFrame | None:
    """The paired differences had each episode been scored on its drawn queries only (`[splits] queries_per_class`
    per class), from the same fits: its hits on the queries the episodes file `episodes_csv` marks `drawn_query`.
    None when every query is a drawn one."""
    episodes = pd.read_csv(episodes_csv, keep_default_na=False)
    queries = episodes[episodes.role == "query"]
    if "drawn_query" not in queries or queries.drawn_query.astype(bool).all():
        return None
    marks = queries.assign(query=queries.groupby(["shots", "episode"]).cumcount())  # the order `evaluate` scores in
    hits = outcomes.merge(marks[["shots", "episode", "query", "drawn_query"]], on=["shots", "episode", "query"],
                          how="left", validate="many_to_one")
    drawn = hits[hits.drawn_query.astype(bool)]
    return result_tables.paired_differences(result_tables.episode_accuracy(drawn), order=table_rows())


def table_rows(noise_ratios: Sequence[float] | None = None) -> list[str]:
    """The rows of the few-shot tables in the paper's order, then GeNIe at each fixed r."""
    fixed = [row_name("genie", r) for r in (noise_ratios or ADA_RATIOS)]
    return list(ROWS) + [row for row in fixed if row != "genie"]


def write_tables(profile: dict) -> dict[str, Path]:
    """From `results.csv`: the few-shot table (mean ± 95% interval, percent) and the paired differences
    (GeNIe minus each row, GeNIe-Ada minus GeNIe), each as Markdown and LaTeX; from `query_outcomes.csv`, how much
    of each difference's spread the query draw makes (`noise_sources.csv`); the claims' half-widths against the
    profile's `target_half_widths` (`precision.csv` and `.md`)."""
    files = RunFiles.of(profile).fewshot
    results = pd.read_csv(files.results)
    summary = result_tables.summarise(results, ["backbone", "shots", "method"])
    differences = result_tables.paired_differences(results, order=table_rows())
    summary.to_csv(files.summary, index=False)
    differences.to_csv(files.differences, index=False)
    outcomes = pd.read_csv(files.query_outcomes, keep_default_na=False)
    noise = write_table(result_tables.noise_sources(outcomes, order=table_rows()), files.noise_sources)
    wide = [result_tables.wide_table(summary, table_rows(), ["backbone", "shots"], latex=latex) for latex in (False, True)]
    diff = [result_tables.difference_table(differences, latex=latex) for latex in (False, True)]
    paths = result_tables.write_tables(files.table, f"{profile['name']}: few-shot accuracy (\\%), mean $\\pm$ 95\\% "
                                "interval over episodes", *wide)
    paths.update({f"differences_{k}": v for k, v in result_tables.write_tables(
        files.differences.with_suffix(""), f"{profile['name']}: paired differences (percentage points), mean "
        "$\\pm$ 95\\% interval over episodes", *diff).items()})
    targets = dict(zip(profile["fewshot"]["shots"], profile["fewshot"].get("target_half_widths", [])))
    precision = result_tables.precision_against_targets(differences, targets, SIZED_COMPARISONS,
                                                        drawn_query_differences(files.episodes, outcomes))
    return {**paths, **result_tables.write_precision(precision, files.precision.with_suffix("")),
            "noise_sources": noise}


# --------------------------------------------------------------------------------------------------
# Analyses, each written as a result file that a figure is drawn from


def class_probability_summary(files: FewshotFiles) -> Path:
    """Mean P(source) and P(target) of GeNIe's candidates against r under each episode's own support-only
    classifier (the paper's class-probability analysis), with 95% intervals over pairs, per backbone and shots:
    `class_probability_summary.csv` from `class_probabilities.csv` (`files`: a run's few-shot files)."""
    table = pd.read_csv(files.class_probabilities)
    parts = [summarise(table, ["backbone", "shots", "noise_ratio"], value, scale=1.0).assign(value=value)
             for value in ("p_source", "p_target")]
    return write_table(pd.concat(parts, ignore_index=True), files.class_probability_summary)


def mixed_images(support: pd.DataFrame, method: str, views_per_image: int = 5, size: int = 224):
    """The MixUp or CutMix images of one episode (as the classifier sees them) with their majority class."""
    paths, labels = dict(zip(support.image_id, support.path)), dict(zip(support.image_id, support.class_name))
    out = []
    for first, second in mixing_pairs(support):
        image, mix = mixed_sample(method, load_image(paths[first]), image_hash(paths[first]),
                                  load_image(paths[second]), image_hash(paths[second]), views_per_image, size)
        out.append((image, labels[first] if mix.weight >= 0.5 else labels[second]))
    return out


def skip_label_consistency(files: FewshotFiles) -> str:
    """Label consistency without an oracle: the sentence that says so, written to `label_consistency.txt` in place
    of an earlier run's `label_consistency.csv` (`files`: a run's few-shot files)."""
    files.folder.mkdir(parents=True, exist_ok=True)
    files.label_consistency.unlink(missing_ok=True)
    atomic_write(files.label_consistency_skipped, lambda f: f.write((NO_ORACLE + "\n").encode()))
    return NO_ORACLE


def label_consistency(profile: dict, episodes: pd.DataFrame, store, judge, progress: bool = True) -> Path:
    """Every augmentation of every episode judged by the oracle: P(the label it is trained with) and whether
    the oracle's top class is that label. Generated images are judged once each. The classic augmentations
    are judged as the classifier sees them, at the oracle's resolution: the weak and strong views of the real
    support images (a reference: random crops are harder for the oracle than whole images) and the MixUp /
    CutMix samples, labelled with their majority class. Writes `label_consistency.csv` (one row per method
    and noise ratio)."""
    files = RunFiles.of(profile).fewshot
    augmentations = read_augmentations(files.augmentations)
    unique = augmentations.drop_duplicates("key")
    judged = [(m, r, store.root / f, c) for m, r, f, c in zip(unique.method, unique.noise_ratio, unique.file,
                                                             unique.target_class)]
    resolution, count = profile["dataset"]["resolution"], profile["fewshot"]["views_per_image"]
    small = lambda image: image.resize((resolution, resolution), Image.Resampling.LANCZOS)  # noqa: E731
    for (shots, episode), group in tqdm(list(episodes.groupby(["shots", "episode"])), desc="classic augmentations",
                                        disable=not progress):
        support = group[group.role == "support"]
        for kind in ("weak", "strong"):
            for row in support.itertuples():
                image, digest = load_image(row.path), image_hash(row.path)
                judged += [(kind, np.nan, small(View(kind, v)(image, digest)), row.class_name) for v in range(count)]
        for method in ("mixup", "cutmix"):
            judged += [(method, np.nan, small(image), label) for image, label in mixed_images(support, method, count)]
    p = judge.probabilities([image for _, _, image, _ in judged])
    rows = pd.DataFrame({"method": [m for m, _, _, _ in judged], "noise_ratio": [r for _, r, _, _ in judged],
                         "label": [c for _, _, _, c in judged],
                         "p_label": p[np.arange(len(judged)), [judge.index(c) for _, _, _, c in judged]],
                         "oracle_class": [judge.classes[i] for i in p.argmax(1)]})
    rows["oracle_agrees"] = rows.oracle_class == rows.label
    files.label_consistency_skipped.unlink(missing_ok=True)
    summary = rows.groupby(["method", "noise_ratio"], dropna=False).agg(
        images=("label", "size"), p_label=("p_label", "mean"), oracle_agrees=("oracle_agrees", "mean")).reset_index()
    summary["row"] = [row_name(m, r) for m, r in zip(summary.method, summary.noise_ratio)]
    return write_table(summary, files.label_consistency)


def embedding_view(profile: dict, episodes: pd.DataFrame, store, backbone, episode: int | None = None,
                   shots: int | None = None, methods: Sequence[str] = ("genie", "img2img_low", "img2img_high",
                                                                       "txt2img")) -> Path:
    """Paper figure 5's data: a PCA (fitted on all points shown) of one episode's support, query and
    augmentation embeddings, one row per point with its role, method and class. Writes `embedding_view.csv`."""
    spec = profile["fewshot"]
    shots = shots or max(spec["shots"])
    episode = spec["figure_episode"] if episode is None else episode
    cache = FeatureCache(resolve(profile, profile["features"]["cache_dir"]))
    support, query = episode_sets(episodes[episodes.shots == shots], episode)
    files = RunFiles.of(profile).fewshot
    augmentations = read_augmentations(files.augmentations)
    chosen = augmentations[(augmentations.shots == shots) & (augmentations.episode == episode)
                           & augmentations.method.isin(methods)
                           & ((augmentations.method != "genie") | (augmentations.noise_ratio == METHODS["genie"].noise_ratio))]
    points = pd.concat([
        pd.DataFrame({"role": "support", "method": "real", "class_name": support.class_name, "path": support.path}),
        pd.DataFrame({"role": "query", "method": "real", "class_name": query.class_name, "path": query.path}),
        pd.DataFrame({"role": "augmentation", "method": chosen.method, "class_name": chosen.target_class,
                      "source_class": chosen.source_class, "path": [str(store.root / f) for f in chosen.file]}),
    ], ignore_index=True)
    coordinates = PCA(n_components=2, random_state=0).fit_transform(embed(backbone, list(points.path), cache))
    table = points.assign(x=coordinates[:, 0], y=coordinates[:, 1], episode=episode, shots=shots,
                          backbone=backbone.name)
    return write_table(table.drop(columns=["path"]), files.embedding_view)


def method_comparison(profile: dict, episodes: pd.DataFrame, sources: int = 3, episode: int | None = None,
                      shots: int | None = None, genie_ratios: Sequence[float] = (0.6, 0.7, 0.8)) -> Path:
    """Paper figure 4's data: for a few support images of one episode, the store keys of Img2Img^L, Img2Img^H,
    Txt2Img (own class, first variant) and GeNIe at each of `genie_ratios` towards the first other class.
    Writes `method_comparison.csv` (one row per source and column)."""
    spec = profile["fewshot"]
    shots = shots or max(spec["shots"])
    episode = spec["figure_episode"] if episode is None else episode
    files = RunFiles.of(profile).fewshot
    augmentations = read_augmentations(files.augmentations)
    mine = augmentations[(augmentations.shots == shots) & (augmentations.episode == episode)]
    support, _ = episode_sets(episodes[episodes.shots == shots], episode)
    rows = []
    for source in support.drop_duplicates("class_name").head(sources).itertuples():
        own = mine[(mine.source_id == source.image_id) & (mine.variant == 0)]
        target = sorted(c for c in support.class_name.unique() if c != source.class_name)[0]
        rows.append({"source_id": source.image_id, "column": "source", "class_name": source.class_name,
                     "file": source.path, "in_store": False})
        for method in BASELINES:
            match = own[own.method == method]
            rows.append({"source_id": source.image_id, "column": method, "class_name": source.class_name,
                         "file": match.file.iloc[0], "in_store": True})
        for r in genie_ratios:
            match = own[(own.method == "genie") & (own.target_class == target) & (own.noise_ratio == r)]
            rows.append({"source_id": source.image_id, "column": f"genie_r{r:g}", "class_name": target,
                         "file": match.file.iloc[0], "in_store": True})
    return write_table(pd.DataFrame(rows), files.method_comparison)
