"""The editing benchmark: does the generator edit like Stable Diffusion?

GeNIe needs a middle of the noise range in which the output keeps the *source's* layout and colours but shows
the *target* class. For (source, target) pairs over every class, at each noise ratio r, this module measures:
the oracle's P(target) and P(source); whether the output is a **copy** of an image the generator trained on;
how much of the source's coarse layout it **keeps**; and the share that are **hard negatives** (the oracle names
the target, the layout is kept, and the image is no copy).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import generator_pool
from .data import class_display_names, load_dataset
from .generate import GenieGenerator
from .images import images_tensor, load_image
from .openmoji import mirror_keeps_meaning
from .oracle import crossover, label_consistency, load_oracle
from .pairing import pairs_per_target
from .profiles import resolve
from .recipe import EDITING_RATIOS, GENIE_NOISE_RATIO, profile_recipe
from .results import normal_interval
from .run_files import RunFiles
from .splits import BINS, EVALUATION, GENERATOR, bin_of, pool_images
from .store import Store
from .validation import check_noise_ratio

# Gu et al. 2023 ("On memorization in diffusion models"): a copy when the nearest training image is under a third
# as far as the second nearest. Here the second nearest is the nearest of *another identity*: skin-tone variants
# are renderings of one emoji, and a copy of one of them would otherwise be as close to its siblings.
COPY_RATIO = 1 / 3
KEEP_PIXELS = 8                 # the low-pass image compared for "source keep": 8x8 block means
HARD_NEGATIVE_KEEP = 0.7        # keep at most this (the text-only output with the same seed has keep 1)

# What the embedded generator should reach (oracle, all classes, the embedded recipe): SD v1.5 flips the class
# near r = 0.6-0.7 and GeNIe's default is r = 0.8.
TARGETS = {"crossover_low": 0.45, "crossover_high": 0.7, "p_target_at_0.8": 0.6, "p_target_at_0.8_few": 0.5,
           "copy_rate_at_0.8": 0.2, "hard_negative_rate": 0.4, "best_ratio_low": 0.5, "best_ratio_high": 0.9}


@dataclass(frozen=True)
class TrainingImages:
    """The images a generator trained on, (N, 3, H, W) in [-1, 1], with the identity of each."""
    images: torch.Tensor
    identities: Sequence[str]

    def __post_init__(self):
        if len(self.images) != len(self.identities):
            raise ValueError(f"got {len(self.identities)} identities for {len(self.images)} training images")
        if len(set(self.identities)) < 2:
            raise ValueError("the copy test needs training images of at least two identities")


def training_images(profile: dict) -> TrainingImages:
    """Every image the companion model trains on: the generator pool, in every emoji style its training or
    fine-tuning adds (`companion_renderings`), and the mirror image of each image whose meaning mirroring keeps
    (`openmoji.mirror_keeps_meaning`; a fine-tuning with `flip` trains on those too), with the identity of its
    original. A mirrored copy is a copy whether or not the model saw the mirror image."""
    images, _, rows = generator_pool.captioned_images(profile, generator_pool.companion_renderings(profile))
    mirrored = torch.tensor([mirror_keeps_meaning(c, n) for c, n in zip(rows.class_name, rows.name)])
    identities = list(rows.identity) + list(rows.identity[mirrored.numpy()])
    return TrainingImages(torch.cat([images, images[mirrored].flip(-1)]), identities)


def _flat(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(len(images), -1).double()


def copy_test(images: torch.Tensor, training: TrainingImages, chunk: int = 256) -> pd.DataFrame:
    """The ratio test for memorisation, per image of `images` ((N, 3, H, W) in [-1, 1], the training images' size).

    Returns per image: `nearest` (index into the training images), `nearest_distance`, `other_distance` (to the
    nearest training image of another identity), `copy_ratio` (their ratio) and `is_copy` (ratio < COPY_RATIO).
    Distances are L2 in pixels."""
    if images.shape[1:] != training.images.shape[1:]:
        raise ValueError(f"images of shape {tuple(images.shape[1:])} cannot be compared with training images of "
                         f"shape {tuple(training.images.shape[1:])}: resize them to the generator's size first")
    codes = torch.from_numpy(pd.factorize(pd.Series(training.identities))[0])
    reference = _flat(training.images)
    squared = (reference ** 2).sum(1)
    nearest, near, other = [], [], []
    for start in range(0, len(images), chunk):
        batch = _flat(images[start:start + chunk])
        distances = ((batch ** 2).sum(1, keepdim=True) + squared - 2 * batch @ reference.T).clamp_min(0).sqrt()
        closest = distances.argmin(1)
        same = codes[None, :] == codes[closest][:, None]
        nearest.append(closest)
        near.append(distances.gather(1, closest[:, None])[:, 0])
        other.append(distances.masked_fill(same, float("inf")).min(1).values)
    near, other = torch.cat(near).numpy(), torch.cat(other).numpy()
    ratio = near / np.maximum(other, 1e-12)
    return pd.DataFrame({"nearest": torch.cat(nearest).numpy(), "nearest_distance": near, "other_distance": other,
                         "copy_ratio": ratio, "is_copy": ratio < COPY_RATIO})


def low_pass(images: torch.Tensor, pixels: int = KEEP_PIXELS) -> torch.Tensor:
    """Block means over a `pixels` x `pixels` grid: the layout and colours of an image, not its details."""
    return torch.nn.functional.adaptive_avg_pool2d(images.float(), pixels)


def source_keep(outputs: torch.Tensor, sources: torch.Tensor, text_only: torch.Tensor) -> np.ndarray:
    """How far each output's low-pass image is from its source's, relative to the text-only output's (same seed
    and prompt, r = 1): 0 is the source's layout exactly, 1 is as far as an image drawn from pure noise."""
    if not outputs.shape == sources.shape == text_only.shape:
        raise ValueError(f"outputs, sources and text-only outputs must have one shape, got {tuple(outputs.shape)}, "
                         f"{tuple(sources.shape)}, {tuple(text_only.shape)}")
    source = low_pass(sources)
    distance = (low_pass(outputs) - source).flatten(1).norm(dim=1)
    reference = (low_pass(text_only) - source).flatten(1).norm(dim=1)
    return (distance / reference.clamp_min(1e-6)).numpy()


