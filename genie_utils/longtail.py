"""The long-tail experiment: a classifier on a naturally long-tailed training set, its rare classes topped up
with generated images, evaluated on a balanced test set and reported by Many / Medium / Few.

Embedded profile: the committed long-tail split (train on the generator pool, 7 to 299 images per class; 5
evaluation images per class as a balanced test), a linear head on frozen EfficientNet-Lite0 features.
Paper profile: ImageNet-LT from its folder and split lists (`ImageNet_LT_train.txt`: `path label` per line).
Every method gets the same budget, the profile's `[longtail]` rule: every class with fewer than
`top_up_below` training images gets `images_per_class` augmentations.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_cosine_schedule_with_warmup
from torchvision.models import VisionTransformer
from torchvision.transforms import v2
from tqdm.auto import tqdm

from . import results as result_tables
from .ada import choose_candidates, class_prototypes, generate_candidates
from .augment import MIX_METHODS
from .class_folders import read_class_names
from .classifier import fit_linear_sgd, one_hot, soft_labels
from .features import FeatureCache, embed, load_backbone, mixed_features
from .images import COLUMNS, load_image
from .jobs import run_jobs
from .pairing import BASELINES, budget_hard_negative_jobs, budget_own_class_jobs
from .profiles import resolve
from .recipe import ADA_RATIOS, METHODS
from .results import read_augmentations, write_table
from .run_files import LongtailFiles, RunFiles
from .splits import BINS, bin_of

GENERATIVE = ("genie", "genie_ada", "txt2img", "img2img_low", "img2img_high")
LOSSES = ("plain", "balanced", "logit_adjusted")      # the standard long-tail baselines, no augmentation
COMBINED = tuple(f"{m}+logit_adjusted" for m in GENERATIVE)  # each generative row on top of the best correction
ROWS = LOSSES + GENERATIVE + MIX_METHODS + COMBINED


def row_parts(method: str) -> tuple[str | None, str]:
    """A row's (augmentation, loss): `genie` -> (genie, plain), `balanced` -> (None, balanced),
    `genie+logit_adjusted` -> (genie, logit_adjusted)."""
    augmentation, _, loss = method.partition("+")
    if augmentation in LOSSES and not loss:
        return None, augmentation
    if augmentation not in GENERATIVE + MIX_METHODS or (loss and loss not in LOSSES):
        raise ValueError(f"unknown long-tail row {method!r}; rows: {', '.join(ROWS)}")
    return augmentation, loss or "plain"


# --------------------------------------------------------------------------------------------------
# Data


def embedded_split(profile: dict, dataset: pd.DataFrame, tables: dict[str, pd.DataFrame]):
    """(train, test, classes) of the committed long-tail split; `classes` has train_images and bin per class."""
    roles = tables["splits.csv"].set_index("image_id").longtail
    role = dataset.image_id.map(roles)
    classes = tables["longtail_classes.csv"][["class_name", "train_images", "bin"]].copy()
    return (dataset[role == "train"].reset_index(drop=True), dataset[role == "test"].reset_index(drop=True),
            classes.reset_index(drop=True))


def read_split_list(root: str | os.PathLike, list_file: str | os.PathLike, class_names: dict[str, str] | None = None):
    """An ImageNet-LT style list (`train/n01440764/n01440764_190.JPEG 0` per line) as a dataset table.

    The class is the image's folder (its WordNet id); `class_names` maps it to the prompt's display name.
    Every listed file must exist under `root`, and a folder must always carry the same label."""
    root, list_file = Path(root), Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"split list not found: {list_file} (ImageNet-LT's ImageNet_LT_train.txt / "
                                "ImageNet_LT_test.txt); set [longtail] train_list / test_list in the profile.")
    rows, labels = [], {}
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{list_file}:{number}: expected '<relative path> <integer label>', got {line!r}")
        relative, label = parts[0], int(parts[1])
        class_name = Path(relative).parent.name
        if labels.setdefault(class_name, label) != label:
            raise ValueError(f"{list_file}:{number}: folder {class_name} has labels {labels[class_name]} and {label}")
        rows.append({"image_id": relative, "class_name": class_name,
                     "display_name": (class_names or {}).get(class_name, class_name), "identity": relative,
                     "name": Path(relative).stem, "path": str(root / relative)})
    table = pd.DataFrame(rows, columns=COLUMNS)
    missing = [p for p in table.path if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of {list_file} are not under {root} (e.g. {missing[0]}). "
                                "Set [longtail] root to the folder the list's paths are relative to.")
    if class_names is not None:
        unnamed = sorted(set(table.class_name) - set(class_names))
        if unnamed:
            raise KeyError(f"{len(unnamed)} classes of {list_file} have no display name (e.g. {unnamed[:3]})")
    return table


def folder_split(profile: dict):
    """(train, test, classes) of the paper profile's ImageNet-LT from `[longtail]` root and split lists."""
    spec = profile["longtail"]
    names = read_class_names(resolve(profile, profile["dataset"]["class_names"]))
    train = read_split_list(resolve(profile, spec["root"]), resolve(profile, spec["train_list"]), names)
    test = read_split_list(resolve(profile, spec["root"]), resolve(profile, spec["test_list"]), names)
    thresholds = profile["splits"]["many_shot_threshold"], profile["splits"]["few_shot_threshold"]
    return train, test, class_bins(train, *thresholds)


