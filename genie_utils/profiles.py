"""Run profiles (embedded, smoke, paper) as data, validated against one schema.

A profile is a small TOML file in `genie_utils/profiles/`; `extends` names a profile whose values it
overrides table by table. Relative paths in a profile are relative to the project root. Every file is
checked on load: an unknown key or table, a value of the wrong type, a missing required key or an unknown
backbone gives one `ProfileError` naming the file, the key and the nearest valid key.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import os
import tomllib
from pathlib import Path

from .validation import check_guidance_scale, check_image_size, check_noise_ratio, check_prompt_template

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "embedded"
BACKBONES = ("efficientnet-lite0", "resnet18", "resnet34", "resnet50")
DATASET_KINDS = ("openmoji", "folders")

# The schema: every key a profile may set, with its type. `float` accepts integers; lists name their items'
# type. Keys in REQUIRED must be present once `extends` is resolved.
_TRAINING = {"vae_steps": int, "vae_batch_size": int, "vae_learning_rate": float, "kl_weight": float,
             "unet_steps": int, "unet_batch_size": int, "unet_learning_rate": float, "prompt_dropout": float,
             "snr_gamma": float, "ema_power": float, "checkpoint_every": int, "seed": int, "sampling": str,
             "schedule_shift": float, "zero_terminal_snr": bool, "flip": bool, "caption_templates": [str],
             "unet_dropout": float, "snapshots": bool, "renderings": [str],
             "style_captions": bool}
_SIZE = {"unet_channels": [int], "unet_layers_per_block": int, "attention_levels": [int],
         "attention_head_dim": int, "vae_channels": [int], "latent_channels": int, "text_width": int,
         "text_layers": int, "text_heads": int, "image_size": int, "vae_layers_per_block": int,
         "vae_scaling_factor": float}
SCHEMA: dict = {
    "name": str, "description": str, "extends": str,
    "dataset": {"kind": str, "resolution": int, "cache_dir": str, "root": str, "class_names": str},
    "splits": {"folder": str, "seed": int, "evaluation_fraction": float, "shots": [int], "queries_per_class": int,
               "ways": int, "longtail_test_per_class": int, "many_shot_threshold": int, "few_shot_threshold": int},
    "generation": {"model": str, "num_inference_steps": int, "guidance_scale": float, "prompt_template": str,
                   "batch_size": int, "seed": int, "guidance_timesteps": [int]},
    "features": {"backbone": str, "checkpoint": str, "checkpoints": dict, "cache_dir": str},
    "fewshot": {"shots": [int], "episodes": [int], "ways": int, "views_per_image": int, "backbones": [str],
                "figure_episode": int, "all_queries": bool, "target_half_widths": [float], "first_episode": int},
    "longtail": {"top_up_below": int, "images_per_class": int, "seeds": int, "backbone": str, "root": str,
                 "target_half_width": float,
                 "train_list": str, "test_list": str,
                 "training": {"epochs": int, "batch_size": int, "learning_rate": float, "momentum": float,
                              "weight_decay": float},
                 "finetune": {"model": str, "weights": str, "image_size": int, "epochs": int, "batch_size": int,
                              "learning_rate": float, "weight_decay": float, "warmup_epochs": int,
                              "label_smoothing": float, "mixed_precision": str, "workers": int}},
    "ada": {"episodes": [int], "ways": int, "shots": int, "cost_pairs": int},
    "walkthrough": {"source_id": str, "targets": [str], "noise_ratios": [float], "sweep_pairs": int},
    "paths": {"results": str, "figures": str},
    "settle": {"folder": str, "slice_episodes": [int], "sized_from": str},
    "notebooks": {"grid_images_per_class": int, "grid_classes": int, "run": [str]},
    "companion": {"output": str, "workdir": str, "size": _SIZE, "training": _TRAINING, "finetune": _TRAINING},
    "oracle": {"path": str, "architecture": str, "weights": str, "output": str, "workdir": str,
               "training": {"steps": int, "batch_size": int, "learning_rate": float, "checkpoint_every": int,
                            "seed": int}},
}
REQUIRED = ("name", "dataset.kind", "dataset.resolution", "splits.shots", "splits.queries_per_class",
            "generation.model", "generation.num_inference_steps", "generation.guidance_scale",
            "generation.prompt_template", "generation.batch_size", "generation.seed", "features.backbone",
            "features.cache_dir", "paths.results", "paths.figures")


class ProfileError(ValueError):
    """A profile file that cannot be used: syntax, unknown keys, wrong types, missing keys or values."""



def project_root() -> Path:
    """The folder holding the project's pyproject.toml (a clone), else the current directory.

    `GENIE_ROOT` overrides it, for users who install the package and keep their data elsewhere.
    """
    if os.environ.get("GENIE_ROOT"):
        return Path(os.environ["GENIE_ROOT"]).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd().resolve()


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_name(expected) -> str:
    if isinstance(expected, list):
        return f"a list of {_TYPE_NAMES[expected[0]].split(' ', 1)[1]}s"
    return "a table" if isinstance(expected, dict) else _TYPE_NAMES[expected]


def _matches(value, expected) -> bool:
    if isinstance(expected, list):
        return isinstance(value, list) and all(_matches(v, expected[0]) for v in value)
    if isinstance(expected, dict):
        return isinstance(value, dict)
    if isinstance(value, bool):
        return expected is bool
    return isinstance(value, (int, float)) if expected is float else isinstance(value, expected)


def _check_keys(table: dict, schema: dict, prefix: str = "") -> list[str]:
    """Unknown keys and wrong types in one (unmerged) profile table, as messages."""
    problems = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.5)
            where = f"[{prefix[:-1]}]" if prefix else "the top level"
            hint = f"; did you mean {prefix}{close[0]!s}?" if close else f"; valid keys of {where}: {sorted(schema)}"
            problems.append(f"unknown {'table' if isinstance(value, dict) else 'key'} {dotted!r}{hint}")
        elif not _matches(value, schema[key]):
            problems.append(f"{dotted} = {value!r} should be {_type_name(schema[key])}")
        elif isinstance(schema[key], dict):
            problems += _check_keys(value, schema[key], f"{dotted}.")
    return problems


def _check_values(profile: dict) -> list[str]:
    """Required keys and allowed values of a merged profile, as messages."""
    problems = []
    for dotted in REQUIRED:
        table = profile
        for part in dotted.split("."):
            table = table.get(part, {}) if isinstance(table, dict) else {}
        if table == {}:
            problems.append(f"missing required key {dotted}")
    features = profile.get("features", {})
    named = [("features.backbone", features.get("backbone"))]
    named += [("fewshot.backbones", b) for b in profile.get("fewshot", {}).get("backbones", [])]
    for key, backbone in named:
        if backbone is not None and backbone not in BACKBONES:
            close = difflib.get_close_matches(backbone, BACKBONES, n=1, cutoff=0.3)
            problems.append(f"unknown backbone {key} = {backbone!r}"
                            + (f"; did you mean {close[0]!r}?" if close else "") + f" Known: {list(BACKBONES)}")
        elif backbone in BACKBONES[1:] and not backbone_checkpoint(features, backbone):
            problems.append(f"{key} = {backbone!r} needs a checkpoint: features.checkpoints.{backbone} "
                            "(a UniSiam/torchvision file)")
    fewshot = profile.get("fewshot", {})
    if len(fewshot.get("episodes", [])) != len(fewshot.get("shots", [])):
        problems.append(f"fewshot.episodes {fewshot.get('episodes')} needs one count per entry of fewshot.shots "
                        f"{fewshot.get('shots')}")
    targets = fewshot.get("target_half_widths")
    if targets is not None and (len(targets) != len(fewshot.get("shots", [])) or min(targets, default=1) <= 0):
        problems.append(f"fewshot.target_half_widths {targets} needs one positive half-width (points) per entry of "
                        f"fewshot.shots {fewshot.get('shots')}")
    kind = profile.get("dataset", {}).get("kind")
    if kind is not None and kind not in DATASET_KINDS:
        problems.append(f"unknown dataset.kind = {kind!r}; use one of {list(DATASET_KINDS)}")
    if kind == "folders" and not profile["dataset"].get("root"):
        problems.append("dataset.kind = 'folders' needs dataset.root (root/<class>/<image>)")
    generation = profile.get("generation", {})
    for key in ("num_inference_steps", "batch_size"):
        if isinstance(generation.get(key), int) and generation[key] < 1:
            problems.append(f"generation.{key} = {generation[key]} must be at least 1")
    # the recipe's own checks (recipe.Recipe), so that a value no generation can run fails when the profile loads
    for key, check in (("guidance_scale", check_guidance_scale), ("prompt_template", check_prompt_template)):
        if key in generation:
            try:
                check(generation[key])
            except ValueError as error:
                problems.append(f"generation.{key}: {error}")
    resolution = profile.get("dataset", {}).get("resolution")
    if isinstance(resolution, int):
        try:
            check_image_size(resolution, "dataset.resolution")
        except ValueError as error:
            problems.append(str(error))
    fraction = profile.get("splits", {}).get("evaluation_fraction")
    if isinstance(fraction, (int, float)) and not 0 < fraction < 1:
        problems.append(f"splits.evaluation_fraction = {fraction} must lie strictly between 0 and 1 (the share of each "
                        "class's identities held out from every model's training, e.g. 0.4)")
    for key, ratios in (("walkthrough.noise_ratios", profile.get("walkthrough", {}).get("noise_ratios")),):
        for ratio in ratios or []:
            try:
                check_noise_ratio(ratio)
            except ValueError as error:
                problems.append(f"{key} = {ratios}: {error}")
                break
    interval = generation.get("guidance_timesteps")
    if interval is not None and not (len(interval) == 2 and 0 <= interval[0] <= interval[1] <= 999):
        problems.append(f"generation.guidance_timesteps = {interval} must be [low, high] with 0 <= low <= high <= 999")
    return problems


def _read(path: Path) -> dict:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ProfileError(f"{path}: saved with a byte-order mark (UTF-8 with BOM), which TOML does not allow: save it "
                           "as plain UTF-8 (in Notepad: Save as, Encoding UTF-8, not 'UTF-8 with BOM')")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise ProfileError(f"{path}: not UTF-8 text (byte {raw[error.start]:#x} on line {line}): TOML files are "
                           "UTF-8; save it as UTF-8 (a latin-1 or Windows-1252 editor setting writes other bytes "
                           "for accented letters)") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: TOML syntax error: {error}. Fix the line named.") from None
    problems = _check_keys(table, SCHEMA)
    if problems:
        raise ProfileError(f"{path}: " + "; ".join(problems))
    return table


def profile_path(name_or_path: str | os.PathLike) -> Path:
    """The file of a profile given by name (`embedded`, `smoke`, `paper`) or as a path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise FileNotFoundError(
            f"unknown profile {str(name_or_path)!r}: no file {path}. "
            f"Use one of {available_profiles()} or the path of a .toml file."
        )
    return path


