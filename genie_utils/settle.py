"""The settle run: as many few-shot episodes as the paper's claims need for a verdict, sized before it runs, in
slices. Each slice draws its episodes, generates their augmentations into the profile's store (so an interrupted
slice resumes where it stopped), evaluates every row and writes its per-episode rows, with where, when and how it
ran, into the profile's `[settle] folder`, which is committed. The verdicts read every slice file there, so slices
run on different days or machines combine and nothing needs an earlier store.

    python -m genie_utils.settle --profile embedded-settle --list        # the slices and which are done
    python -m genie_utils.settle --profile embedded-settle --next 1      # run the first slice not yet done
    python -m genie_utils.settle --profile embedded-settle --verdicts    # verdicts from the slices done
    python -m genie_utils.settle --profile embedded-settle --all         # every slice again (make reproduce)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from . import claims, data, fewshot, generate, longtail, splits
from .features import FeatureCache, load_backbone
from .pairing import episodes_table, read_episodes, write_episodes
from .profiles import load_profile, profile_argument, project_root, resolve
from . import results as results_tables
from .results import write_table
from .run_files import RunFiles
from .store import Store, atomic_write
from .validation import run_command

# The columns a slice keeps of `fewshot.evaluate`'s results (its per-row seconds vary from run to run).
FEWSHOT_COLUMNS = ["profile", "backbone", "ways", "shots", "episode", "method", "accuracy", "generated_per_class"]


@dataclass(frozen=True)
class Slice:
    """A part of the settle run: few-shot episodes [start, stop) of one shot count (episode i drawn with seed
    `first_episode` + i), or the long tail (`shots` None)."""
    shots: int | None
    start: int = 0
    stop: int = 0

    @property
    def name(self) -> str:
        if self.shots is None:
            return "longtail"
        return f"fewshot-{self.shots}shot-episodes-{self.start:03d}-{self.stop - 1:03d}"


def plan(profile: dict) -> list[Slice]:
    """The profile's slices in the order they run: the long tail, then each shot count's episodes in runs of
    `[settle] slice_episodes` (one per entry of `[fewshot] shots`)."""
    spec, settle = profile["fewshot"], profile["settle"]
    sizes = settle["slice_episodes"]
    if len(sizes) != len(spec["shots"]) or min(sizes) < 1:
        raise ValueError(f"settle.slice_episodes {sizes} needs one positive count per entry of fewshot.shots "
                         f"{spec['shots']}")
    slices = [Slice(None)]
    for shots, count, size in zip(spec["shots"], spec["episodes"], sizes):
        slices += [Slice(shots, start, min(start + size, count)) for start in range(0, count, size)]
    return slices


def folder(profile: dict) -> Path:
    return resolve(profile, profile["settle"]["folder"])


def done(profile: dict) -> list[Slice]:
    """The slices whose result file is in the settle folder."""
    return [s for s in plan(profile) if (folder(profile) / f"{s.name}.csv").is_file()]


def _commit() -> str:
    """The code's commit; "-dirty" when it runs from uncommitted changes."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=project_root(), capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _record(profile: dict, piece: Slice, seconds: float, command: str, commit: str) -> dict:
    """Where, when and how a slice ran; `commit` is the code's commit when the slice began."""
    processor = platform.processor() or platform.machine()
    try:
        processor = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return {"slice": piece.name, "profile": profile["name"], "commit": commit, "command": command,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1), "device": device, "processor": processor,
            "first_episode": profile["fewshot"].get("first_episode", 0)}


def run_slice(profile: dict, piece: Slice, progress: bool = True, command: str = "") -> Path:
    """Run one slice and write `<slice>.csv` (and `<slice>.json`, its record) into the settle folder; the
    generated images go to the profile's store, so a rerun generates nothing."""
    began, commit = time.perf_counter(), _commit()
    files = RunFiles.of(profile)
    store = Store(files.store)
    dataset = data.load_dataset(profile, progress=progress)
    tables, names = splits.load_splits(profile, dataset), data.class_display_names(dataset)
    generator = generate.GenieGenerator.from_profile(profile)
    if piece.shots is None:
        table = _longtail(profile, generator, dataset, tables, names, store, progress)
    else:
        table = _fewshot(profile, piece, generator, dataset, tables, names, store, files, progress)
    target = folder(profile)
    target.mkdir(parents=True, exist_ok=True)
    path = write_table(table, target / f"{piece.name}.csv")
    record = _record(profile, piece, time.perf_counter() - began, command, commit)
    atomic_write(target / f"{piece.name}.json", lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))
    return path