def hard_negatives(table: pd.DataFrame) -> pd.Series:
    """Outputs the oracle names as the target class, that keep the source's layout and copy no training image."""
    return (table.oracle_class == table.target_class) & (table.keep <= HARD_NEGATIVE_KEEP) & ~table.is_copy


def editing_images(generator, oracle, pairs: pd.DataFrame, noise_ratios: Sequence[float], store,
                   class_names: dict[str, str], training: TrainingImages, progress: bool = True) -> pd.DataFrame:
    """GeNIe outputs of every pair (dataset rows with a `target_class` column) at every r, measured.

    r = 1 is always generated: it is the text-only reference of `keep`. Returns one row per image: the oracle's
    columns (`oracle.label_consistency`), the copy test's, `keep` and `hard_negative`."""
    ratios = sorted({check_noise_ratio(r) for r in noise_ratios} | {1.0})
    table = label_consistency(generator, oracle, pairs, ratios, store, class_names, progress=progress)
    outputs = images_tensor([store.load_image(key) for key in table.key])
    table = pd.concat([table, copy_test(outputs, training)], axis=1)
    sources = {row.image_id: row.path for row in pairs.itertuples()}
    source_pixels = generator.preprocess([load_image(sources[s]) for s in table.source_id]).float()
    pair = list(zip(table.source_id, table.target_class))
    text_only = {p: i for i, (p, r) in enumerate(zip(pair, table.noise_ratio)) if r == 1.0}
    table["keep"] = source_keep(outputs, source_pixels, outputs[[text_only[p] for p in pair]])
    table["hard_negative"] = hard_negatives(table)
    return table