def class_bins(train: pd.DataFrame, many_above: int, few_below: int) -> pd.DataFrame:
    """Per class of `train`, largest first: its training images and its bin (`bin_of`)."""
    counts = train.class_name.value_counts()
    return pd.DataFrame({"class_name": counts.index, "train_images": counts.values,
                         "bin": [bin_of(n, many_above, few_below) for n in counts.values]})


def load_split(profile: dict, dataset: pd.DataFrame | None = None, tables: dict | None = None):
    """The profile's long-tail (train, test, classes): the committed split, or ImageNet-LT's lists."""
    if profile["longtail"].get("train_list"):
        return folder_split(profile)
    if profile["dataset"]["kind"] != "openmoji":
        raise ValueError(f"profile {profile['name']!r} has no long tail: its dataset is class folders, without "
                         "ImageNet-LT's split lists ([longtail] train_list, test_list). Use a long-tail profile "
                         "(paper-longtail, or one that extends it with your lists).")
    return embedded_split(profile, dataset, tables)


# --------------------------------------------------------------------------------------------------
# The budget and the augmentation jobs


def budget(classes: pd.DataFrame, top_up_below: int, images_per_class: int) -> pd.DataFrame:
    """How many images every method adds per class: `images_per_class` for each class with fewer than
    `top_up_below` training images, none for the others."""
    return classes.assign(generated=np.where(classes.train_images < top_up_below, images_per_class, 0))