def _fewshot(profile, piece, generator, dataset, tables, names, store, files, progress) -> pd.DataFrame:
    spec = profile["fewshot"]
    first = spec.get("first_episode", 0)
    episodes = episodes_table(dataset, tables, spec["ways"], piece.shots, profile["splits"]["queries_per_class"],
                              range(first + piece.start, first + piece.stop), spec.get("all_queries", False))
    episodes = read_episodes(write_episodes(episodes, files.settle_slice(piece.name).episodes), dataset)
    augmentations = fewshot.augmentation_table(generator, episodes, store, names, progress=progress)
    cache = FeatureCache(resolve(profile, profile["features"]["cache_dir"]))
    parts = []
    for name in spec["backbones"]:
        out = fewshot.evaluate(load_backbone(profile, name), episodes, augmentations, store, cache,
                               spec["views_per_image"], {"profile": profile["name"]}, progress,
                               workers=os.cpu_count() or 1)
        parts.append(out["results"][FEWSHOT_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def _longtail(profile, generator, dataset, tables, names, store, progress) -> pd.DataFrame:
    """Every long-tail row per seed and bin; beside it (`longtail-test-images.csv`), each long-tail claim's
    difference on the Few bin with its bootstrap interval over the test images."""
    train, test, classes = longtail.load_split(profile, dataset, tables)
    longtail.generate_augmentations(profile, generator, train, classes, store, names, progress=progress)
    path = longtail.evaluate_profile(profile, train, test, store, progress=progress)
    outcomes = pd.read_csv(RunFiles.of(profile).longtail.test_outcomes, keep_default_na=False,
                           dtype={"image_id": str})
    few = {"few": list(classes[classes.bin == "few"].class_name)}
    parts = [results_tables.bootstrap_differences(outcomes[outcomes.method.isin([c.first, c.second])], few, c.second)
             for c in claims.LONGTAIL_CLAIMS]
    target = folder(profile)
    target.mkdir(parents=True, exist_ok=True)
    write_table(pd.concat(parts, ignore_index=True), target / "longtail-test-images.csv")
    table = longtail.bin_accuracy(pd.read_csv(path))
    return table.assign(profile=profile["name"])


def fewshot_results(profile: dict) -> pd.DataFrame:
    """Every few-shot slice's rows in the settle folder, one table; an episode in two slices is an error."""
    paths = sorted(folder(profile).glob("fewshot-*.csv"))
    if not paths:
        raise FileNotFoundError(f"no few-shot slice in {folder(profile)}: run `python -m genie_utils.settle "
                                f"--profile {profile['name']} --next 1` first")
    table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    repeated = table.duplicated(["backbone", "shots", "episode", "method"])
    if repeated.any():
        row = table[repeated].iloc[0]
        raise ValueError(f"{folder(profile)}: episode {row.episode} ({row.shots}-shot) is in two slice files; "
                         "delete the older one")
    return table


def verdicts(profile: dict) -> pd.DataFrame:
    """Every claim's verdict from the slices done: few-shot per shot count at `[fewshot] target_half_widths`,
    the long tail's Few bin at `[longtail] target_half_width` (over seeds and over test images: the wider of the two
    intervals), each with the episodes or seeds it was sized for."""
    spec = profile["fewshot"]
    margins = dict(zip(spec["shots"], spec["target_half_widths"]))
    sized = dict(zip(spec["shots"], spec["episodes"]))
    results = fewshot_results(profile)
    parts = [claims.fewshot_verdicts(results, margins, sized)]
    parts += [claims.not_run(shots, sized[shots], margins[shots]) for shots in spec["shots"]
              if shots not in set(results.shots)]
    tail, test_images = folder(profile) / "longtail.csv", folder(profile) / "longtail-test-images.csv"
    if tail.is_file():
        parts.append(claims.longtail_verdicts(pd.read_csv(tail), profile["longtail"]["target_half_width"],
                                              profile["longtail"]["seeds"], pd.read_csv(test_images)))
    return pd.concat(parts, ignore_index=True)


def write_verdicts(profile: dict) -> dict[str, Path]:
    """`verdicts.csv` and `verdicts.md` in the settle folder."""
    table = verdicts(profile)
    target = folder(profile)
    atomic_write(target / "verdicts.md", lambda f: f.write(claims.verdict_table(table).encode()))
    return {"csv": write_table(table, target / "verdicts.csv"), "md": target / "verdicts.md"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded-settle", type=profile_argument,
                        help="a profile with a [settle] table (default embedded-settle)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="the slices, and which have a result file")
    action.add_argument("--next", type=int, metavar="N", help="run the first N slices that have no result file")
    action.add_argument("--slice", nargs="+", metavar="NAME", help="run these slices (names from --list)")
    action.add_argument("--all", action="store_true", help="run every slice, in order (a rerun reuses the store)")
    action.add_argument("--verdicts", action="store_true", help="write verdicts.csv and .md from the slices done")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    if "settle" not in profile:
        parser.error(f"profile {args.profile!r} has no [settle] table; use embedded-settle or one that extends it")
    slices = plan(profile)
    finished = {s.name for s in done(profile)}
    if args.list:
        for piece in slices:
            print(f"{piece.name}: {'done' if piece.name in finished else 'to run'}")
        return 0
    if args.verdicts:
        print(write_verdicts(profile)["md"].read_text())
        return 0
    if args.slice:
        known = {s.name: s for s in slices}
        unknown = [n for n in args.slice if n not in known]
        if unknown:
            parser.error(f"unknown slice {unknown[0]!r}; the slices: {', '.join(known)}")
        chosen = [known[n] for n in args.slice]
    else:
        chosen = slices if args.all else [s for s in slices if s.name not in finished][:args.next]
    command = shlex.join(["python", "-m", "genie_utils.settle", *(argv if argv is not None else sys.argv[1:])])
    for piece in chosen:
        print(f"[{profile['name']}] {piece.name}", flush=True)
        began = time.perf_counter()
        run_slice(profile, piece, command=command)
        print(f"[{profile['name']}] {piece.name} done in {time.perf_counter() - began:.0f} s", flush=True)
    if chosen and any(s.shots is not None for s in done(profile)):
        write_verdicts(profile)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "settle"))
