"""The preflight: everything a profile's run needs, checked before its first image (`python -m
genie_utils.reproduce --profile P --check`, `make check PROFILE=P`; `make reproduce` runs it first and refuses a run
whose preflight fails). Nothing is generated: each item is loaded or measured as the run would, and said in one
table line, ok or the problem with its fix.

The items: the dataset (folders, class names, every image decodable, as `data.load_dataset` checks them), the
diffusion model (it loads), each feature backbone the profile's notebooks use (its checkpoint loads), the oracle of
notebook 05 (it loads and knows the dataset's classes), the long tail of notebook 06 (its split loads), the disk the
store needs (images times bytes per image: measured on the store's own images when it has some) against the free
space, and the time from the throughput record of this device, when there is one.
"""
from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import data, features, longtail, oracle, pipeline, splits
from .recipe import ADA_RATIOS, METHODS, kept_steps
from .run_files import RunFiles
from .speed import estimate_seconds  # as `genie generate --dry-run` estimates

BASELINES = tuple(name for name, method in METHODS.items() if method.prompt_class == "own")
# bytes of a stored PNG per pixel when the store has no image yet to measure (RGB photographs compress to about half)
PNG_BYTES_PER_PIXEL = 1.5
SAMPLED_STORE_IMAGES = 200


@dataclass(frozen=True)
class Item:
    """One line of the preflight: what was checked, whether it is ready, and what was found or what to do."""
    name: str
    ok: bool
    detail: str


def _item(name: str, check: Callable[[], str]) -> Item:
    """Run one check: its finding when it returns, the error's one-line message (naming the fix) when it raises."""
    try:
        return Item(name, True, check())
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # what the loaders raise for bad input
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        return Item(name, False, " ".join(str(message).split()))


def fewshot_images(profile: dict) -> int:
    """Images the few-shot notebooks make at most (no pair shared between episodes): per episode, GeNIe's
    ways*(ways-1)*shots pairs at each of ADA_RATIOS, and (ways-1) images per support image for each baseline."""
    spec = profile["fewshot"]
    ways = spec.get("ways", profile["splits"].get("ways", 5))
    return sum(episodes * ways * (ways - 1) * shots * (len(ADA_RATIOS) + len(BASELINES))
               for shots, episodes in zip(spec["shots"], spec["episodes"]))


def longtail_images(profile: dict, classes) -> int:
    """Images the long-tail notebook makes for `classes` (class_name, train_images): for every image of the budget
    (`longtail.budget`), GeNIe's pair at each of ADA_RATIOS and one image of each baseline."""
    spec = profile["longtail"]
    plan = longtail.budget(classes, spec["top_up_below"], spec["images_per_class"])
    return int(plan.generated.sum()) * (len(ADA_RATIOS) + len(BASELINES))


def fewshot_image_steps(profile: dict) -> int:
    """UNet evaluations (guidance batched) of `fewshot_images`: r keeps int(steps * r) of the schedule's steps."""
    spec, steps = profile["fewshot"], profile["generation"]["num_inference_steps"]
    ways = spec.get("ways", profile["splits"].get("ways", 5))
    per_pair = sum(kept_steps(steps, r) for r in ADA_RATIOS) + sum(
        kept_steps(steps, METHODS[m].noise_ratio) for m in BASELINES)
    return sum(episodes * ways * (ways - 1) * shots * per_pair
               for shots, episodes in zip(spec["shots"], spec["episodes"]))


def bytes_per_image(store: Path, resolution: int) -> tuple[float, str]:
    """Mean bytes of a stored image: measured on up to SAMPLED_STORE_IMAGES of the store's own PNGs, else estimated
    from the resolution (PNG_BYTES_PER_PIXEL)."""
    found = sorted((store / "images").glob("*/*.png")) if (store / "images").is_dir() else []
    if found:
        sample = random.Random(0).sample(found, min(len(found), SAMPLED_STORE_IMAGES))
        return sum(p.stat().st_size for p in sample) / len(sample), f"measured on {len(sample)} stored images"
    return resolution * resolution * PNG_BYTES_PER_PIXEL, f"estimated, {PNG_BYTES_PER_PIXEL:g} bytes per pixel"


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _size(count: float) -> str:
    """Bytes in words: GB, MB or kB, one decimal."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"


def check_disk(profile: dict, images: int, free: int | None = None) -> str:
    """The store's need against the free space: a ValueError when `images` would not fit."""
    files = RunFiles.of(profile)
    size, how = bytes_per_image(files.store, profile["dataset"]["resolution"])
    need, free = images * size, free_bytes(files.results) if free is None else free
    said = f"{images:,} images x {_size(size)} ({how}) = {_size(need)}; {_size(free)} free"
    if need > free:
        raise ValueError(f"{said}: free {_size(need - free)} on that disk, or set [paths] results elsewhere")
    return said


