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
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from .profiles import BACKBONES
from .recipe import ADA_RATIOS, GENIE_NOISE_RATIO
from .speed import SETTINGS as SPEED_SETTINGS
from .validation import INTERRUPTED

METHOD_HELP = {
    "genie": "every image of each source class pushed toward each other target class at --noise-ratio",
    "genie_ada": "GeNIe at r = 0.5 ... 0.9 per pair, keeping the r* GeNIe-Ada chooses with --backbone",
    "img2img_low": "each image of a target class, own-class prompt, r = 0.3",
    "img2img_high": "each image of a target class, own-class prompt, r = 0.7",
    "txt2img": "text only (r = 1), as many per target class as it has images",
}


class UsageError(ValueError):
    """A bad argument: the message says what was wrong and how to fix it."""


def _classes(dataset: pd.DataFrame, chosen: list[str] | None, role: str) -> list[str]:
    known = sorted(dataset.class_name.unique())
    if not chosen:
        return known
    import difflib

    for name in chosen:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise UsageError(f"unknown {role} class {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; the dataset's classes are folder names: {', '.join(known[:20])}"
                             + (" ..." if len(known) > 20 else ""))
    return list(dict.fromkeys(chosen))


def plan_jobs(dataset: pd.DataFrame, method: str, sources: list[str], targets: list[str], noise_ratio: float,
              variants: int = 1) -> list:
    """The jobs of one method, paired as in the few-shot episodes: for GeNIe (and GeNIe-Ada's pairs) every
    image of each source class with each target class other than its own; for the baselines `variants` images
    per image of each target class."""
    from .pairing import hard_negative_jobs, own_class_jobs

    if method in ("genie", "genie_ada"):
        jobs = hard_negative_jobs(dataset[dataset.class_name.isin(sources)], noise_ratio, "genie", targets)
        if not jobs:
            raise UsageError("no (source, target) pairs: sources and targets are the same single class; "
                             "give at least two classes between --source-classes and --target-classes")
        return jobs
    return own_class_jobs(dataset[dataset.class_name.isin(targets)], method, variants)


def image_steps(jobs: list, method: str, steps: int) -> int:
    """UNet evaluations (guidance batched) the jobs need: GeNIe-Ada runs every candidate ratio of each pair."""
    from .recipe import kept_steps

    if method == "genie_ada":
        return len(jobs) * sum(kept_steps(steps, r) for r in ADA_RATIOS)
    return sum(kept_steps(steps, job.noise_ratio) for job in jobs)


BENCHMARK_COLUMNS = ("device", "batch_size", "images_per_second", "steps", "noise_ratio")


def check_benchmark(path: Path) -> Path:
    """A --benchmark file given by the user: its folder must exist (the speed records beside it set `--speed auto`)
    and the file, when there, must have the columns of benchmarks/throughput.py's CSV, with device names as text and
    numbers in the others."""
    if not path.parent.is_dir():
        raise UsageError(f"--benchmark {path}: no such folder {path.parent} (benchmarks/throughput.py writes "
                         "throughput.csv and its speed records into one folder): pass that throughput.csv, or leave "
                         "--benchmark out")
    if not path.is_file():
        return path  # no estimate for --dry-run, but the records beside it still count
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UsageError(f"--benchmark {path} is not a CSV file ({error})") from None
    missing = [c for c in BENCHMARK_COLUMNS if c not in table]
    if missing:
        raise UsageError(f"--benchmark {path} lacks the columns {', '.join(missing)} of benchmarks/throughput.py's "
                         "throughput.csv: pass that file, or leave --benchmark out")
    for column in BENCHMARK_COLUMNS:
        values = table[column].dropna()
        wrong = (values[~values.map(lambda v: isinstance(v, str))] if column == "device"
                 else values[pd.to_numeric(values, errors="coerce").isna()])
        if len(wrong):
            value = wrong.iloc[0]
            shown = repr(value) if isinstance(value, str) else value
            raise UsageError(f"--benchmark {path}: column {column} holds {shown}, not "
                             f"{'a device name' if column == 'device' else 'a number'}: pass the throughput.csv that "
                             "benchmarks/throughput.py wrote, or leave --benchmark out")
    return path


def default_benchmark() -> Path:
    from .speed import benchmarks_folder
    from .profiles import load_profile

    return benchmarks_folder(load_profile("embedded")) / "throughput.csv"