def augmentation_table(generator, train: pd.DataFrame, plan: pd.DataFrame, store, class_names: dict[str, str],
                       seed: int = 0, progress: bool = True, baselines: Sequence[str] = BASELINES,
                       shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """Generate every method's images for the rare classes into the store (GeNIe's pairs at r = 0.5 ... 0.9,
    as in the few-shot experiment; the `baselines` at their r) and list them: method, noise_ratio, source and
    target class, key, file. `seed` draws GeNIe's sources (`pairing.budget_hard_negative_jobs`). With `shard` =
    (index, count) only the jobs `jobs.in_shard` are made and listed (one process's share)."""
    pairs = budget_hard_negative_jobs(train, plan, seed)
    baselines = [job for method in baselines for job in budget_own_class_jobs(train, plan, method)]
    columns = ["method", "noise_ratio", "variant", "source_id", "source_class", "target_class", "key", "file"]
    parts = []
    if pairs:
        parts.append(generate_candidates(generator, pairs, store, class_names, ADA_RATIOS, progress=progress,
                                         shard=shard).reindex(columns=columns))
    if baselines:
        parts.append(run_jobs(generator, baselines, store, class_names, progress=progress,
                              shard=shard).reindex(columns=columns))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# --------------------------------------------------------------------------------------------------
# Training and evaluation on frozen features


def chosen_augmentations(method: str, augmentations: pd.DataFrame, features: dict, prototypes: dict) -> pd.DataFrame:
    """The augmentation rows one generative method trains with: its own rows; for GeNIe the r = 0.8
    candidates; for GeNIe-Ada, per pair, the candidate after the largest jump of the projection on the line
    from the source (`features[source_path]`) to the target's prototype (its training images' features)."""
    if method in BASELINES:
        return augmentations[augmentations.method == method]
    candidates = augmentations[augmentations.method == "genie"]
    if method == "genie":
        return candidates[candidates.noise_ratio == METHODS["genie"].noise_ratio]
    if method != "genie_ada":
        raise KeyError(f"unknown long-tail augmentation {method!r}; use one of {GENERATIVE}")
    chosen = choose_candidates(candidates, features, prototypes, features, ADA_RATIOS, source_column="source_path")
    return chosen.sort_values(["target_class", "source_id"])  # the order the rows were generated in


def evaluate(backbone, train: pd.DataFrame, test: pd.DataFrame, classes: pd.DataFrame, plan: pd.DataFrame,
             augmentations: pd.DataFrame, store, cache=None, seeds: Sequence[int] = (0, 1, 2),
             training: dict | None = None, methods: Sequence[str] = ROWS, progress: bool = True) -> pd.DataFrame:
    """Per (method, seed, test image): whether the linear head got it right (`test_outcomes`; `per_class` counts).

    Every method trains a linear head with SGD on the centre-view features of all training images (plus its
    augmentations of the rare classes); `balanced` re-samples each epoch with weight 1 / class size,
    `logit_adjusted` adds tau * log(prior) to the logits in training (Menon et al. 2021, tau = 1); a row
    `<augmentation>+logit_adjusted` trains on the augmentation's images with logit adjustment (`row_parts`). Seeds
    change the order of the SGD samples only: the intervals measure training noise, not test-set noise."""
    training = {"epochs": 50, "batch_size": 64, "learning_rate": 2.0, "momentum": 0.9, "weight_decay": 0.0,
                **(training or {})}
    names = list(classes.class_name)
    train_features = embed(backbone, list(train.path), cache, progress=progress)
    test_features = embed(backbone, list(test.path), cache, progress=progress)
    generated = dict(zip(augmentations.key, embed(backbone, [store.root / f for f in augmentations.file], cache,
                                                  progress=progress))) if len(augmentations) else {}
    features = {**generated, **dict(zip(train.path, train_features))}
    prototypes = class_prototypes(train_features, train.class_name)
    pairs = budget_hard_negative_jobs(train, plan)
    own = {c: group.sort_values("image_id").path.tolist() for c, group in train.groupby("class_name")}
    counts = train.class_name.value_counts()
    prior = np.array([counts[c] for c in names], float) / len(train)
    base_targets = one_hot(train.class_name, names)
    rows = []
    for method in tqdm(methods, desc="long-tail rows", disable=not progress):
        augmentation, loss = row_parts(method)
        extra, soft = np.zeros((0, train_features.shape[1])), np.zeros((0, len(names)))
        if augmentation in GENERATIVE:
            used = chosen_augmentations(augmentation, augmentations, features, prototypes)
            extra, soft = np.stack([features[k] for k in used.key]), one_hot(used.target_class, names)
        elif augmentation in MIX_METHODS:  # GeNIe's source mixed with one of the target's images, in turn
            partners = [own[job.target_class][i % len(own[job.target_class])] for i, job in enumerate(pairs)]
            extra, weights = mixed_features(backbone, [job.source_path for job in pairs], partners, augmentation, cache)
            soft = soft_labels(weights, [job.source_class for job in pairs], [job.target_class for job in pairs], names)
        targets = np.vstack([base_targets, soft])
        x = np.vstack([train_features, extra])
        y_major = targets.argmax(1)
        class_counts = np.bincount(y_major, minlength=len(names))
        for seed in seeds:
            model = fit_linear_sgd(
                x, targets, names, seed=seed, epochs=training["epochs"], batch_size=training["batch_size"],
                learning_rate=training["learning_rate"], momentum=training["momentum"],
                weight_decay=training["weight_decay"],
                sample_weights=1.0 / class_counts[y_major] if loss == "balanced" else None,
                logit_offsets=np.log(prior) if loss == "logit_adjusted" else None)
            rows.append(test_outcomes(test, model.predict(test_features)).assign(method=method, seed=seed))
    return pd.concat(rows, ignore_index=True).assign(backbone=backbone.name)


def test_outcomes(test: pd.DataFrame, predicted: Sequence[str]) -> pd.DataFrame:
    """Per test image, in `test`'s order: its id, its class and whether `predicted` names it."""
    truth = test.class_name.to_numpy()
    return pd.DataFrame({"image_id": test.image_id.to_numpy(), "class_name": truth,
                         "correct": np.asarray(predicted) == truth})


def per_class(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, method, seed, class): correct predictions and test images (columns correct, total)."""
    keys = [k for k in ("backbone", "method", "seed") if k in outcomes] + ["class_name"]
    return outcomes.groupby(keys).agg(correct=("correct", "sum"), total=("correct", "size")).reset_index()


def bin_accuracy(results: pd.DataFrame) -> pd.DataFrame:
    """Top-1 per (method, seed) on each bin and overall: correct / total over the balanced test set."""
    table = pd.concat([results.assign(bin="overall"), results], ignore_index=True)
    grouped = table.groupby(["backbone", "method", "seed", "bin"]).agg(correct=("correct", "sum"), total=("total", "sum"))
    return grouped.assign(accuracy=grouped.correct / grouped.total).reset_index()


# --------------------------------------------------------------------------------------------------
# The experiment of a profile, as files under results/<profile>/longtail/


def generate_augmentations(profile: dict, generator, train: pd.DataFrame, classes: pd.DataFrame, store,
                           class_names: dict[str, str], progress: bool = True) -> pd.DataFrame:
    """The budget (`plan.csv`) and every method's images for it (`augmentations.csv`)."""
    spec, files = profile["longtail"], RunFiles.of(profile).longtail
    plan = budget(classes, spec["top_up_below"], spec["images_per_class"])
    write_table(plan, files.plan)
    table = augmentation_table(generator, train, plan[plan.generated > 0], store, class_names, progress=progress)
    write_table(table, files.augmentations)
    return table


def generate_share(profile: dict, generator, train: pd.DataFrame, classes: pd.DataFrame, store,
                   class_names: dict[str, str], shard: tuple[int, int], progress: bool = True) -> int:
    """This process's share (`shard` = (index, count)) of `generate_augmentations`' images, made into the store and
    not listed: the shards of several processes make exactly one process's images. Returns how many the share
    holds."""
    spec = profile["longtail"]
    plan = budget(classes, spec["top_up_below"], spec["images_per_class"])
    return augmentation_table(generator, train, plan[plan.generated > 0], store, class_names, progress=progress,
                              shard=shard).key.nunique()


def frozen_backbone(profile: dict):
    """The long tail's frozen backbone (`[longtail] backbone`, else `[features] backbone`) and the feature cache."""
    name = profile["longtail"].get("backbone") or profile["features"]["backbone"]
    return load_backbone(profile, name), FeatureCache(resolve(profile, profile["features"]["cache_dir"]))


def evaluate_profile(profile: dict, train: pd.DataFrame, test: pd.DataFrame, store, progress: bool = True) -> Path:
    """Every row and seed of the profile's long-tail experiment from `plan.csv` and `augmentations.csv`;
    writes the per-image `test_outcomes.csv` and the per-class `results.csv` and returns the latter's path.
    Never generates."""
    files = RunFiles.of(profile).longtail
    for path in (files.plan, files.augmentations):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: generate the augmentations first "
                                    "(longtail.generate_augmentations, notebook 06); evaluation never generates.")
    plan = pd.read_csv(files.plan)
    augmentations = read_augmentations(files.augmentations)
    augmentations["source_path"] = augmentations.source_id.map(dict(zip(train.image_id, train.path)))
    missing = [f for f in augmentations.file if not (store.root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} augmentation images are not in {store.root} (e.g. {missing[0]}): "
                                "generate them first; evaluation never generates.")
    spec = profile["longtail"]
    backbone, cache = frozen_backbone(profile)
    classes = plan[["class_name", "train_images", "bin"]]
    if spec.get("finetune"):
        outcomes = finetune_rows(profile, train, test, classes, augmentations, store, backbone, cache, progress)
    else:
        outcomes = evaluate(backbone, train, test, classes, plan, augmentations, store, cache, range(spec["seeds"]),
                            spec.get("training"), progress=progress)
    write_table(outcomes.assign(profile=profile["name"]), files.test_outcomes)
    results = per_class(outcomes).merge(classes, on="class_name").merge(plan[["class_name", "generated"]], on="class_name")
    return write_table(results.assign(profile=profile["name"]), files.results)