def target_groups(classes: Sequence[str], generator_pool: pd.DataFrame, many_above: int,
                  few_below: int) -> dict[str, list[str]]:
    """All `classes`, then the long-tail bins of the target class by its images in `generator_pool` (dataset
    rows; ImageNet-LT's bins, `splits.bin_of`: many above `many_above`, few below `few_below`)."""
    classes = sorted(classes)
    sizes = generator_pool.class_name.value_counts()
    bins = {c: bin_of(int(sizes.get(c, 0)), many_above, few_below) for c in classes}
    return {"all classes": classes, **{f"{b} (generator pool)": [c for c in classes if bins[c] == b]
                                       for b in BINS}}


def profile_target_groups(profile: dict, dataset: pd.DataFrame) -> dict[str, list[str]]:
    """`target_groups` of the profile's dataset, generator pool and long-tail thresholds."""
    splits = profile["splits"]
    return target_groups(dataset.class_name.unique(), pool_images(profile, dataset, GENERATOR),
                         splits["many_shot_threshold"], splits["few_shot_threshold"])


MEASURES = {"p_target": "p_target", "p_source": "p_source", "oracle_target": "says_target", "copy_rate": "is_copy",
            "keep": "keep", "hard_negative_rate": "hard_negative"}


def editing_summary(table: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """Per group of target classes and r: the mean of each measure, each target class weighing the same, with a
    95% half-width over classes (normal approximation, `*_half_width`), the pairs, and the group's crossover r
    of mean P(target) over mean P(source) (NaN if P(target) never overtakes)."""
    table = table.assign(says_target=table.oracle_class == table.target_class)
    parts = []
    for name, members in groups.items():
        chosen = table[table.target_class.isin(members)]
        if chosen.empty:
            continue
        per_class = chosen.groupby(["noise_ratio", "target_class"])[list(MEASURES.values())].mean()
        rows = []
        for ratio, part in per_class.groupby("noise_ratio"):
            row = {"noise_ratio": ratio, "classes": len(part), "pairs": int((chosen.noise_ratio == ratio).sum())}
            for measure, column in MEASURES.items():
                row[measure], row[f"{measure}_half_width"], _ = normal_interval(part[column])
            rows.append(row)
        summary = pd.DataFrame(rows).assign(group=name)
        cross = crossover(summary)
        parts.append(summary.assign(crossover=np.nan if cross is None else cross))
    return pd.concat(parts, ignore_index=True)


def real_image_reference(oracle, images: pd.DataFrame, groups: dict[str, list[str]]) -> pd.DataFrame:
    """What the oracle gives real images of identities the generator never saw (`images`: the evaluation pool, with
    `path` and `class_name`): per group, the mean P(true class) and the share it names, each class weighing the
    same as in `editing_summary`, and per image. A generator's P(target) above this comes from outputs that look
    more like the oracle's own training images (the generator pool, which it shares with the generator) than new
    emoji do."""
    probabilities = oracle.probabilities(list(images.path))
    truth = np.array([oracle.index(c) for c in images.class_name])
    table = pd.DataFrame({"class_name": images.class_name.to_numpy(),
                          "p_true": probabilities[np.arange(len(images)), truth],
                          "named": probabilities.argmax(1) == truth})
    rows = []
    for name, members in groups.items():
        chosen = table[table.class_name.isin(members)]
        if chosen.empty:
            continue
        per_class = chosen.groupby("class_name")[["p_true", "named"]].mean()
        rows.append({"group": name, "classes": len(per_class), "images": len(chosen),
                     "p_true": per_class.p_true.mean(), "named": per_class.named.mean(),
                     "p_true_per_image": chosen.p_true.mean(), "named_per_image": chosen.named.mean()})
    return pd.DataFrame(rows)


def best_hard_negative_ratio(summary: pd.DataFrame, group: str = "all classes") -> tuple[float, float]:
    """(r, rate) at which a group's hard-negative rate is highest (the lowest such r on ties)."""
    rows = summary[summary.group == group].sort_values("noise_ratio")
    best = rows.loc[rows.hard_negative_rate.idxmax()]
    return float(best.noise_ratio), float(best.hard_negative_rate)


def _at(summary: pd.DataFrame, group: str, ratio: float, measure: str) -> float:
    rows = summary[(summary.group == group) & np.isclose(summary.noise_ratio, ratio)]
    return float(rows[measure].iloc[0]) if len(rows) else float("nan")


def target_check(summary: pd.DataFrame, few_group: str = "few (generator pool)") -> pd.DataFrame:
    """One row per target of TARGETS: what it asks, what `summary` (one setting) reached, and whether it is met."""
    everyone = summary[summary.group == "all classes"]
    cross = everyone.crossover.iloc[0]
    if cross <= everyone.noise_ratio.min():
        cross = float("nan")  # P(target) leads already at the lowest r measured: the crossover lies below it
    best_ratio, best_rate = best_hard_negative_ratio(summary)
    t, r = TARGETS, GENIE_NOISE_RATIO
    rows = [
        ("crossover r (all classes; NaN: below the lowest r)", f"{t['crossover_low']:g} to {t['crossover_high']:g}",
         cross, t["crossover_low"] <= cross <= t["crossover_high"]),
        (f"P(target) at r = {r:g} (all classes)", f">= {t['p_target_at_0.8']:g}", _at(summary, "all classes", r, "p_target"),
         _at(summary, "all classes", r, "p_target") >= t["p_target_at_0.8"]),
        (f"P(target) at r = {r:g} (few bin)", f">= {t['p_target_at_0.8_few']:g}", _at(summary, few_group, r, "p_target"),
         _at(summary, few_group, r, "p_target") >= t["p_target_at_0.8_few"]),
        (f"copy rate at r = {r:g}", f"<= {t['copy_rate_at_0.8']:g}", _at(summary, "all classes", r, "copy_rate"),
         _at(summary, "all classes", r, "copy_rate") <= t["copy_rate_at_0.8"]),
        ("best hard-negative rate", f">= {t['hard_negative_rate']:g}", best_rate, best_rate >= t["hard_negative_rate"]),
        ("r of the best hard-negative rate", f"{t['best_ratio_low']:g} to {t['best_ratio_high']:g}", best_ratio,
         t["best_ratio_low"] <= best_ratio <= t["best_ratio_high"]),
    ]
    return pd.DataFrame(rows, columns=["target", "asked", "reached", "met"])


# The measures a cheaper setting must keep: a saving (fewer steps, less guidance) is taken only when each of them, at
# every r, lies within the reference setting's 95% half-width (all classes).
AGREEMENT_MEASURES = ("p_target", "p_source", "copy_rate", "keep", "hard_negative_rate")


def agreement(summary: pd.DataFrame, reference: str, group: str = "all classes",
              measures: Sequence[str] = AGREEMENT_MEASURES) -> pd.DataFrame:
    """Every other setting of `summary` against the setting labelled `reference`, cell by cell: per setting, r and
    measure, its value, the reference's value and half-width, and whether it lies `within` that half-width. A
    setting agrees with the reference when all its cells do (`agreeing_settings`)."""
    rows = summary[summary.group == group]
    if reference not in set(rows.setting):
        raise ValueError(f"no setting {reference!r} in the summary; it has {sorted(set(rows.setting))}")
    base = rows[rows.setting == reference].set_index("noise_ratio")
    cells = []
    for setting, part in rows[rows.setting != reference].groupby("setting", sort=False):
        part = part.set_index("noise_ratio")
        missing = sorted(set(base.index) - set(part.index))
        if missing:
            raise ValueError(f"setting {setting!r} lacks r = {missing}, which the reference has")
        for measure in measures:
            for ratio in base.index:
                value, target, half = part.at[ratio, measure], base.at[ratio, measure], base.at[ratio, f"{measure}_half_width"]
                cells.append({"setting": setting, "noise_ratio": ratio, "measure": measure, "value": value,
                              "reference": target, "half_width": half, "within": abs(value - target) <= half + 1e-12})
    return pd.DataFrame(cells, columns=["setting", "noise_ratio", "measure", "value", "reference", "half_width",
                                        "within"])


def agreeing_settings(cells: pd.DataFrame) -> list[str]:
    """The settings of an `agreement` table whose every cell lies within the reference's half-width."""
    return [setting for setting, part in cells.groupby("setting", sort=False) if part.within.all()]


# --------------------------------------------------------------------------------------------------
# The benchmark over a profile's dataset


@dataclass(frozen=True)
class Setting:
    """A sampling setting of the benchmark: denoising steps, guidance scale, and the timesteps guided (None: all)."""
    steps: int
    guidance_scale: float
    guidance_timesteps: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        interval = self.guidance_timesteps
        return (f"{self.steps} steps, guidance {self.guidance_scale:g}"
                + (f" at t {interval[0]}-{interval[1]}" if interval else ""))


def profile_settings(profile: dict) -> list[Setting]:
    """The paper's recipe (50 steps, guidance 7.5) and the profile's own, once if they are the same."""
    recipe = profile_recipe(profile)
    own = Setting(recipe.num_inference_steps, recipe.guidance_scale, recipe.guidance_timesteps)
    return list(dict.fromkeys([Setting(50, 7.5), own]))


def benchmark(profile: dict, settings: Sequence[Setting], per_class: int = 2,
              ratios: Sequence[float] = EDITING_RATIOS, seed: int = 0, model=None,
              progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The editing benchmark of `model` (default: the profile's generator) under each setting: `per_class` pairs
    with every class as the target, sources drawn (`seed`) from the evaluation pool's images of other classes,
    one noise draw per pair shared by every r and setting. Images are kept in the store
    results/<profile>/benchmarks/editing-store, so a rerun only measures.

    Returns (summary, images): `editing_summary` rows and per-image rows, each tagged with its setting."""
    if profile["dataset"]["kind"] != "openmoji":
        raise ValueError(f"profile {profile['name']!r}: the editing benchmark measures the companion model against the "
                         "images it trained on (the OpenMoji generator pool); run it with an embedded profile")
    dataset = load_dataset(profile, progress=False)
    pairs = pairs_per_target(pool_images(profile, dataset, EVALUATION), sorted(dataset.class_name.unique()),
                             per_class, seed)
    judge = load_oracle(resolve(profile, profile["oracle"]["path"]))  # the shipped judge, in every profile
    training, groups = training_images(profile), profile_target_groups(profile, dataset)
    store = Store(RunFiles.of(profile).benchmarks.editing_store)
    if model is None:
        generator = GenieGenerator.from_profile(profile)
    else:
        generator = GenieGenerator.from_pretrained(model, batch_size=profile["generation"]["batch_size"])
    base = profile_recipe(profile)
    summaries, images = [], []
    for setting in settings:
        generator.recipe = dataclasses.replace(base, num_inference_steps=setting.steps,
                                               guidance_scale=setting.guidance_scale,
                                               guidance_timesteps=setting.guidance_timesteps)
        began = time.perf_counter()
        table = editing_images(generator, judge, pairs, ratios, store, class_display_names(dataset), training,
                               progress)
        interval = setting.guidance_timesteps
        tags = dict(setting=setting.label, steps=setting.steps, guidance_scale=setting.guidance_scale,
                    guidance_timesteps="" if interval is None else f"{interval[0]}-{interval[1]}")
        summaries.append(editing_summary(table, groups).assign(**tags, seconds=round(time.perf_counter() - began, 1)))
        images.append(table.assign(**tags))
    return pd.concat(summaries, ignore_index=True), pd.concat(images, ignore_index=True)


def oracle_reference(profile: dict) -> pd.DataFrame:
    """`real_image_reference` of the profile's oracle on its evaluation pool, by the editing benchmark's groups."""
    dataset = load_dataset(profile, progress=False)
    judge = load_oracle(resolve(profile, profile["oracle"]["path"]))
    return real_image_reference(judge, pool_images(profile, dataset, EVALUATION),
                                profile_target_groups(profile, dataset))
