"""`genie`: GeNIe, GeNIe-Ada and the baselines on your own class-folder dataset, from the command line.

    genie generate DATA --store STORE --source-classes cat --target-classes dog --dry-run
    genie generate DATA --store STORE --method genie_ada --model ./my-sd-folder
    accelerate launch --num_processes 4 -m genie_utils.cli generate DATA --store STORE   # several GPUs
    genie export STORE OUT      # OUT/<target class>/<key>.png, readable by torchvision's ImageFolder

DATA holds one folder per class (`DATA/<class>/*.jpg|png`). Images go into the store (`STORE/images/...`, one
JSON row per image, `STORE/manifest.csv`), keyed by everything that determines them: a rerun makes only what is
missing, and processes launched together share the work by key without duplicating it.

The library's heavy modules (torch, diffusers) are imported inside the commands, so that `genie --help` and the
usage errors answer at once.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .profiles import BACKBONES
from .recipe import GENIE_NOISE_RATIO
from .speed import SETTINGS as SPEED_SETTINGS
from .validation import INTERRUPTED, UsageError

if TYPE_CHECKING:  # annotations only
    import torch

    from .recipe import Recipe

METHOD_HELP = {
    "genie": "every image of each source class pushed toward each other target class at --noise-ratio",
    "genie_ada": "GeNIe at r = 0.5 ... 0.9 per pair, keeping the r* GeNIe-Ada chooses with --backbone",
    "img2img_low": "each image of a target class, own-class prompt, r = 0.3",
    "img2img_high": "each image of a target class, own-class prompt, r = 0.7",
    "txt2img": "text only (r = 1), as many per target class as it has images",
}


@dataclass(frozen=True)
class Generation:
    """What `genie generate` makes, its options checked and their defaults filled in."""
    method: str
    noise_ratio: float  # GeNIe's r
    variants: int  # the baselines' images per image of a target class
    backbone: str  # GeNIe-Ada's
    recipe: Recipe
    benchmark: Path  # throughput.csv: --dry-run's estimate; the speed records beside it set `--speed auto`
    device: torch.device | None  # --device; None: the launcher's, else a GPU if there is one


def checked_generation(args) -> Generation:
    """Every option of `genie generate`, checked before any work (no dataset read, no model loaded, nothing
    written): an option the method does not use is an error, not ignored."""
    from . import speed
    from .ada import check_runs_a_step
    from .pipeline import check_model_folder, model_location
    from .recipe import Recipe
    from .store import check_store_folder, claim_stale_seconds
    from .validation import check_device, check_noise_ratio

    method = args.method
    if method != "genie" and args.noise_ratio is not None:
        raise UsageError(f"--noise-ratio is GeNIe's; {method} uses its own ratio ({METHOD_HELP[method]})")
    noise_ratio = check_noise_ratio(GENIE_NOISE_RATIO if args.noise_ratio is None else args.noise_ratio)
    # --steps, --guidance and --prompt-template checked by the recipe, before any dataset is read
    recipe = Recipe(num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                    prompt_template=args.prompt_template)
    hard_negatives = method in ("genie", "genie_ada")
    if hard_negatives and args.variants is not None:
        raise UsageError(f"--variants is the baselines'; {method} makes one image per (source image, target "
                         "class): leave it out, or choose the sources with --source-classes")
    if not hard_negatives and args.source_classes:
        raise UsageError(f"--source-classes picks GeNIe's sources; {method} makes each target class's images "
                         "from its own images: leave it out, or choose the classes with --target-classes")
    if method != "genie_ada" and (args.backbone is not None or args.backbone_checkpoint):
        raise UsageError(f"--backbone and --backbone-checkpoint are GeNIe-Ada's; {method} uses no backbone: "
                         "leave them out, or use --method genie_ada")
    variants = 1 if args.variants is None else args.variants
    backbone = args.backbone or "efficientnet-lite0"
    if backbone not in BACKBONES:
        close = difflib.get_close_matches(backbone, BACKBONES, n=1, cutoff=0.3)
        raise UsageError(f"unknown --backbone {backbone!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" Known: {', '.join(BACKBONES)} (the ResNets with --backbone-checkpoint FILE)")
    if variants < 1 or args.batch_size < 1:
        raise UsageError("--variants and --batch-size must be at least 1")
    if method == "genie_ada" and backbone != "efficientnet-lite0" and not args.backbone_checkpoint:
        raise UsageError(f"--backbone {backbone} needs --backbone-checkpoint FILE (a UniSiam checkpoint)")
    benchmark = speed.check_benchmark(Path(args.benchmark)) if args.benchmark else speed.default_benchmark()
    claim_stale_seconds()  # a bad GENIE_CLAIM_STALE_SECONDS is named now, not when a claim is first met
    check_runs_a_step(method, noise_ratio, args.steps)
    check_store_folder(Path(args.store), Path(args.data))
    kind, folder = model_location(args.model)  # a wrong --model fails now, a dry run's included
    if kind == "folder":
        check_model_folder(folder)
    device = check_device(args.device) if args.device else None  # one GPU a process
    return Generation(method, noise_ratio, variants, backbone, recipe, benchmark, device)


def generate_command(args) -> int:
    from . import speed
    from .ada import generate_choices, image_steps
    from .class_folders import load_class_folders
    from .data import class_display_names
    from .features import named_backbone
    from .generate import GenieGenerator
    from .jobs import process_state, run_jobs, version_spec
    from .pairing import chosen_classes, plan_jobs
    from .pipeline import default_device
    from .store import Store, check_one_version

    run = checked_generation(args)  # every option, before any work
    method = run.method
    # 1. This process: its share of the jobs and its device (under a launcher, the launcher's), and the speed setting
    state = None if args.dry_run else process_state()
    shard = (state.process_index, state.num_processes) if state else (0, 1)
    device = run.device if run.device is not None else state.device if state else default_device()
    setting, why = speed.chosen_setting(args.speed, device, run.benchmark, args.model)
    # 2. The dataset, its chosen classes and the jobs
    dataset = load_class_folders(args.data, args.class_names)
    sources = chosen_classes(dataset, args.source_classes, "source")
    targets = chosen_classes(dataset, args.target_classes, "target")
    jobs = plan_jobs(dataset, method, sources, targets, run.noise_ratio, run.variants)
    needed = image_steps(jobs, method, args.steps)
    unit = "pairs (5 candidates each)" if method == "genie_ada" else "images"
    print(f"{method}: {len(jobs)} {unit} for {len(targets)} target classes, {needed} UNet evaluations "
          f"at {args.steps} steps", flush=True)
    print(f"speed setting {setting} on {device} ({why})", flush=True)
    # 3. A dry run ends with the time estimate
    if args.dry_run:
        print(speed.estimate_text(run.benchmark, needed, device.type, args.batch_size, Path(args.model).name, setting))
        return 0
    # 4. The models: GeNIe-Ada's backbone first, so that a wrong name or checkpoint fails before the candidates
    backbone = named_backbone(run.backbone, args.backbone_checkpoint) if method == "genie_ada" else None
    generator = GenieGenerator.from_pretrained(args.model, run.recipe, device, batch_size=args.batch_size,
                                               speed=setting)
    # 5. The store: one version of its images; this method's settings recorded before its first image, so that an
    # interrupted run counts
    store = Store(args.store)
    names = class_display_names(dataset)
    settings = ({"noise_ratio": run.noise_ratio} if method == "genie" else
                {"backbone": run.backbone, "backbone_key": backbone.key} if method == "genie_ada" else {})
    check_one_version(store, version_spec(generator), {c: run.recipe.prompt(names[c]) for c in targets}, method,
                      settings)
    store.write_settings(method, settings)
    # 6. The images (GeNIe-Ada: each target's prototype from all its images)
    progress = not args.no_progress
    if method == "genie_ada":
        rows = generate_choices(generator, backbone, jobs, dataset[dataset.class_name.isin(targets)], store, names,
                                progress=progress, shard=shard)
    else:
        rows = run_jobs(generator, jobs, store, names, progress=progress, shard=shard)
    # 7. The manifest, once every process is done, so that it lists every process's images
    if state:
        state.wait_for_everyone()
    manifest = store.export_manifest() if shard[0] == 0 else None
    print(f"{len(rows)} {method} rows in {store.root}" + (f" (process {shard[0]} of {shard[1]})" if shard[1] > 1 else "")
          + (f"; manifest {manifest}" if manifest else ""))
    return 0


def export_command(args) -> int:
    from .export import export, summary

    print(summary(export(args.store, args.out, args.method, args.candidates), args.out))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="genie", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)

    make = commands.add_parser("generate", help="generate augmentations into a store",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                               description="Methods: " + "; ".join(f"{m}: {h}" for m, h in METHOD_HELP.items()))
    make.add_argument("data", help="dataset folder: DATA/<class>/<image>.jpg|png")
    make.add_argument("--store", required=True, help="output store folder (created; reruns resume)")
    make.add_argument("--model", default="./models/genie-companion",
                      help="a diffusers folder (leading ./ or absolute) or a hub id, e.g. "
                           "stable-diffusion-v1-5/stable-diffusion-v1-5")
    make.add_argument("--method", choices=list(METHOD_HELP), default="genie", help="what to make (methods above)")
    make.add_argument("--source-classes", nargs="+", metavar="CLASS", help="GeNIe's source classes (default: all)")
    make.add_argument("--target-classes", nargs="+", metavar="CLASS", help="target classes (default: all)")
    make.add_argument("--noise-ratio", type=float, help=f"GeNIe's r (default {GENIE_NOISE_RATIO:g}, the paper's)")
    make.add_argument("--variants", type=int, help="baselines: images per image of a target class (default 1)")
    make.add_argument("--steps", type=int, default=50, help="denoising steps of the full schedule")
    make.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    make.add_argument("--prompt-template", default="a photo of a {}.",
                      help="exactly one {} for the class's display name ({{ }} for literal braces)")
    make.add_argument("--class-names", help="optional file of lines '<folder> <display name>' for the prompts")
    make.add_argument("--seed", type=int, default=0, help="base seed; each image's seed derives from its job")
    make.add_argument("--batch-size", type=int, default=8, help="images per batch")
    make.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU if there is one; one per process "
                                       "under accelerate launch)")
    make.add_argument("--backbone", help="genie_ada: the feature backbone (default efficientnet-lite0, or "
                      "resnet18/34/50 with --backbone-checkpoint)")
    make.add_argument("--backbone-checkpoint", help="genie_ada: a UniSiam ResNet checkpoint file")
    make.add_argument("--dry-run", action="store_true", help="print the job count and the estimated time, make nothing")
    make.add_argument("--benchmark", help="throughput CSV for --dry-run's estimate and --speed auto "
                                          "(default: results/embedded/benchmarks/throughput.csv)")
    make.add_argument("--speed", choices=["auto", *SPEED_SETTINGS], default="auto",
                      help="speed setting (dtype, attention, memory format, torch.compile; see benchmarks/throughput.py)"
                           ": auto is the default benchmarks/throughput.py recorded for this device next to the "
                           "--benchmark CSV, else plain float32 on a CPU, fp16 on a GPU")
    make.add_argument("--no-progress", action="store_true", help="no progress bar")
    make.set_defaults(run=generate_command)

    out = commands.add_parser("export", help="copy a store's images into OUT/<target class>/<key>.png")
    out.add_argument("store", help="a store folder written by `genie generate`")
    out.add_argument("out", help="output folder (ImageFolder layout) with manifest.csv")
    out.add_argument("--method", nargs="+", choices=list(METHOD_HELP), help="only these methods (default: all)")
    out.add_argument("--candidates", action="store_true",
                     help="also GeNIe-Ada's candidates: the genie images of its sweep (r = 0.5 ... 0.9) besides the "
                          "one it chose (the manifest's candidate column marks them)")
    out.set_defaults(run=export_command)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, FileNotFoundError, KeyError, ValueError, OSError) as error:
        print(f"genie {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every store write is atomic and claims are released: nothing half-made is kept
        print(f"genie {args.command}: {INTERRUPTED}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