def finetune_rows(profile: dict, train: pd.DataFrame, test: pd.DataFrame, classes: pd.DataFrame,
                  augmentations: pd.DataFrame, store, backbone, cache=None, progress: bool = True) -> pd.DataFrame:
    """The paper profile's rows: a ViT fine-tuned per row and seed (`finetune`) on the training images plus the
    row's augmentations, each generative row also with logit adjustment (`COMBINED`); GeNIe-Ada chooses with the
    profile's frozen backbone. MixUp and CutMix rows are the linear-probe experiment's only (here they would be
    batch-level mixing, a different budget)."""
    sources = sorted(set(augmentations.source_path.dropna()))
    features = dict(zip(augmentations.key, embed(backbone, [store.root / f for f in augmentations.file], cache)))
    features.update(zip(sources, embed(backbone, sources, cache)))
    train_features = dict(zip(train.path, embed(backbone, list(train.path), cache)))
    prototypes = class_prototypes(np.stack([train_features[p] for p in train.path]), train.class_name)
    parts = []
    for method in LOSSES + GENERATIVE + COMBINED:
        augmentation = row_parts(method)[0]
        extra = pd.DataFrame(columns=["path", "target_class"])
        if augmentation:
            rows = chosen_augmentations(augmentation, augmentations, features, prototypes)
            extra = pd.DataFrame({"path": [str(store.root / f) for f in rows.file], "target_class": rows.target_class})
        for seed in range(profile["longtail"]["seeds"]):
            parts.append(finetune(profile["longtail"]["finetune"], train, test, classes, extra, method, seed, progress))
    return pd.concat(parts, ignore_index=True).assign(backbone=profile["longtail"]["finetune"]["model"])


