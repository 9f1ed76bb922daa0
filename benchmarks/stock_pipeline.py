"""The companion as a new user meets it: diffusers' own `StableDiffusionImg2ImgPipeline.from_pretrained(folder)`
(no dtype, the folder's DPM-Solver++ scheduler), GeNIe's recipe by hand, judged by the oracle over all classes.

    python benchmarks/stock_pipeline.py --steps 50 --ratios 0.3 0.8

One pair per class as the target (sources from the evaluation pool, of other classes), guidance 7.5, prompt
`a photo of a {class}.`, one seeded generator per image; `strength` = r, so diffusers keeps int(steps * r) steps.
No project code generates: only the pairs and the oracle come from genie_utils. Writes
results/<profile>/benchmarks/stock_pipeline.csv.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image

from genie_utils import data, oracle, pairing, profiles, splits
from genie_utils.images import to_rgb
from genie_utils.run_files import RunFiles


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="embedded", type=profiles.profile_argument,
                        help="a profile name or .toml file")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.8])
    parser.add_argument("--batch-size", type=int, default=14)
    args = parser.parse_args(argv)

    settings = profiles.load_profile(args.profile)
    dataset = data.load_dataset(settings, progress=False)
    evaluation = splits.pool_images(settings, dataset, splits.EVALUATION)
    pairs = pairing.pairs_per_target(evaluation, sorted(dataset.class_name.unique()), 1, seed=5)
    names = data.class_display_names(dataset)
    folder = profiles.resolve(settings, settings["generation"]["model"])
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    judge = oracle.load_oracle(profiles.resolve(settings, settings["oracle"]["path"]))
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    target = np.array([judge.index(c) for c in pairs.target_class])
    source = np.array([judge.index(c) for c in pairs.class_name])
    rows = []
    for ratio in args.ratios:
        images, began = [], time.perf_counter()
        for start in range(0, len(pairs), args.batch_size):
            chunk = pairs.iloc[start:start + args.batch_size]
            sources = [to_rgb(Image.open(path)).resize((size, size)) for path in chunk.path]
            prompts = [f"a photo of a {names[c]}." for c in chunk.target_class]
            seeds = [torch.Generator().manual_seed(1000 + start + j) for j in range(len(chunk))]
            images += pipe(prompts, image=sources, strength=ratio, num_inference_steps=args.steps,
                           guidance_scale=7.5, generator=seeds).images
        seconds = (time.perf_counter() - began) / len(images)
        p = judge.probabilities(images)
        index = np.arange(len(p))
        rows.append({"noise_ratio": ratio, "steps": args.steps, "images": len(p), "p_target": p[index, target].mean(),
                     "p_source": p[index, source].mean(), "oracle_target": (p.argmax(1) == target).mean(),
                     "seconds_per_image": seconds, "dtype": str(pipe.unet.dtype).removeprefix("torch.")})
        print(rows[-1], flush=True)
    out = RunFiles.of(settings).benchmarks.stock_pipeline
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
