"""GeNIe's throughput: images per second by setting and batch size, each setting checked against the plain path.

    python benchmarks/throughput.py                                    # the companion, CPU settings, batch 8-32
    python benchmarks/throughput.py --model sd15-shaped --batch-sizes 16 64 --images 256     # a GPU

The profile's recipe (embedded: 20 DPM-Solver++ steps, guidance 7.5) at r = 0.8: VAE encode, the UNet with
classifier-free guidance, VAE decode, as `run_jobs` makes images, without the store's disk writes. `--model`
is the profile's model (the companion), a diffusers folder, or `sd15-shaped`: SD v1.5's configuration (UNet
860M, VAE, 12-layer CLIP text encoder, 512 px) with random weights, for GPU speed (it does not depend on the
weights). Sources are plain images of random colours (the cost does not depend on their content).

Settings (`--settings`; the default is every one this device can run):
  plain              float32, diffusers' default attention (PyTorch SDPA), contiguous tensors: the reference
  classic-attention  float32, diffusers' AttnProcessor (attention as matmul + softmax, no SDPA)
  channels-last      float32, UNet and VAE in channels_last memory format
  compile            float32, torch.compile of the UNet
  bf16               bfloat16 weights and activations
  fp16               float16 (GPU only)
  fp16-channels-last, fp16-compile, fp16-cuda-graphs (torch.compile mode "reduce-overhead")   (GPU only)

Settings take turns, `--repeats` timings each per batch size; the median is kept, with the range. Every setting
first makes the same batch (same sources, prompts and seeds) as plain: the largest absolute pixel
difference (pixels in [0, 1]) is reported, and, for the companion, how often the oracle names the same class for
both images. Within tolerance: at most 1/255 (one grey level) for float32 settings, 0.05 for 16-bit ones. Prints one table; writes
`throughput-<device>-<time>.json` (settings, rows, the fastest setting within tolerance, and the default: that
setting only if even its slowest timing beats plain's fastest, else plain) and appends the rows to
`throughput.csv` under results/<profile>/benchmarks/ (what `genie generate --dry-run` estimates from).
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

from genie_utils import companion, generate, profiles
from genie_utils.store import atomic_write

NAMES = ["heart", "animal mammal", "food fruit", "transport ground", "face smiling", "sky & weather"]
SD15_SHAPED = companion.CompanionSize(
    unet_channels=(320, 640, 1280, 1280), unet_layers_per_block=2, attention_levels=(0, 1, 2), attention_head_dim=8,
    vae_channels=(128, 256, 512, 512), vae_layers_per_block=2, text_width=768, text_layers=12, text_heads=12,
    image_size=512)
SETTINGS = {  # name: (dtype, attention, channels_last, compile mode)
    "plain": ("float32", "sdpa", False, None),
    "classic-attention": ("float32", "classic", False, None),
    "channels-last": ("float32", "sdpa", True, None),
    "compile": ("float32", "sdpa", False, "default"),
    "bf16": ("bfloat16", "sdpa", False, None),
    "fp16": ("float16", "sdpa", False, None),
    "fp16-channels-last": ("float16", "sdpa", True, None),
    "fp16-compile": ("float16", "sdpa", False, "default"),
    "fp16-cuda-graphs": ("float16", "sdpa", False, "reduce-overhead"),
}
# Largest |pixel difference| to plain: float32 settings may move a saved 8-bit pixel by at most one grey level
# (what the plain path itself does across thread counts), 16-bit ones by about 13.
TOLERANCE = {"float32": 1 / 255, "bfloat16": 0.05, "float16": 0.05}


def default_settings(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return list(SETTINGS)
    return ["plain", "classic-attention", "channels-last", "bf16"]  # compile: add it by name (minutes on a CPU)


def apply_setting(pipe, name: str, device: torch.device):
    """A copy of `pipe` set up as setting `name` on `device`."""
    dtype, attention, channels_last, compile_mode = SETTINGS[name]
    if dtype == "float16" and device.type != "cuda":
        raise ValueError(f"setting {name} needs a GPU")
    pipe = copy.deepcopy(pipe).to(device, getattr(torch, dtype))
    if attention == "classic":
        from diffusers.models.attention_processor import AttnProcessor

        pipe.unet.set_attn_processor(AttnProcessor())
        pipe.vae.set_attn_processor(AttnProcessor())
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if compile_mode:
        pipe.unet = torch.compile(pipe.unet, mode=compile_mode, fullgraph=False)
    return pipe


def batch_inputs(generator: generate.GenieGenerator, batch_size: int):
    colours = torch.randint(0, 256, (batch_size, 3), generator=torch.Generator().manual_seed(batch_size))
    height, width = generator.size
    sources = [Image.new("RGB", (width, height), tuple(int(c) for c in colour)) for colour in colours]
    return sources, [NAMES[i % len(NAMES)] for i in range(batch_size)]


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(generator: generate.GenieGenerator, batch_size: int, images: int, noise_ratio: float,
                      warm_up: bool = True) -> float:
    sources, names = batch_inputs(generator, batch_size)
    if warm_up:  # caches, kernels and torch.compile's compilation for this batch shape
        generator.generate(sources, names, noise_ratio, list(range(batch_size)))
    batches = max(1, images // batch_size)
    synchronize(generator.device)
    began = time.perf_counter()
    for b in range(batches):
        generator.generate(sources, names, noise_ratio, [b * batch_size + i for i in range(batch_size)])
    synchronize(generator.device)
    return batches * batch_size / (time.perf_counter() - began)


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
    return generate.load_pipeline(model, device="cpu", dtype=torch.float32)


def oracle_agreement(settings: dict, plain: torch.Tensor, fast: torch.Tensor) -> float | None:
    """Share of images for which the profile's oracle names the same class in both (companion-sized only)."""
    from genie_utils import oracle

    path = profiles.resolve(settings, settings["oracle"]["path"])
    if not path.is_file() or plain.shape[-1] != 64:
        return None
    judge = oracle.load_oracle(path)
    same = judge.probabilities(plain * 2 - 1).argmax(1) == judge.probabilities(fast * 2 - 1).argmax(1)
    return float(same.mean())


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def run(settings: dict, model: str, names: list[str], batch_sizes: list[int], images: int, noise_ratio: float,
        device: torch.device, repeats: int = 3) -> dict:
    """Every setting checked against plain, then timed `repeats` times per batch size, the settings taking turns
    (a machine's speed drifts over minutes: interleaving keeps the comparison fair); the median is reported."""
    base, info = load_base(model, settings)
    recipe = generate.profile_recipe(settings)
    check = min(batch_sizes)
    generators, checks, plain = {}, {}, None
    for name in names:
        generators[name] = generate.GenieGenerator(apply_setting(base, name, device), recipe, info)
        images_out = reference_images(generators[name], check, noise_ratio)
        plain = images_out if plain is None else plain
        checks[name] = (float((images_out - plain).abs().max()), oracle_agreement(settings, plain, images_out))
    rates = {(name, b): [] for name in names for b in batch_sizes}
    for batch_size in batch_sizes:
        for repeat in range(repeats):
            for name in names:
                rates[name, batch_size].append(images_per_second(generators[name], batch_size, images, noise_ratio,
                                                                 warm_up=repeat == 0))
    rows = []
    for (name, batch_size), measured in rates.items():
        difference, agreement = checks[name]
        dtype = SETTINGS[name][0]
        rows.append({"device": device_name(device), "model": info["model"] and Path(str(info["model"])).name,
                     "setting": name, "dtype": dtype, "batch_size": batch_size, "noise_ratio": noise_ratio,
                     "steps": recipe.num_inference_steps, "images_per_second": float(np.median(measured)),
                     "slowest": min(measured), "fastest": max(measured), "repeats": repeats,
                     "max_abs_difference": difference, "oracle_agreement": agreement,
                     "within_tolerance": difference <= TOLERANCE[dtype], "torch": torch.__version__,
                     "date": time.strftime("%Y-%m-%d")})
        print(f"{name:>20} batch {batch_size:>5}: {rows[-1]['images_per_second']:8.2f} images/s "
              f"({min(measured):.2f}-{max(measured):.2f}), max |diff| {difference:.2e}"
              + (f", oracle agrees {agreement:.0%}" if agreement is not None else ""), flush=True)
    table = pd.DataFrame(rows)
    return {"device": device_name(device), "machine": platform.machine(), "model": model, "rows": rows,
            "fastest_within_tolerance": summary(table[table.within_tolerance].sort_values("images_per_second").iloc[-1]),
            "default": summary(default_setting(table)), "tolerance": TOLERANCE}