def check_time(profile: dict, device: torch.device) -> str:
    """The generation time from the throughput record of this kind of device beside the profile's results
    (`benchmarks/throughput.py`), or a note that there is none."""
    record = RunFiles.of(profile).benchmarks.throughput
    model = Path(str(profile["generation"]["model"])).name
    found = estimate_seconds(record, fewshot_image_steps(profile), device.type, profile["generation"]["batch_size"],
                             model)
    if found is None:
        return (f"no throughput record for a {device.type} at {record}: run benchmarks/throughput.py --profile "
                f"{profile['name']} for an estimate ({fewshot_image_steps(profile):,} UNet evaluations to make)")
    seconds, row = found
    return f"{seconds / 3600:.1f} h of few-shot generation ({fewshot_image_steps(profile):,} UNet evaluations; {row})"


def check_oracle(profile: dict, dataset) -> str:
    """The oracle of notebook 05 loads and knows every class of the dataset; a profile without one is told that
    label consistency will be skipped."""
    judge = oracle.profile_oracle(profile)
    if judge is None:
        return "none: notebook 05 skips label consistency ([oracle] architecture and weights, or path, to judge it)"
    spec = profile["oracle"]
    name = f"{spec['architecture']} from {spec['weights']}" if spec.get("architecture") else spec["path"]
    unknown = sorted(set(dataset.class_name) - set(judge.classes))
    if unknown:
        raise ValueError(f"the oracle {name} knows {len(unknown)} of the dataset's classes not (e.g. {unknown[:3]}; "
                         f"it knows {len(judge.classes)} classes such as {judge.classes[:3]}): give the profile an "
                         "oracle of this dataset's classes ([oracle] path, or architecture and weights)")
    return f"{name}: knows all {dataset.class_name.nunique()} classes"


def backbones(profile: dict, notebooks: Sequence[str]) -> list[str]:
    """The feature backbones the profile's notebooks load: GeNIe-Ada's and the few-shot evaluation's (03-05), and the
    long tail's (06, `longtail.frozen_backbone`)."""
    names = []
    if {"03", "04", "05"} & set(notebooks):
        names += [profile["features"]["backbone"], *profile.get("fewshot", {}).get("backbones", [])]
    if "06" in notebooks:
        names.append(profile.get("longtail", {}).get("backbone") or profile["features"]["backbone"])
    return list(dict.fromkeys(names))


def preflight(profile: dict, notebooks: Sequence[str], device: torch.device | None = None) -> list[Item]:
    """Every item the run of `notebooks` (their two-digit prefixes) needs, checked in order; nothing is generated."""
    device = device or pipeline.default_device()
    items, loaded = [], {}

    def dataset_check() -> str:
        loaded["dataset"] = data.load_dataset(profile, progress=False)
        table = loaded["dataset"]
        return f"{len(table):,} images of {table.class_name.nunique()} classes, every one decodable"

    def model_check() -> str:
        info = pipeline.load_pipeline(profile["generation"]["model"], "cpu")[1]
        return f"{info['model']} loads" + (f" (local folder, fingerprint {info['model_fingerprint']})"
                                           if info["model_fingerprint"] else f" (hub, revision {info['model_revision']})")

    items.append(_item("dataset", dataset_check))
    items.append(_item("model", model_check))
    for name in backbones(profile, notebooks):
        items.append(_item(f"backbone {name}", lambda name=name: f"{features.load_backbone(profile, name).key} loads"))
    def tail() -> str:
        train, test, classes = longtail.load_split(profile, loaded["dataset"],
                                                   splits.load_splits(profile, loaded["dataset"]))
        loaded["classes"] = classes
        return f"{len(train):,} training and {len(test):,} test images of {len(classes)} classes"

    for prefix, name, check in (("05", "oracle", lambda: check_oracle(profile, loaded["dataset"])),
                                ("06", "long tail", tail)):
        if prefix in notebooks:
            items.append(_item(name, check) if "dataset" in loaded else
                         Item(name, False, "not checked: the dataset did not load (above)"))
    images = (fewshot_images(profile) if "02" in notebooks else 0) + (  # the few-shot ones: the bulk of a paper run
        longtail_images(profile, loaded["classes"]) if "06" in notebooks and "classes" in loaded else 0)
    if images:
        items.append(_item("disk", lambda: check_disk(profile, images)))
    if "02" in notebooks:
        items.append(_item("time", lambda: check_time(profile, device)))
    return items


def table(profile_name: str, items: Sequence[Item]) -> str:
    """The preflight as one Markdown table, a line per item."""
    lines = [f"preflight of profile {profile_name}:", "| item | ready | detail |", "| --- | --- | --- |"]
    lines += [f"| {item.name} | {'ok' if item.ok else 'NO'} | {item.detail} |" for item in items]
    failed = [item.name for item in items if not item.ok]
    lines.append(f"{len(items) - len(failed)} of {len(items)} ready" + (f"; fix: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)