def write_tables(profile: dict) -> dict[str, Path]:
    """From `results.csv`: Many / Medium / Few / Overall top-1 (mean ± 95% interval over seeds, percent) per
    method, with the generated images per rare class and in total beside it, as Markdown and LaTeX; from
    `test_outcomes.csv`, every row minus plain cross-entropy per bin with a 95% interval over the test images
    (`results.bootstrap_differences`), as `differences.csv` and its tables, and each `COMBINED` row minus logit
    adjustment alone, as `added_to_logit_adjustment.csv` and its tables."""
    files = RunFiles.of(profile).longtail
    results = pd.read_csv(files.results)
    accuracy = bin_accuracy(results)
    write_table(accuracy, files.bin_accuracy)
    frames = [accuracy_table(results, latex=latex) for latex in (False, True)]
    paths = result_tables.write_tables(files.table, f"{profile['name']}: long-tail top-1 (\\\\%), mean $\\\\pm$ "
                                       "95\\\\% interval over training seeds", *frames)
    outcomes = pd.read_csv(files.test_outcomes, keep_default_na=False, dtype={"image_id": str})
    groups = bin_groups(pd.read_csv(files.plan))
    paths.update(_test_set_differences(
        outcomes, groups, "plain", [m for m in ROWS if m != "plain"], files.differences.with_suffix(""),
        f"{profile['name']}: long-tail top-1 minus plain cross-entropy (points), 95\\\\% interval over the test images"))
    combined = outcomes[outcomes.method.isin(("logit_adjusted",) + COMBINED)]  # what the images add to the correction
    if combined.method.nunique() > 1:
        paths.update(_test_set_differences(
            combined, groups, "logit_adjusted", list(COMBINED), files.added_to_logit_adjustment.with_suffix(""),
            f"{profile['name']}: each generative row with logit adjustment minus logit adjustment alone (points), "
            "95\\\\% interval over the test images"))
    return paths