def summary(row: pd.Series) -> dict:
    return {"setting": row.setting, "batch_size": int(row.batch_size), "images_per_second": float(row.images_per_second)}


def default_setting(table: pd.DataFrame) -> pd.Series:
    """The setting to use on this device: the fastest within tolerance whose slowest timing beats plain's fastest
    at the same batch size (a gain larger than the machine's drift between timings); plain when none does."""
    plain = table[table.setting == "plain"].set_index("batch_size")
    faster = table[table.within_tolerance & (table.setting != "plain")]
    faster = faster[faster.slowest > faster.batch_size.map(plain.fastest)]
    pool = faster if len(faster) else table[table.setting == "plain"]
    return pool.sort_values("images_per_second").iloc[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", help="a profile name or .toml file (recipe, oracle, paths)")
    parser.add_argument("--model", default="profile", help="profile (its model), sd15-shaped, or a diffusers folder")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: all this device runs")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--images", type=int, default=64, help="images per timing (per setting, batch size, repeat)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per setting and batch size (median kept)")
    parser.add_argument("--noise-ratio", type=float, default=0.8)
    parser.add_argument("--device", help="cpu or cuda (default: a GPU if there is one)")
    parser.add_argument("--out", help="folder for throughput.csv and the JSON (default: results/<profile>/benchmarks)")
    args = parser.parse_args(argv)

    settings = profiles.load_profile(args.profile)
    device = torch.device(args.device) if args.device else generate.default_device()
    names = args.settings or default_settings(device)
    names = ["plain"] + [n for n in names if n != "plain"]
    record = run(settings, args.model, names, args.batch_sizes, args.images, args.noise_ratio, device, args.repeats)
    out = Path(args.out) if args.out else profiles.resolve(settings, settings["paths"]["results"]) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(record["rows"])
    csv = out / "throughput.csv"  # earlier runs' rows kept; columns they lack stay empty
    earlier = pd.read_csv(csv) if csv.is_file() else None
    atomic_write(csv, lambda f: f.write(pd.concat([earlier, table], ignore_index=True).to_csv(index=False).encode()))
    slug = re.sub(r"[^a-z0-9]+", "-", record["device"].lower()).strip("-")
    (out / f"throughput-{slug}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(table[["setting", "dtype", "batch_size", "images_per_second", "slowest", "fastest", "max_abs_difference",
                 "within_tolerance"]]
          .to_markdown(index=False, floatfmt=".3g"))
    print(f"fastest within tolerance: {record['fastest_within_tolerance']}; default on this device: "
          f"{record['default']}; {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
