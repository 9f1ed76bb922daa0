"""What one few-shot episode's augmentations cost, per configuration, timed in one run.

    python benchmarks/episode_cost.py                       # the configurations below, 2 timings each
    python benchmarks/episode_cost.py --configs plain/32/20:7.5 channels-last/64/20:7.5 --repeats 3

A configuration is SETTING/BATCH/STEPS:GUIDANCE[:LOW-HIGH]: a speed setting of genie_utils/speed.py (how the
pipeline runs), the images per UNet call, and a sampling recipe (what it makes; the last part limits guidance to
timesteps LOW..HIGH). The first configuration is the reference of the ratios. The default compares the profile's
recipe on the plain path at its batch size (what a fresh clone runs) with the float32 settings and a larger batch
(the same images within one grey level), and with the cheaper recipes that the editing benchmark tested against
the recipe (benchmarks/editing.py; docs/benchmarks.md gives their verdicts: none keeps the editing curve).

Each timing makes every augmentation of episode 0 of the first shot count into a fresh store, exactly as notebook
02 does (`fewshot.augmentation_table`: GeNIe's pairs at GeNIe-Ada's five ratios, Img2Img^L, Img2Img^H and Txt2Img),
PNG writes included; the configurations take turns (a machine's speed drifts over minutes). Reported per
configuration: the median seconds per episode (range, timings), images per second, the ratio of the median time
to the first configuration's, and, for every shot count of the profile, the UNet evaluations of its episode 0
counted from the recipe (a guided step counts two; the timed episode's steps are checked against the count). Writes
results/<profile>/benchmarks/episode_cost.csv.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from genie_utils import data, fewshot, generate, pairing, profiles, speed, splits
from genie_utils.recipe import ADA_RATIOS, METHODS, Recipe, profile_recipe
from genie_utils.run_files import BenchmarkFiles, FewshotFiles, RunFiles
from genie_utils.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from editing import parse_setting  # noqa: E402  (the editing benchmark's STEPS:GUIDANCE[:LOW-HIGH])

DEFAULT_CONFIGS = ["plain/{batch}/{recipe}", "channels-last/{batch}/{recipe}", "plain/{double}/{recipe}",
                   "plain/{batch}/10:7.5", "plain/{batch}/20:7.5:0-500", "plain/{batch}/20:7.5:500-999"]


def parse_config(text: str, profile: dict) -> tuple[str, int, Recipe]:
    """SETTING/BATCH/STEPS:GUIDANCE[:LOW-HIGH] -> (speed setting, batch size, recipe), or a usage error."""
    parts = text.split("/")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < 1:
        raise argparse.ArgumentTypeError(f"configuration {text!r} is not SETTING/BATCH/STEPS:GUIDANCE[:LOW-HIGH], "
                                         "e.g. plain/32/20:7.5")
    if parts[0] not in speed.SETTINGS:
        raise argparse.ArgumentTypeError(f"configuration {text!r}: unknown speed setting {parts[0]!r}; known: "
                                         f"{', '.join(speed.SETTINGS)}")
    setting = parse_setting(parts[2])
    recipe = dataclasses.replace(profile_recipe(profile), num_inference_steps=setting.steps,
                                 guidance_scale=setting.guidance_scale, guidance_timesteps=setting.guidance_timesteps)
    return parts[0], int(parts[1]), recipe


def default_configs(profile: dict) -> list[str]:
    recipe = profile_recipe(profile)
    label = f"{recipe.num_inference_steps}:{recipe.guidance_scale:g}"
    batch = profile["generation"]["batch_size"]
    return [c.format(batch=batch, double=2 * batch, recipe=label) for c in DEFAULT_CONFIGS]


def unet_work(generator: generate.GenieGenerator, images_by_ratio: dict[float, int]) -> tuple[int, int]:
    """(UNet steps, UNet evaluations) to make `images_by_ratio[r]` images at each r with the generator's recipe,
    counted from its timesteps without generating: a step per image and timestep, an evaluation per step and
    branch (two where the step is guided: the unconditional and the conditional prediction)."""
    steps = evaluations = 0
    for r, count in images_by_ratio.items():
        timesteps = generator.timesteps(r)
        steps += count * len(timesteps)
        evaluations += count * sum(2 if generator.recipe.guides_at(t) else 1 for t in timesteps)
    return steps, evaluations


def episode_images(support: pd.DataFrame) -> dict[float, int]:
    """Images per r that one episode's augmentations take: GeNIe's pairs at every ratio of GeNIe-Ada's sweep, and
    the baselines' own-class images (as `fewshot.augmentation_table`)."""
    counts: dict[float, int] = {}
    pairs = len(pairing.episode_jobs(support, "genie"))
    for r in ADA_RATIOS:
        counts[r] = counts.get(r, 0) + pairs
    for method in pairing.BASELINES:
        r = METHODS[method].noise_ratio
        counts[r] = counts.get(r, 0) + len(pairing.episode_jobs(support, method))
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profiles.profile_argument,
                        help="a profile name or .toml file")
    parser.add_argument("--configs", nargs="+", help="SETTING/BATCH/STEPS:GUIDANCE[:LOW-HIGH] each (default: above)")
    parser.add_argument("--repeats", type=int, default=2, help="timings per configuration (median kept)")
    parser.add_argument("--out", help="folder for episode_cost.csv (default: results/<profile>/benchmarks)")
    args = parser.parse_args(argv)
    settings = profiles.load_profile(args.profile)
    try:
        configs = [(text, *parse_config(text, settings)) for text in (args.configs or default_configs(settings))]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    dataset = data.load_dataset(settings, progress=False)
    names = data.class_display_names(dataset)
    tables, spec = splits.load_splits(settings, dataset), settings["fewshot"]
    with tempfile.TemporaryDirectory() as scratch:  # the profile's episodes 0, not written over its results
        drawn = pd.concat([pairing.episodes_table(dataset, tables, spec["ways"], shots,
                                                  settings["splits"]["queries_per_class"], range(1),
                                                  spec.get("all_queries", False)) for shots in spec["shots"]])
        episodes = pairing.read_episodes(pairing.write_episodes(drawn, FewshotFiles(Path(scratch)).episodes), dataset)
    first = episodes[(episodes.shots == episodes.shots.min()) & (episodes.episode == 0)]
    supports = {shots: group[(group.episode == 0) & (group.role == "support")]
                for shots, group in episodes.groupby("shots")}
    device = torch.device("cpu")
    base = generate.GenieGenerator.from_profile(settings, device=device, dtype=torch.float32)
    generators = {}
    for text, setting, batch, recipe in configs:
        pipe = speed.apply(copy.deepcopy(base.pipe), setting, device)
        generators[text] = generate.GenieGenerator(pipe, recipe, base.model_info, batch, setting)

    timings: dict[str, list[float]] = {text: [] for text, *_ in configs}
    counted: dict[str, int] = {}
    images = 0
    for repeat in range(args.repeats):
        for text, *_ in configs:
            generator = generators[text]
            with tempfile.TemporaryDirectory() as scratch:
                before = generator.counts.unet_steps
                began = time.perf_counter()
                table = fewshot.augmentation_table(generator, first, Store(RunFiles(Path(scratch)).store), names,
                                                   progress=False)
                timings[text].append(time.perf_counter() - began)
                counted[text] = generator.counts.unet_steps - before
                images = len(table.drop_duplicates("key"))
            print(f"timing {repeat + 1}/{args.repeats} {text}: {timings[text][-1]:.1f} s", flush=True)

    reference = statistics.median(timings[configs[0][0]])
    rows = []
    for text, setting, batch, recipe in configs:
        seconds = statistics.median(timings[text])
        row = {"configuration": text, "speed_setting": setting, "batch_size": batch,
               "steps": recipe.num_inference_steps, "guidance_scale": recipe.guidance_scale,
               "guidance_timesteps": "" if recipe.guidance_timesteps is None else
               "-".join(map(str, recipe.guidance_timesteps)),
               "episode_shots": int(first.shots.iloc[0]), "images": images,
               "seconds_per_episode": round(seconds, 2), "seconds_min": round(min(timings[text]), 2),
               "seconds_max": round(max(timings[text]), 2), "timings": len(timings[text]),
               "images_per_second": round(images / seconds, 3),
               "time_ratio": round(seconds / reference, 3)}
        for shots, support in supports.items():
            steps, row[f"unet_evaluations_{shots}_shot"] = unet_work(generators[text], episode_images(support))
            if shots == row["episode_shots"] and steps != counted[text]:
                raise RuntimeError(f"{text}: the timing ran {counted[text]} UNet steps, the recipe counts {steps}")
        rows.append(row)
    table = pd.DataFrame(rows)
    out = (BenchmarkFiles(Path(args.out)) if args.out else RunFiles.of(settings).benchmarks).episode_cost
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(table.to_string(index=False))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