def accuracy_table(results: pd.DataFrame, rows: Sequence[str] = ROWS, latex: bool = False) -> pd.DataFrame:
    """The long-tail table from `results.csv` (per method, seed and class, with each class's bin and generated
    images): Many / Medium / Few / Overall top-1 per row of `rows`, mean ± 95% interval over training seeds
    (percent; the best of each column among all the rows in bold), after the generated images per rare class and
    in total."""
    summary = result_tables.summarise(bin_accuracy(results), ["backbone", "method", "bin"])
    plan = results.drop_duplicates("class_name")
    per_class, total = int(plan.generated.max()), int(plan.generated.sum())
    wide = result_tables.wide_table(summary, list(ROWS), ["bin"], latex=latex)
    wide = wide[[c for c in (*BINS, "overall") if c in wide.columns]]
    counts = plan.groupby("bin").size()
    wide.columns = [f"{c.capitalize()} ({counts.get(c, len(plan))} classes)" if c != "overall"
                    else f"Overall ({len(plan)} classes)" for c in wide.columns]
    wide.insert(0, "generated per rare class / total", ["0" if m in LOSSES else f"{per_class} / {total}"
                                                         for m in ROWS if result_tables.method_label(m, latex) in wide.index])
    return wide.loc[[result_tables.method_label(m, latex) for m in rows
                     if result_tables.method_label(m, latex) in wide.index]]


BUDGET_ROWS = ("plain", "genie", "genie_ada", "txt2img")


def budget_curve(profile: dict, generator, backbone, train: pd.DataFrame, test: pd.DataFrame, classes: pd.DataFrame,
                 store, class_names: dict[str, str], budgets: Sequence[int], cache=None,
                 rows: Sequence[str] = BUDGET_ROWS, progress: bool = True) -> pd.DataFrame:
    """The gain of the generative `rows` against the generation budget: for each of `budgets` (images per class
    with fewer than `[longtail] top_up_below` training images), the images made as in `generate_augmentations` and
    the rows trained as in `evaluate_profile` (linear head, the profile's training seeds); each row minus plain
    cross-entropy per bin and overall (`bin_groups`), with a 95% interval over the test images
    (`results.bootstrap_differences`). The generator's seed (`generator.recipe.seed`, the generation seed) seeds
    every image and draws GeNIe's sources, so the profile's own images are those of its `[generation] seed`, and a
    budget's images are the first ones of every larger budget. Generates into `store` (what is there is reused)."""
    if "plain" not in rows:
        raise ValueError(f"rows {list(rows)} lack 'plain', the reference every gain is measured against")
    spec = profile["longtail"]
    seed = generator.recipe.seed
    paths = dict(zip(train.image_id, train.path))
    parts = []
    for images in sorted(budgets):
        plan = budget(classes, spec["top_up_below"], images)
        augmentations = augmentation_table(generator, train, plan[plan.generated > 0], store, class_names, seed,
                                           progress, [r for r in rows if r in BASELINES])
        augmentations["source_path"] = augmentations.source_id.map(paths)
        outcomes = evaluate(backbone, train, test, classes, plan, augmentations, store, cache, range(spec["seeds"]),
                            spec.get("training"), rows, progress)
        parts.append(result_tables.bootstrap_differences(outcomes, bin_groups(classes), "plain").assign(
            budget=images, generation_seed=seed))
    return pd.concat(parts, ignore_index=True)