def speed_setting(args, device, benchmark: Path) -> tuple[str, str]:
    """(setting, why): --speed's, or with `auto` the default the benchmark recorded beside `benchmark`."""
    from . import speed

    if args.speed != "auto":
        return speed.check_setting(args.speed, device), "--speed"
    return speed.device_default(device, benchmark.parent, Path(args.model).name)


def check_store_folder(store: Path, dataset: Path) -> None:
    """A store is a folder (new or not), outside the dataset folder: inside it (or the folder itself) it would be read
    as a class by the next run."""
    if store.exists() and not store.is_dir():
        raise UsageError(f"--store {store} is a file, not a store folder: give a new folder, or one genie generate "
                         "wrote")
    store, dataset = store.resolve(), dataset.resolve()
    if store == dataset or store.is_relative_to(dataset):
        raise UsageError(f"--store {store} lies inside the dataset folder {dataset}: the next run would read the store "
                         "as a class folder; give a --store outside the dataset")


def check_runs_a_step(method: str, noise_ratio: float, steps: int) -> None:
    """Every noise ratio the method runs must keep at least one of the schedule's `steps` (int(steps * r) >= 1)."""
    import math

    from .recipe import METHODS, kept_steps

    ratios = (ADA_RATIOS if method == "genie_ada" else [noise_ratio] if method == "genie"
              else [METHODS[method].noise_ratio])
    idle = [r for r in ratios if kept_steps(steps, r) == 0]
    if idle:
        raise UsageError(f"--steps {steps} runs no denoising step at r = {idle[0]:g} (int(steps * r) = 0: the source "
                         f"would come back unchanged): use --steps {math.ceil(1 / idle[0] - 1e-9)} or more")


