"""GeNIe's throughput: images per second against batch size, on this machine's default device.

    python benchmarks/throughput.py --batch-sizes 8 16 32 --images 128            # the 2-core CPU
    python benchmarks/throughput.py --batch-sizes 16 64 256 1024 --images 4096    # a GPU

The profile's model and recipe (embedded: the companion, 20 DPM-Solver++ steps, guidance 7.5) at r = 0.8: VAE
encode, 16 UNet calls with classifier-free guidance, VAE decode, to PIL images, as `run_jobs` makes them, without
the store's disk writes. Sources are plain images of random colours (the cost does not depend on their content),
prompts cycle through a few class names. One warm-up batch, then `--images` images per batch size. Appends to
results/<profile>/benchmarks/throughput.csv (device, dtype, batch size, images/s, torch version).
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from PIL import Image

from genie_utils import generate, profiles

NAMES = ["heart", "animal mammal", "food fruit", "transport ground", "face smiling", "sky & weather"]


def images_per_second(generator: generate.GenieGenerator, batch_size: int, images: int, noise_ratio: float) -> float:
    colours = torch.randint(0, 256, (batch_size, 3), generator=torch.Generator().manual_seed(batch_size))
    height, width = generator.size
    sources = [Image.new("RGB", (width, height), tuple(int(c) for c in colour)) for colour in colours]
    names = [NAMES[i % len(NAMES)] for i in range(batch_size)]
    generator.generate(sources, names, noise_ratio, list(range(batch_size)))  # warm-up
    batches = max(1, images // batch_size)
    if generator.device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for b in range(batches):
        generator.generate(sources, names, noise_ratio, [b * batch_size + i for i in range(batch_size)])
    if generator.device.type == "cuda":
        torch.cuda.synchronize()
    return batches * batch_size / (time.perf_counter() - began)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", help="a profile name or .toml file")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--images", type=int, default=128, help="images timed per batch size")
    parser.add_argument("--noise-ratio", type=float, default=0.8)
    parser.add_argument("--out", help="CSV to append to (default: results/<profile>/benchmarks/throughput.csv)")
    args = parser.parse_args(argv)

    settings = profiles.load_profile(args.profile)
    generator = generate.GenieGenerator.from_profile(settings)
    device = torch.cuda.get_device_name() if generator.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for batch_size in args.batch_sizes:
        rate = images_per_second(generator, batch_size, args.images, args.noise_ratio)
        rows.append({"device": device, "dtype": str(generator.dtype).removeprefix("torch."), "batch_size": batch_size,
                     "noise_ratio": args.noise_ratio, "steps": generator.recipe.num_inference_steps,
                     "images_per_second": rate, "torch": torch.__version__})
        print(rows[-1], flush=True)
    out = profiles.resolve(settings, args.out) if args.out else (
        profiles.resolve(settings, settings["paths"]["results"]) / "benchmarks" / "throughput.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, mode="a", header=not out.exists(), index=False)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