def bin_groups(classes: pd.DataFrame) -> dict[str, list[str]]:
    """The classes of each bin present (many, medium, few, in that order) and of all: the groups the tables'
    intervals over test images are drawn for (`results.bootstrap_differences` draws them in this order)."""
    return {**{b: list(classes[classes.bin == b].class_name) for b in BINS if (classes.bin == b).any()},
            "overall": list(classes.class_name)}


def _test_set_differences(outcomes: pd.DataFrame, groups: dict[str, list[str]], reference: str, rows: list[str],
                          stem: Path, title: str) -> dict[str, Path]:
    """`rows` minus `reference` per group of classes with a 95% interval over the test images
    (`results.bootstrap_differences`): `<stem>.csv` and its Markdown and LaTeX tables, keyed by the stem's name."""
    differences = result_tables.bootstrap_differences(outcomes, groups, reference)
    paths = {stem.name: write_table(differences, stem.with_suffix(".csv"))}
    tables = [result_tables.interval_table(differences, rows, latex).rename(columns=str.capitalize)
              for latex in (False, True)]
    paths.update({f"{stem.name}_{k}": v for k, v in result_tables.write_tables(stem, title, *tables).items()})
    return paths


def gain_by_class(files: LongtailFiles, reference: str = "plain",
                  methods: Sequence[str] = ("genie", "genie_ada", "txt2img")) -> Path:
    """Per class and method: accuracy minus `reference`'s (means over seeds), with the class's training
    images and bin: the data of the per-class gain figure. Writes `gain_by_class.csv` from `results.csv` (`files`: a
    run's long-tail files)."""
    results = pd.read_csv(files.results)
    per_class = results.groupby(["method", "class_name", "train_images", "bin", "generated"]).apply(
        lambda g: g.correct.sum() / g.total.sum(), include_groups=False).rename("accuracy").reset_index()
    base = per_class[per_class.method == reference].set_index("class_name").accuracy
    gains = per_class[per_class.method.isin(methods)].assign(gain=lambda t: t.accuracy - t.class_name.map(base))
    return write_table(gains, files.gain_by_class)


# --------------------------------------------------------------------------------------------------
# Paper profile: fine-tuning a ViT on ImageNet-LT with accelerate (GPUs; not run in CI)

