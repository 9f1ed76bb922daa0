"""Does the generator edit like Stable Diffusion? The editing benchmark (genie_utils.editing) over every class.

    python benchmarks/editing.py                                  # the paper's 50 steps and the profile's recipe
    python benchmarks/editing.py --settings 20:1 20:3 20:5 20:7.5 20:7.5:0-500 --name guidance
    python benchmarks/editing.py --card                           # and put the result into the model card

Each setting is STEPS:GUIDANCE[:LOW-HIGH], the last part limiting guidance to timesteps LOW..HIGH. Pairs: `--per-class`
sources for every class as the target (the same number for each), drawn from the evaluation pool's images of the
other classes, which the generator never saw; one noise draw per pair, the same at every r and in every setting.
Writes results/<profile>/benchmarks/<name>.csv (per setting, group of target classes and r) and <name>_images.csv
(per image), oracle_reference.csv (what the oracle gives real images of identities the generator never saw: the
P(target) of a generator whose outputs are as new as those), and the figure figures/<profile>/benchmark_<name>.png.
With --card the summary also goes into the model folder as editing.csv, and the model card is rewritten from it
(`make companion` does the same for a new model).
When the profile's recipe is among the settings, <name>_agreement.csv compares each other setting with it, cell by
cell (`editing.agreement`): a cheaper setting is taken only when every cell lies within the recipe's 95% half-width.
"""
from __future__ import annotations

import argparse

from genie_utils import editing, plots, profiles
from genie_utils.recipe import EDITING_RATIOS, Recipe
from genie_utils.run_files import RunFiles


def parse_setting(text: str) -> editing.Setting:
    """STEPS:GUIDANCE[:LOW-HIGH] -> a Setting, or an error naming the format."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        interval = tuple(int(t) for t in parts[2].split("-")) if len(parts) == 3 else None
        if interval is not None and len(interval) != 2:
            raise ValueError
        setting = editing.Setting(int(parts[0]), float(parts[1]), interval)
    except ValueError:
        raise argparse.ArgumentTypeError(f"setting {text!r} is not STEPS:GUIDANCE[:LOW-HIGH], e.g. 20:7.5 or "
                                         "20:7.5:0-500") from None
    try:  # before any loading
        Recipe(setting.steps, setting.guidance_scale, guidance_timesteps=interval)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"setting {text!r}: {error}") from None
    return setting


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profiles.profile_argument,
                        help="a profile name or .toml file")
    parser.add_argument("--settings", type=parse_setting, nargs="+", default=None,
                        help="STEPS:GUIDANCE[:LOW-HIGH] each (default: 50:7.5 and the profile's recipe)")
    parser.add_argument("--per-class", type=int, default=2, help="pairs with each class as the target")
    parser.add_argument("--ratios", type=float, nargs="+", default=list(EDITING_RATIOS))
    parser.add_argument("--seed", type=int, default=0, help="draws the pairs")
    parser.add_argument("--model", help="a diffusers model folder (default: the profile's model)")
    parser.add_argument("--name", default="editing", help="the result files' name")
    parser.add_argument("--card", action="store_true",
                        help="also write the summary into the model folder (editing.csv) and rewrite the model card")
    args = parser.parse_args(argv)

    settings = profiles.load_profile(args.profile)
    chosen = args.settings or editing.profile_settings(settings)
    if args.card and args.model:
        parser.error("--card writes into the profile's model folder: leave out --model")
    summary, images = editing.benchmark(settings, chosen, args.per_class, args.ratios, args.seed, args.model)
    for setting, part in summary.groupby("setting", sort=False):
        print(f"\n{setting} ({part.seconds.iloc[0] / 60:.1f} min)")
        print(part[part.group == "all classes"][["noise_ratio", "p_target", "p_source", "copy_rate", "keep",
                                                 "hard_negative_rate"]].round(3).to_string(index=False))
        print(editing.target_check(part).to_string(index=False), flush=True)
    files = RunFiles.of(settings)
    benchmarks = files.benchmarks
    benchmarks.folder.mkdir(parents=True, exist_ok=True)
    summary.to_csv(benchmarks.editing(args.name), index=False)
    reference = editing.profile_settings(settings)[-1].label
    if reference in set(summary.setting) and summary.setting.nunique() > 1:
        cells = editing.agreement(summary, reference)
        cells.to_csv(benchmarks.editing_agreement(args.name), index=False)
        print(f"\nagainst the profile's recipe ({reference}): cells outside its 95% half-width, of "
              f"{len(editing.AGREEMENT_MEASURES)} measures x {summary.noise_ratio.nunique()} ratios")
        for setting, part in cells.groupby("setting", sort=False):
            print(f"  {setting}: {int((~part.within).sum())} of {len(part)}")
    images.to_csv(benchmarks.editing_images(args.name), index=False)
    print(benchmarks.editing(args.name))
    reference = editing.oracle_reference(settings)  # what real images of unseen identities get from the same judge
    reference.to_csv(benchmarks.oracle_reference, index=False)
    print("\nthe oracle on real evaluation-pool images (P(true class), share named; each class weighing the same):")
    print(reference.round(3).to_string(index=False))
    print(plots.save(plots.editing_curves(benchmarks.editing(args.name)), files.figures, f"benchmark_{args.name}"))
    if args.card:
        from genie_utils.companion.card import write_model_card

        model = profiles.resolve(settings, settings["generation"]["model"])
        summary.to_csv(model / "editing.csv", index=False)
        print(write_model_card(settings, model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