def generate_command(args) -> int:
    from . import data
    from . import speed
    from .generate import GenieGenerator
    from .jobs import process_state, run_jobs, version_spec
    from .pipeline import check_model_folder, default_device, model_location
    from .recipe import Recipe
    from .validation import check_device, check_noise_ratio
    from .store import Store, claim_stale_seconds

    if args.method != "genie" and args.noise_ratio is not None:
        raise UsageError(f"--noise-ratio is GeNIe's; {args.method} uses its own ratio ({METHOD_HELP[args.method]})")
    noise_ratio = check_noise_ratio(GENIE_NOISE_RATIO if args.noise_ratio is None else args.noise_ratio)
    # --steps, --guidance and --prompt-template checked by the recipe, before any dataset is read
    recipe = Recipe(num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                             prompt_template=args.prompt_template)
    hard_negatives = args.method in ("genie", "genie_ada")
    # an option the method does not use is an error, not ignored
    if hard_negatives and args.variants is not None:
        raise UsageError(f"--variants is the baselines'; {args.method} makes one image per (source image, target "
                         "class): leave it out, or choose the sources with --source-classes")
    if not hard_negatives and args.source_classes:
        raise UsageError(f"--source-classes picks GeNIe's sources; {args.method} makes each target class's images "
                         "from its own images: leave it out, or choose the classes with --target-classes")
    if args.method != "genie_ada" and (args.backbone is not None or args.backbone_checkpoint):
        raise UsageError(f"--backbone and --backbone-checkpoint are GeNIe-Ada's; {args.method} uses no backbone: "
                         "leave them out, or use --method genie_ada")
    args.variants = 1 if args.variants is None else args.variants
    args.backbone = args.backbone or "efficientnet-lite0"
    if args.backbone not in BACKBONES:
        close = difflib.get_close_matches(args.backbone, BACKBONES, n=1, cutoff=0.3)
        raise UsageError(f"unknown --backbone {args.backbone!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" Known: {', '.join(BACKBONES)} (the ResNets with --backbone-checkpoint FILE)")
    if args.variants < 1 or args.batch_size < 1:
        raise UsageError("--variants and --batch-size must be at least 1")
    if args.method == "genie_ada" and args.backbone != "efficientnet-lite0" and not args.backbone_checkpoint:
        raise UsageError(f"--backbone {args.backbone} needs --backbone-checkpoint FILE (a UniSiam checkpoint)")
    benchmark = check_benchmark(Path(args.benchmark)) if args.benchmark else default_benchmark()
    claim_stale_seconds()  # a bad GENIE_CLAIM_STALE_SECONDS is named now, not when a claim is first met
    check_runs_a_step(args.method, noise_ratio, args.steps)
    check_store_folder(Path(args.store), Path(args.data))
    kind, folder = model_location(args.model)  # a wrong --model fails now, a dry run's included
    if kind == "folder":
        check_model_folder(folder)
    state = None if args.dry_run else process_state()
    device = (check_device(args.device) if args.device  # one GPU a process
              else state.device if state else default_device())
    dataset = data.load_class_folders(args.data, args.class_names)
    sources = _classes(dataset, args.source_classes, "source")
    targets = _classes(dataset, args.target_classes, "target")
    jobs = plan_jobs(dataset, args.method, sources, targets, noise_ratio, args.variants)
    needed = image_steps(jobs, args.method, args.steps)
    unit = "pairs (5 candidates each)" if args.method == "genie_ada" else "images"
    print(f"{args.method}: {len(jobs)} {unit} for {len(targets)} target classes, {needed} UNet evaluations "
          f"at {args.steps} steps", flush=True)
    setting, why = speed_setting(args, device, benchmark)
    print(f"speed setting {setting} on {device} ({why})", flush=True)
    if args.dry_run:
        estimate = speed.estimate_seconds(benchmark, needed, device.type, args.batch_size, Path(args.model).name,
                                          setting)
        if estimate is None:
            print("estimated time: unknown (no benchmark for this device: run benchmarks/throughput.py, "
                  "or pass --benchmark FILE.csv)")
        else:
            print(f"estimated time: {estimate[0] / 60:.1f} min on one process (from {estimate[1]})")
        return 0

    shard = (state.process_index, state.num_processes) if state else (0, 1)
    if args.method == "genie_ada":  # loaded first: a wrong name or checkpoint fails now, not after the candidates
        from . import features

        backbone = (features.efficientnet_lite0() if args.backbone == "efficientnet-lite0"
                    else features.resnet(args.backbone, args.backbone_checkpoint))
    generator = GenieGenerator.from_pretrained(args.model, recipe, device, batch_size=args.batch_size,
                                                        speed=setting)
    store = Store(args.store)
    names = data.class_display_names(dataset)
    settings = ({"noise_ratio": noise_ratio} if args.method == "genie" else
                {"backbone": args.backbone, "backbone_key": backbone.key} if args.method == "genie_ada" else {})
    check_one_version(store, version_spec(generator), {c: recipe.prompt(names[c]) for c in targets}, args.method,
                      settings)
    store.write_settings(args.method, settings)  # before the first image: an interrupted run counts
    progress = not args.no_progress
    if args.method == "genie_ada":
        from . import ada

        candidates = ada.generate_candidates(generator, jobs, store, names, progress=progress, shard=shard)
        support = dataset[dataset.class_name.isin(targets)]  # each target's prototype: all its images
        rows = ada.ada_choices(backbone, candidates, support, store) if len(candidates) else candidates
    else:
        rows = run_jobs(generator, jobs, store, names, progress=progress, shard=shard)
    if state:
        state.wait_for_everyone()  # the manifest lists every process's images
    manifest = store.export_manifest() if shard[0] == 0 else None
    print(f"{len(rows)} {args.method} rows in {store.root}" + (f" (process {shard[0]} of {shard[1]})"
                                                               if shard[1] > 1 else "")
          + (f"; manifest {manifest}" if manifest else ""))
    return 0


SETTING_NAMES = {"noise_ratio": "--noise-ratio", "backbone": "--backbone", "backbone_key": "backbone weights"}


def _setting(name: str, value) -> str:
    shown = " and ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in (value if isinstance(value, list)
                                                                                 else [value]))
    return f"{SETTING_NAMES.get(name, name)} {shown}"


def method_settings(store, manifest: pd.DataFrame | None = None) -> dict:
    """The settings beyond the recipe each method's images in the store were made with ({method: {setting: value}}:
    GeNIe's `noise_ratio`, GeNIe-Ada's `backbone`): those `genie generate` recorded (`Store.settings`); for a method
    without a record (images written by the library), what its rows show: the ratio of the genie rows that no
    genie_ada row lists as a candidate (a list when there are several), the genie_ada rows' backbone. `manifest`: the
    store's, when read already."""
    recorded = store.settings()
    manifest = store.manifest() if manifest is None else manifest
    if manifest.empty:
        return recorded
    settings = {}
    listed = {k for keys in manifest.get("candidate_keys", pd.Series(dtype=object)).dropna() for k in keys}
    plain = manifest[(manifest.method == "genie") & ~manifest.key.isin(listed)]
    ratios = sorted(set(plain.get("noise_ratio", pd.Series(dtype=float)).dropna()))
    if ratios:
        settings["genie"] = {"noise_ratio": ratios[0] if len(ratios) == 1 else ratios}
    backbones = sorted(set(manifest[manifest.method == "genie_ada"].get("backbone", pd.Series(dtype=object))
                           .dropna()))
    if backbones:
        settings["genie_ada"] = {"backbone": backbones[0] if len(backbones) == 1 else backbones}
    return {**settings, **recorded}


