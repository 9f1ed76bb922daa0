"""Run profiles (embedded, smoke, paper) as data.

A profile is a small TOML file in `genie_utils/profiles/`; `extends` names a profile whose values it
overrides table by table. Relative paths in a profile are relative to the project root.
"""
from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "embedded"


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


def load_profile(name_or_path: str | os.PathLike = DEFAULT_PROFILE) -> dict:
    """Read a profile by name (`embedded`, `smoke`, `paper`) or from a TOML file path.

    Returns a nested dict; `profile["root"]` is the project root that relative paths refer to.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise FileNotFoundError(
            f"unknown profile {str(name_or_path)!r}: no file {path}. "
            f"Use one of {available_profiles()} or the path of a .toml file."
        )
    with open(path, "rb") as f:
        profile = tomllib.load(f)
    parent = profile.pop("extends", None)
    if parent:
        profile = _merge(load_profile(parent), profile)
    profile["root"] = str(project_root())
    return profile


def resolve(profile: dict, relative: str | os.PathLike) -> Path:
    """An absolute path for a path written in a profile (absolute paths pass through)."""
    path = Path(os.path.expanduser(str(relative)))
    return path if path.is_absolute() else Path(profile["root"]) / path
