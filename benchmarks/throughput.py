"""GeNIe's throughput: images per second by setting and batch size, each setting checked against the plain path.

    python benchmarks/throughput.py                                    # the companion, CPU settings, batch 8-32
    python benchmarks/throughput.py --ada --settings channels-last --batch-sizes 32     # with GeNIe-Ada's sweep
    python benchmarks/throughput.py --model sd15-shaped --batch-sizes 16 64 --images 256     # a GPU

The profile's recipe (embedded: 20 DPM-Solver++ steps, guidance 7.5) at r = 0.8: VAE encode, the UNet with
classifier-free guidance, VAE decode, as `run_jobs` makes images, without the store's disk writes. `--model`
is the profile's model (the companion), a diffusers folder, or `sd15-shaped`: SD v1.5's configuration (UNet
860M, VAE, 12-layer CLIP text encoder, 512 px) with random weights, for GPU speed (it does not depend on the
weights). Sources are plain images of random colours (the cost does not depend on their content).

With `--ada`, each setting and batch size also times GeNIe-Ada's sweep: the candidates of `batch` pairs at
r = 0.5 ... 0.9 (source encoded once, one noise draw per pair, a decode per candidate), i.e. kept images per
second, and its cost per kept image relative to GeNIe's (median of the per-timing ratios; in UNet steps, counted,
70 / 16 = 4.375 at 20 steps, 175 / 40 at 50). Choosing r* (the backbone's features) is not timed.

Settings (`--settings`, defined in genie_utils/speed.py; the default is every one this device can run):
  plain              float32, diffusers' default attention (PyTorch SDPA), contiguous tensors: the reference
  classic-attention  float32, diffusers' AttnProcessor (attention as matmul + softmax, no SDPA)
  channels-last      float32, UNet and VAE in channels_last memory format
  compile            float32, torch.compile of the UNet
  bf16               bfloat16 weights and activations
  fp16               float16 (GPU only)
  fused-qkv          float32, attention's query/key/value projections fused (diffusers' fuse_qkv_projections)
  fp16-channels-last, fp16-compile, fp16-cuda-graphs (torch.compile mode "reduce-overhead"), fp16-max-autotune
                     (channels_last + fused projections + torch.compile "max-autotune", fullgraph, inductor's
                     convolution and tiling searches as diffusers' inference guide; minutes to compile)   (GPU only)

Settings take turns, `--repeats` timings each per batch size; the median is kept, with the range. Every setting
first makes the same batch (same sources, prompts and seeds) as plain: the largest absolute pixel
difference (pixels in [0, 1]) is reported, and, for the companion, how often the oracle names the same class for
both images. Within tolerance: at most 1/255 (one grey level) for float32 settings, 0.05 for 16-bit ones. Prints one table; writes
`throughput-<device>-<time>.json` (settings, rows, the fastest setting within tolerance, and the default,
`speed.default_setting`: a setting that is not compiled and whose slowest timing beats the built-in default's
fastest at every batch size, else the built-in; none when the run left the built-in out) and appends the rows to
`throughput.csv` under results/<profile>/benchmarks/. Generation reads them back: the profile's notebooks and
`genie generate` run the newest recorded default of the model and device they run on (`speed.device_default`),
and `genie generate --dry-run` estimates its time from the CSV.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from genie_utils import ada, companion, generate, pipeline, profiles, speed
from genie_utils.recipe import GENIE_NOISE_RATIO, profile_recipe
from genie_utils.run_files import BenchmarkFiles, RunFiles
from genie_utils.store import atomic_write

NAMES = ["heart", "animal mammal", "food fruit", "transport ground", "face smiling", "sky & weather"]
SD15_SHAPED = companion.CompanionSize(
    unet_channels=(320, 640, 1280, 1280), unet_layers_per_block=2, attention_levels=(0, 1, 2), attention_head_dim=8,
    vae_channels=(128, 256, 512, 512), vae_layers_per_block=2, text_width=768, text_layers=12, text_heads=12,
    image_size=512)
def default_settings(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return list(speed.SETTINGS)
    return ["plain", "classic-attention", "channels-last", "fused-qkv", "bf16"]  # compile: by name (minutes on CPU)


def batch_inputs(generator: generate.GenieGenerator, batch_size: int):
    colours = torch.randint(0, 256, (batch_size, 3), generator=torch.Generator().manual_seed(batch_size))
    height, width = generator.size
    sources = [Image.new("RGB", (width, height), tuple(int(c) for c in colour)) for colour in colours]
    return sources, [NAMES[i % len(NAMES)] for i in range(batch_size)]


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(generator: generate.GenieGenerator, batch_size: int, images: int, noise_ratio: float,
                      warm_up: bool = True, method: str = "genie") -> tuple[float, float]:
    """(kept images per second, UNet steps per kept image): GeNIe at `noise_ratio`, or (`genie_ada`) GeNIe-Ada's
    sweep, which makes the candidates of `batch_size` pairs at every ratio of ada.ADA_RATIOS and keeps one per pair
    (the choice itself, a backbone's features of the candidates, is not timed). Both end in PIL images, as the
    store saves them."""
    sources, names = batch_inputs(generator, batch_size)

    def make(seeds):
        if method == "genie_ada":
            for _ in ada.sweep(generator, sources, names, seeds):
                pass
        else:
            generator.generate(sources, names, noise_ratio, seeds)

    if warm_up:  # caches, kernels and torch.compile's compilation for this batch shape
        make(list(range(batch_size)))
    batches = max(1, images // batch_size)
    steps_before = generator.counts.unet_steps
    synchronize(generator.device)
    began = time.perf_counter()
    for b in range(batches):
        make([b * batch_size + i for i in range(batch_size)])
    synchronize(generator.device)
    seconds = time.perf_counter() - began
    return batches * batch_size / seconds, (generator.counts.unet_steps - steps_before) / (batches * batch_size)


def reference_images(generator: generate.GenieGenerator, batch_size: int, noise_ratio: float) -> torch.Tensor:
    """One batch as float pixels in [0, 1] (N, 3, H, W), on fixed sources, prompts and seeds."""
    sources, names = batch_inputs(generator, batch_size)
    return generator.generate(sources, names, noise_ratio, list(range(batch_size)), output_type="pt").float().cpu()


def load_base(model: str, settings: dict):
    """The plain pipeline on the CPU in float32, and its model info."""
    if model == "sd15-shaped":
        return companion.build_pipeline(SD15_SHAPED, seed=0), {"model": "sd15-shaped (random weights)",
                                                               "model_revision": "", "model_fingerprint": ""}
    if model == "profile":
        generator = generate.GenieGenerator.from_profile(settings, device="cpu", dtype=torch.float32)
        return generator.pipe, generator.model_info
    return pipeline.load_pipeline(model, device="cpu", dtype=torch.float32)


def oracle_agreement(settings: dict, plain: torch.Tensor, fast: torch.Tensor) -> float | None:
    """Share of images for which the profile's oracle names the same class in both (companion-sized only)."""
    from genie_utils import oracle

    path = profiles.resolve(settings, settings["oracle"]["path"])
    if not path.is_file() or plain.shape[-1] != 64:
        return None
    judge = oracle.load_oracle(path)
    same = judge.probabilities(plain * 2 - 1).argmax(1) == judge.probabilities(fast * 2 - 1).argmax(1)
    return float(same.mean())


def run(settings: dict, model: str, names: list[str], batch_sizes: list[int], images: int, noise_ratio: float,
        device: torch.device, repeats: int = 3, with_ada: bool = False, time_plain: bool = True) -> dict:
    """Every setting checked against plain, then timed `repeats` times per batch size, the settings taking turns
    (a machine's speed drifts over minutes: interleaving keeps the comparison fair); the median is reported.
    `time_plain=False`: plain (names[0]) only makes the reference batch and gets no row."""
    base, info = load_base(model, settings)
    recipe = profile_recipe(settings)
    check = min(batch_sizes)
    generators, checks, plain = {}, {}, None
    for name in names:
        pipe = speed.apply(copy.deepcopy(base), name, device)
        generators[name] = generate.GenieGenerator(pipe, recipe, info, speed=name)
        images_out = reference_images(generators[name], check, noise_ratio)
        plain = images_out if plain is None else plain
        checks[name] = (float((images_out - plain).abs().max()), oracle_agreement(settings, plain, images_out))
    methods = ["genie", "genie_ada"] if with_ada else ["genie"]
    names = names if time_plain else names[1:]
    rates = {(name, b, m): [] for name in names for b in batch_sizes for m in methods}
    steps = {}  # UNet steps per kept image, by method (counted, the same for every setting)
    for batch_size in batch_sizes:
        for repeat in range(repeats):
            for name in names:
                for method in methods:
                    rate, steps[method] = images_per_second(generators[name], batch_size, images, noise_ratio,
                                                            warm_up=repeat == 0, method=method)
                    rates[name, batch_size, method].append(rate)
    rows = []
    for name in names:
        for batch_size in batch_sizes:
            measured = rates[name, batch_size, "genie"]
            difference, agreement = checks[name]
            dtype = speed.SETTINGS[name].dtype
            row = {"device": speed.device_name(device), "model": info["model"] and Path(str(info["model"])).name,
                   "setting": name, "dtype": dtype, "batch_size": batch_size, "noise_ratio": noise_ratio,
                   "steps": recipe.num_inference_steps, "unet_steps_per_image": steps["genie"],
                   "images_per_second": float(np.median(measured)),
                   "slowest": min(measured), "fastest": max(measured), "repeats": repeats,
                   "max_abs_difference": difference, "oracle_agreement": agreement,
                   "within_tolerance": difference <= speed.TOLERANCE[dtype], "torch": torch.__version__,
                   "date": time.strftime("%Y-%m-%d")}
            line = (f"{name:>20} batch {batch_size:>5}: {row['images_per_second']:8.2f} images/s "
                    f"({min(measured):.2f}-{max(measured):.2f}), max |diff| {difference:.2e}"
                    + (f", oracle agrees {agreement:.0%}" if agreement is not None else ""))
            if with_ada:  # the same setting and batch size, so the ratio is free of the machine's drift between them
                ada_rates = rates[name, batch_size, "genie_ada"]
                row["ada_images_per_second"] = float(np.median(ada_rates))
                row["ada_relative_cost"] = float(np.median(np.divide(measured, ada_rates)))
                row["ada_unet_steps_per_image"] = steps["genie_ada"]
                line += (f"; GeNIe-Ada {row['ada_images_per_second']:.2f} kept images/s, "
                         f"{row['ada_relative_cost']:.2f}x GeNIe's time per image")
            rows.append(row)
            print(line, flush=True)
    table = pd.DataFrame(rows)
    return {"device": speed.device_name(device), "machine": platform.machine(), "model": model, "rows": rows,
            "fastest_within_tolerance": summary(table[table.within_tolerance].sort_values("images_per_second").iloc[-1]),
            "default": speed.default_setting(table, speed.builtin_default(device)), "tolerance": speed.TOLERANCE}


def summary(row: pd.Series) -> dict:
    return {"setting": row.setting, "batch_size": int(row.batch_size), "images_per_second": float(row.images_per_second)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profiles.profile_argument,
                        help="a profile name or .toml file (recipe, oracle, paths)")
    parser.add_argument("--model", default="profile", help="profile (its model), sd15-shaped, or a diffusers folder")
    parser.add_argument("--settings", nargs="+", choices=list(speed.SETTINGS), help="default: all this device runs")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--images", type=int, default=64, help="images per timing (per setting, batch size, repeat)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per setting and batch size (median kept)")
    parser.add_argument("--noise-ratio", type=float, default=GENIE_NOISE_RATIO)
    parser.add_argument("--ada", action="store_true", help="also time GeNIe-Ada's sweep (5 ratios per kept image)")
    parser.add_argument("--device", help="cpu or cuda (default: a GPU if there is one)")
    parser.add_argument("--reference-only", action="store_true",
                        help="plain (float32) makes the reference batch of the tolerance check but is not timed: for "
                             "sd15-shaped on a GPU, where timing float32 at 512 px takes minutes")
    parser.add_argument("--out", help="folder for throughput.csv and the JSON (default: results/<profile>/benchmarks)")
    args = parser.parse_args(argv)

    settings = profiles.load_profile(args.profile)
    device = torch.device(args.device) if args.device else pipeline.default_device()
    names = args.settings or default_settings(device)
    names = ["plain"] + [n for n in names if n != "plain"]
    if args.reference_only and len(names) == 1:
        parser.error("--reference-only times no setting besides plain: name one with --settings")
    record = run(settings, args.model, names, args.batch_sizes, args.images, args.noise_ratio, device, args.repeats,
                 args.ada, time_plain=not args.reference_only)
    benchmark_files = BenchmarkFiles(Path(args.out)) if args.out else RunFiles.of(settings).benchmarks
    benchmark_files.folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(record["rows"])
    csv = benchmark_files.throughput  # earlier runs' rows kept; columns they lack stay empty
    earlier = pd.read_csv(csv) if csv.is_file() else None
    atomic_write(csv, lambda f: f.write(pd.concat([earlier, table], ignore_index=True).to_csv(index=False).encode()))
    slug = re.sub(r"[^a-z0-9]+", "-", record["device"].lower()).strip("-")
    benchmark_files.throughput_record(f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}").write_text(json.dumps(record, indent=1) + "\n")
    columns = ["setting", "dtype", "batch_size", "images_per_second", "slowest", "fastest", "max_abs_difference",
               "within_tolerance", "ada_images_per_second", "ada_relative_cost"]
    print(table[[c for c in columns if c in table]].to_markdown(index=False, floatfmt=".3g"))
    print(f"fastest within tolerance: {record['fastest_within_tolerance']}; default on this device: "
          f"{record['default'] or 'none (the run left out the built-in ' + speed.builtin_default(device) + ')'}; "
          f"{benchmark_files.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