VIT_SIZES = {  # torchvision.models.VisionTransformer arguments; vit_tiny is for the tests on CPU
    "vit_b_16": dict(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
    "vit_tiny": dict(patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128),
}


def vision_transformer(spec: dict, classes: int):
    """A torchvision ViT of `spec["model"]`'s size with a new head; `spec["weights"]` (a local state dict, e.g.
    torchvision's ImageNet ViT-B/16 file) initialises everything but the head."""
    if spec["model"] not in VIT_SIZES:
        raise KeyError(f"unknown model {spec['model']!r} in [longtail.finetune]; use one of {sorted(VIT_SIZES)}")
    model = VisionTransformer(image_size=spec["image_size"], num_classes=classes, **VIT_SIZES[spec["model"]])
    if spec.get("weights"):
        state = torch.load(spec["weights"], map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("heads.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("heads.")]:
            raise KeyError(f"{spec['weights']} does not fit {spec['model']}: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
    return model


class _ImageList:
    """A torch dataset of (image path, class index) with a torchvision transform."""
    def __init__(self, paths: Sequence, labels: Sequence[int], transform):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(load_image(self.paths[i])), self.labels[i]


def finetune(spec: dict, train: pd.DataFrame, test: pd.DataFrame, classes: pd.DataFrame, extra: pd.DataFrame,
             method: str, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Fine-tune the ViT of `spec` (a profile's `[longtail.finetune]` table) on the training images plus `extra`
    (columns path, target_class: one method's augmentations) with accelerate (any number of GPUs: `accelerate
    launch`), AdamW with warm-up and cosine decay, label smoothing; then whether each image of `test` is right,
    as `evaluate` returns. The row's loss (`row_parts`: `balanced`, `logit_adjusted`, also in `genie+logit_adjusted`)
    changes the sampler and the loss as in `evaluate`."""
    loss = row_parts(method)[1]
    accelerator = Accelerator(mixed_precision=spec.get("mixed_precision", "no"))
    set_seed(seed)
    names = list(classes.class_name)
    index = {c: i for i, c in enumerate(names)}
    size = spec["image_size"]
    normalise = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                 v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    augment = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()] + normalise)
    centre = v2.Compose([v2.Resize(round(size * 8 / 7), antialias=True), v2.CenterCrop(size)] + normalise)
    paths = list(train.path) + list(extra.path)
    labels = [index[c] for c in list(train.class_name) + list(extra.target_class)]
    counts = np.bincount(labels, minlength=len(names))
    sampler = None
    if loss == "balanced":
        sampler = torch.utils.data.WeightedRandomSampler(1.0 / counts[labels], len(labels),
                                                         generator=torch.Generator().manual_seed(seed))
    loader = torch.utils.data.DataLoader(_ImageList(paths, labels, augment), batch_size=spec["batch_size"],
                                         shuffle=sampler is None, sampler=sampler, num_workers=spec.get("workers", 0),
                                         drop_last=len(paths) > spec["batch_size"])
    test_loader = torch.utils.data.DataLoader(_ImageList(test.path, [index[c] for c in test.class_name], centre),
                                              batch_size=spec["batch_size"], num_workers=spec.get("workers", 0))
    model = vision_transformer(spec, len(names))
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec["learning_rate"], weight_decay=spec["weight_decay"])
    steps = spec["epochs"] * max(1, len(loader))
    schedule = get_cosine_schedule_with_warmup(optimizer, spec.get("warmup_epochs", 0) * len(loader), steps)
    model, optimizer, loader, test_loader, schedule = accelerator.prepare(model, optimizer, loader, test_loader, schedule)
    prior = np.bincount([index[c] for c in train.class_name], minlength=len(names)) / len(train)  # real images only
    offsets = torch.tensor(np.log(prior) if loss == "logit_adjusted" else np.zeros(len(names)),
                           dtype=torch.float32, device=accelerator.device)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=spec.get("label_smoothing", 0.0))
    model.train()
    with tqdm(total=steps, desc=f"fine-tuning ({method}, seed {seed})", disable=not progress
              or not accelerator.is_local_main_process) as bar:
        for _ in range(spec["epochs"]):
            for images, targets in loader:
                loss = loss_fn(model(images) + offsets, targets)
                accelerator.backward(loss)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                bar.update()
    model.eval()
    predictions, truths = [], []
    with torch.no_grad():
        for images, targets in test_loader:
            predicted, targets = accelerator.gather_for_metrics((model(images).argmax(1), targets))
            predictions.append(predicted.cpu())
            truths.append(targets.cpu())
    predicted, truth = torch.cat(predictions).numpy(), torch.cat(truths).numpy()
    if (np.asarray(names)[truth] != test.class_name.to_numpy()).any():
        raise RuntimeError("the test loader returned the images out of order")  # gather_for_metrics keeps the order
    return test_outcomes(test, np.asarray(names)[predicted]).assign(method=method, seed=seed)