def load_profile(name_or_path: str | os.PathLike = DEFAULT_PROFILE) -> dict:
    """Read and validate a profile by name or from a TOML file path.

    Returns a nested dict; `profile["root"]` is the project root that relative paths refer to and
    `profile["file"]` the file read.
    """
    path = profile_path(name_or_path)
    profile = _load_merged(path)
    problems = _check_values(profile)
    if problems:
        raise ProfileError(f"{path}: " + "; ".join(problems))
    profile["root"] = str(project_root())
    profile["file"] = str(path)
    return profile


def _load_merged(name_or_path, chain: tuple[Path, ...] = ()) -> dict:
    path = profile_path(name_or_path)
    if path.resolve() in chain:
        loop = [p.name for p in chain[chain.index(path.resolve()):]] + [path.name]
        raise ProfileError(f"{chain[-1]}: `extends` makes a loop, {' -> '.join(loop)}: a profile cannot extend "
                           "itself, directly or through others. Remove one of these `extends` lines, or point it at a "
                           "profile outside the loop.")
    profile = _read(path)
    parent = profile.pop("extends", None)
    if not parent:
        return profile
    if Path(parent).suffix == ".toml" and not Path(parent).expanduser().is_absolute():
        parent = path.parent / parent  # a file beside the profile, wherever the run starts
        if not parent.is_file():
            raise ProfileError(f"{path}: extends = {profile_extends(path)!r}: no file {parent} (a relative `extends` is "
                               f"read from the folder of the profile that names it, {path.parent}); check the path, or "
                               f"name a shipped profile: {available_profiles()}")
    return _merge(_load_merged(parent, (*chain, path.resolve())), profile)


def profile_extends(path: Path) -> str:
    """The `extends` line of a profile file as written."""
    return tomllib.loads(path.read_text(encoding="utf-8")).get("extends", "")


def profile_argument(name_or_path: str) -> str:
    """`--profile` of the command lines (argparse `type`): the name as given once the profile loads, else a usage
    error (exit status 2) saying why, e.g. an unknown name with the known ones."""
    try:
        load_profile(name_or_path)
    except (FileNotFoundError, ProfileError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name_or_path


def backbone_checkpoint(features: dict, name: str) -> str | None:
    """The checkpoint a `[features]` table names for backbone `name`: `[features.checkpoints] name`, else
    `[features] checkpoint` when `name` is the default `[features] backbone`; None when it names none."""
    return features.get("checkpoints", {}).get(name) or (
        features.get("checkpoint") if name == features.get("backbone") else None)


def resolve(profile: dict, relative: str | os.PathLike) -> Path:
    """An absolute path for a path written in a profile (absolute paths pass through)."""
    path = Path(os.path.expanduser(str(relative)))
    return path if path.is_absolute() else Path(profile["root"]) / path