def check_one_version(store, version: dict, prompts: dict[str, str] | None = None, method: str | None = None,
                      settings: dict | None = None) -> dict:
    """A store holds one version of its images (`jobs.version_spec`: model, recipe, size, dtype, base seed, and
    the prompt of each class, `prompts`: class -> prompt, which the template and the class names make), and of each
    method one image per (source, target) pair: `method`'s `settings` beyond the recipe (GeNIe's noise ratio,
    GeNIe-Ada's backbone) must be those its images in the store were made with (`method_settings`). A run that
    would add a second version, or a second image of each pair, is refused before any image is made, so that export
    never ships a pair twice. Returns the store's settings per method (`method_settings`)."""
    import math

    fields = sorted(set(version) | {"guidance_timesteps"})  # set only for a limited guidance interval

    def plain(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    mine = {f: version.get(f) for f in fields}
    manifest = store.manifest()
    for row in manifest.to_dict("records"):
        differing = [f for f in fields if plain(row.get(f)) != mine[f]]
        if differing:
            shown = ", ".join(f"{f} {plain(row.get(f))!r} there, {mine[f]!r} now" for f in differing)
            raise UsageError(f"the store {store.root} holds images of another version ({shown}): generate into "
                             "another --store, so that one store never holds a pair twice")
        target = row.get("target_class")
        if prompts and target in prompts and row.get("prompt") != prompts[target]:
            raise UsageError(f"the store {store.root} holds images of another version (prompt {row.get('prompt')!r} "
                             f"there for class {target}, {prompts[target]!r} now: another --prompt-template or "
                             "--class-names): generate into another --store, so that one store never holds a pair twice")
    known = method_settings(store, manifest)
    there = known.get(method, {})
    differing = [f for f in (settings or {}) if f in there and there[f] != settings[f]]
    options = [f for f in differing if SETTING_NAMES.get(f, "").startswith("--")]  # the others follow from them
    if differing:
        differing = options or differing
        made, now = (", ".join(_setting(f, values[f]) for f in differing) for values in (there, settings))
        hint = (f" (or give {made} to add to this one)"
                if options and not any(isinstance(there[f], list) for f in differing) else "")
        raise UsageError(f"the store {store.root} holds {method} images made with {made}, not {now}: this run would "
                         f"add a second {method} image of each (source, target) pair; generate into another --store"
                         + hint)
    return known


EXPORT_MARK = ".genie-export"  # in every folder `export` wrote: only such a folder, or an empty one, is written again


def ada_candidates(manifest: pd.DataFrame, settings: dict) -> pd.Series:
    """Which rows of a store's manifest are GeNIe-Ada's candidates rather than GeNIe's images: the genie rows at a
    noise ratio other than the store's GeNIe ratio (`method_settings`; every genie row in a store where GeNIe ran
    only as GeNIe-Ada's sweep)."""
    ratio = settings.get("genie", {}).get("noise_ratio", [])
    ratios = manifest.get("noise_ratio", pd.Series(float("nan"), index=manifest.index))
    return (manifest.method == "genie") & ratios.notna() & ~ratios.isin(ratio if isinstance(ratio, list) else [ratio])


def export(store_root: str | Path, out: str | Path, methods: list[str] | None = None,
           candidates: bool = False) -> pd.DataFrame:
    """Copy the store's images into `out/<target class>/<key>.png` (one folder per label, as torchvision's
    ImageFolder reads), one per (source, target, method), for the given methods (default all); returns the exported
    rows, with a `candidate` column, and the number of candidates left out in `.attrs["candidates_left_out"]`.
    GeNIe-Ada rows point at the candidate they chose; the other images of its sweep (`ada_candidates`) are exported
    only with `candidates` (and genie among the methods). A rerun overwrites nothing that is already there.

    Checked before anything is written: `out` is new, empty or an earlier export whose images are all this store's
    and all among the rows exported now (a dataset folder, another store's export, or an export of other methods is
    none of these), every row's target class is one folder name and every row's image is a complete file inside the
    store (`Store.image_file`). Each image is copied atomically: a full disk names the file and leaves no part of it."""
    from .store import Store, atomic_write

    if not Path(store_root).is_dir():
        raise UsageError(f"no store folder {store_root}: name the folder that `genie generate --store` wrote into")
    store = Store(store_root)
    manifest = store.manifest()
    if manifest.empty:
        raise UsageError(f"the store {store.root} holds no images: run `genie generate` into it first")
    keys = set(manifest.key)
    candidate = ada_candidates(manifest, method_settings(store, manifest))
    if methods:
        unknown = sorted(set(methods) - set(manifest.method))
        if unknown:
            raise UsageError(f"no {unknown} images in {store.root}; it holds {sorted(manifest.method.unique())}")
        chosen = manifest.method.isin(methods)
    else:
        chosen = pd.Series(True, index=manifest.index)
    if candidates and not (chosen & candidate).any():
        among = f" among its {' and '.join(methods)} images" if candidate.any() else ""
        raise UsageError(f"--candidates: {store.root} holds no GeNIe-Ada candidates (genie images of its sweep)"
                         f"{among}: leave --candidates out" + (", or add genie to --method" if among else ""))
    if not candidates and not (chosen & ~candidate).any():
        ratios = ", ".join(f"{r:g}" for r in sorted(set(manifest.noise_ratio[chosen & candidate])))
        raise UsageError(f"the {' and '.join(methods or ['genie'])} images of {store.root} are all GeNIe-Ada's "
                         f"candidates (r = {ratios}), none of them GeNIe's own image or GeNIe-Ada's choice: add "
                         "--candidates to export them, or finish the GeNIe-Ada run (genie generate --method "
                         "genie_ada) and export its choices")
    left_out = int((chosen & candidate).sum()) if not candidates else 0
    manifest = manifest[chosen & (candidates | ~candidate)].assign(candidate=candidate)
    manifest.attrs["candidates_left_out"] = left_out
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / EXPORT_MARK).is_file())):
        raise UsageError(f"{out} is not empty and was not written by `genie export`: export into a new or empty "
                         "folder (a dataset folder would take the images in as real ones)")
    root = store.root.resolve()
    if (out / EXPORT_MARK).is_file():  # an earlier export: of this store (moved or copied alike), by its images' keys
        present = sorted(out.glob("*/*.png"))
        foreign = [p for p in present if p.stem not in keys]
        if foreign:
            raise UsageError(f"{out} holds images of another store (e.g. {foreign[0]}, not in {store.root}): export "
                             "into a new or empty folder, so that the manifest.csv of each export lists every image "
                             "in it")
        unlisted = [p for p in present if p.stem not in set(manifest.key)]
        if unlisted:
            raise UsageError(f"{out} holds {len(unlisted)} images of an earlier export of {store.root} that this one "
                             f"would not list (e.g. {unlisted[0]}: other --method or --candidates than then): export "
                             "into a new or empty folder, or with the earlier export's options, so that its "
                             "manifest.csv lists every image in it")
    files = {}
    for row in manifest.itertuples():
        label = row.target_class
        if not isinstance(label, str) or label in ("", ".", "..") or "/" in label or "\\" in label \
                or Path(label).name != label:
            raise UsageError(f"row {row.key} of {store.root} has target class {label!r}, which is not a folder name: "
                             "the store is damaged; delete that row and generate again")
        files[row.key] = store.image_file(row.key)  # inside the store, a complete PNG, else StoreDamageError
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_MARK).write_text(json.dumps({"store": str(root)}) + "\n")
    for row in manifest.itertuples():
        target = out / row.target_class / f"{row.key}.png"
        if not target.exists():
            atomic_write(target, _copy_of(files[row.key]))
    atomic_write(out / "manifest.csv", lambda f: manifest.to_csv(f, index=False))
    return manifest


def _copy_of(source: Path):
    """A writer (for `atomic_write`) that copies `source`'s bytes."""
    def write(f):
        with open(source, "rb") as original:
            shutil.copyfileobj(original, f)
    return write


def export_command(args) -> int:
    rows = export(args.store, args.out, args.method, args.candidates)
    kinds = rows.groupby(rows.method.where(~rows.candidate, "genie_ada candidate"), sort=True).size()
    left_out = rows.attrs["candidates_left_out"]
    print(f"{len(rows)} images in {rows.target_class.nunique()} class folders under {args.out}: "
          + ", ".join(f"{n} {kind}" for kind, n in kinds.items())
          + (f"; {left_out} GeNIe-Ada candidates left out (--candidates exports them)" if left_out else ""))
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
