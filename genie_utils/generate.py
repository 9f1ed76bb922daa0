"""GeNIe and its baselines on any Stable-Diffusion-style diffusers pipeline.

GeNIe encodes a source image with the VAE, noises the latent part of the way (noise ratio r), and denoises
it conditioned on a *target* class's prompt; the output is labelled with the target class (a hard
negative for the source class). The baselines use the same code: Img2Img^L/Img2Img^H prompt with the
source's own class at r = 0.3/0.7, Txt2Img starts from pure noise (r = 1).

The loop is written out on public diffusers parts (`encode_prompt`, the VAE, the UNet, the scheduler's
`set_timesteps`/`add_noise`/`step`) rather than calling `StableDiffusionImg2ImgPipeline.__call__`, to
pin the official recipe's choices and to reuse work across noise ratios:
  * the source latent is the VAE posterior **mode** times the scaling factor (as the official code;
    img2img would sample it), so a source encodes once, independent of the seed;
  * r keeps the last int(steps * r) steps, as diffusers img2img (r = 0.58 with 50 steps: 28 steps);
  * the latent is noised at the **first timestep that is then denoised** (diffusers img2img semantics:
    799 for r = 0.8 with 50 steps; the official code noises at floor(1000 r) = 800, one step off the
    solver's own schedule);
  * r = 1.0 starts from pure noise, exactly text-to-image (img2img at strength 1 would keep
    sqrt(alpha_bar_999) = 0.07 of the source);
  * the timestep spacing is pinned to "linspace" (SD v1.5's DPM-Solver++ default), whatever the model
    folder's scheduler config says.
The recipe, and each place it departs from the paper and the official code, is specified in docs/method.md.
This module holds the generator and the direct API (`genie`, `img2img`, `txt2img`); the recipe's settings are in
`recipe`, loading a model in `pipeline`, and running jobs into the store in `jobs`.
"""
from __future__ import annotations

import hashlib
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler
from PIL import Image

from . import speed as speed_settings
from .images import file_sha256, load_image, to_rgb
from .jobs import Job, generate_batch, job_seed
from .pipeline import default_device, load_pipeline
from .profiles import resolve
from .recipe import GENIE_NOISE_RATIO, SCHEDULER_SETTINGS, Recipe, kept_steps, profile_recipe
from .run_files import RunFiles
from .validation import check_batch_size, check_class, check_noise_ratio


@dataclass
class GenerationCounts:
    """Work done, for cost accounting: UNet evaluations (one per denoising step and image, guidance
    branches included), VAE encodes and decodes (per image)."""
    unet_steps: int = 0
    vae_encodes: int = 0
    vae_decodes: int = 0


class GenieGenerator:
    """Runs GeNIe's img2img loop on a pipeline's parts. Batched; every image has its own noise.

    `batch_size` is the default number of images per UNet call for `run_jobs` and GeNIe-Ada (the profile's
    `[generation] batch_size`); images do not depend on it beyond float rounding."""

    def __init__(self, pipe, recipe: Recipe = Recipe(), model_info: dict | None = None, batch_size: int = 16,
                 speed: str | None = None):
        self.pipe = pipe
        self.recipe = recipe
        self.model_info = model_info or {"model": "", "model_revision": "", "model_fingerprint": ""}
        self.batch_size = check_batch_size(batch_size)
        self.speed = speed or speed_settings.plain_setting(self.dtype)  # the speed setting, for the manifest
        self.counts = GenerationCounts()
        self._prompt_cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_pretrained(cls, model, recipe: Recipe = Recipe(), device=None, dtype=None, batch_size: int = 16,
                        speed: str | None = None, benchmarks=None) -> "GenieGenerator":
        """Load `model` (folder or hub id) on `device` (default: a GPU if there is one) with a speed setting
        (`speed.SETTINGS`): `speed` if given; else the plain path in `dtype` if given; else this device's default
        (`speed.device_default`: the one `benchmarks/throughput.py` recorded in the folder `benchmarks`, or the
        built-in plain float32 on CPU, float16 on GPU)."""
        device = torch.device(device) if device else default_device()
        if speed is None:
            speed = (speed_settings.plain_setting(dtype) if dtype is not None else
                     speed_settings.device_default(device, benchmarks, Path(str(model)).name)[0])
        elif dtype is not None and dtype != speed_settings.dtype_of(speed):
            raise ValueError(f"speed setting {speed} runs {speed_settings.dtype_of(speed)}, not the dtype {dtype} "
                             "given: pass one of them")
        speed_settings.check_setting(speed, device)  # before minutes of loading
        pipe, info = load_pipeline(model, device, speed_settings.dtype_of(speed))
        return cls(speed_settings.apply(pipe, speed, device), recipe, info, batch_size, speed)

    @classmethod
    def from_profile(cls, profile: dict, device=None, dtype=None, speed: str | None = None) -> "GenieGenerator":
        """The profile's model (a folder relative to the project root, or a hub id) and recipe; the device's
        default speed setting from the benchmark records under the profile's results (see `from_pretrained`)."""
        settings = profile["generation"]
        model = settings["model"]
        if resolve(profile, model).exists():  # a folder under the project root, not a hub id
            model = resolve(profile, model)
        return cls.from_pretrained(model, profile_recipe(profile), device, dtype, settings["batch_size"], speed,
                                   RunFiles.of(profile).benchmarks.folder)

    # -- parts ------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    @property
    def size(self) -> tuple[int, int]:
        native = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return self.recipe.height or native, self.recipe.width or native

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        height, width = self.size
        factor = self.pipe.vae_scale_factor
        return self.pipe.unet.config.in_channels, height // factor, width // factor

    def scheduler(self):
        """A fresh DPM-Solver++ (order 2, linspace spacing) scheduler on the pipeline's noise schedule."""
        return DPMSolverMultistepScheduler.from_config(self.pipe.scheduler.config, **SCHEDULER_SETTINGS)

    def timesteps(self, noise_ratio: float) -> torch.Tensor:
        """The timesteps denoised at noise ratio r: the last `kept_steps(steps, r)` = int(steps * r).

        With SD v1.5's schedule and 50 steps: r = 0.8 -> 40 steps from 799, r = 1.0 -> 50 from 999.
        """
        return self._schedule(noise_ratio)[1]

    def _schedule(self, noise_ratio: float):
        steps = self.recipe.num_inference_steps
        kept = kept_steps(steps, noise_ratio)
        if kept == 0:
            raise ValueError(f"r = {noise_ratio} with {steps} steps runs no denoising step (int({steps} * r) = 0): "
                             f"the source would come back unchanged. Use r >= {1 / steps:g}.")
        scheduler = self.scheduler()
        scheduler.set_timesteps(steps, device=self.device)
        start = (steps - kept) * scheduler.order
        scheduler.set_begin_index(start)
        return scheduler, scheduler.timesteps[start:]

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize the shorter side, centre-crop to the generator's size, scale to [-1, 1]: (B, 3, H, W).

        Warns about sources much smaller than the generator's input (blurry outputs) or so elongated that
        the centre crop drops most of them."""
        height, width = self.size
        for image in images:
            short, long = sorted(image.size)
            if short < min(height, width) / 4:
                warnings.warn(f"a {image.size[0]}x{image.size[1]} source is upscaled more than 4x to "
                              f"{width}x{height}: expect blurry outputs", stacklevel=3)
            if long > 2.5 * short:
                warnings.warn(f"a {image.size[0]}x{image.size[1]} source has an aspect ratio over 2.5: the centre "
                              f"crop keeps {short / long:.0%} of it", stacklevel=3)
        return self.pipe.image_processor.preprocess(list(images), height=height, width=width, resize_mode="crop")

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Source latents: VAE posterior mode times the scaling factor, (B, C, h, w) float32."""
        pixels = self.preprocess(images).to(self.device, self.dtype)
        latents = self.pipe.vae.encode(pixels).latent_dist.mode() * self.pipe.vae.config.scaling_factor
        self.counts.vae_encodes += len(images)
        return latents.float()

    @torch.inference_mode()
    def prompt_embeddings(self, display_names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) text embeddings for `a photo of a {name}.`, cached by prompt text
        (with the negative prompt), so a changed recipe never reuses another prompt's embedding."""
        keys = [(self.recipe.prompt(n), self.recipe.negative_prompt) for n in display_names]
        missing = [k for k in dict.fromkeys(keys) if k not in self._prompt_cache]
        if missing:
            cond, uncond = self.pipe.encode_prompt([p for p, _ in missing], self.device, 1, True,
                                                   negative_prompt=[n for _, n in missing])
            for i, key in enumerate(missing):
                self._prompt_cache[key] = (cond[i], uncond[i])
        cond = torch.stack([self._prompt_cache[k][0] for k in keys])
        uncond = torch.stack([self._prompt_cache[k][1] for k in keys])
        return cond, uncond

    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """One standard-normal latent per seed, drawn on the CPU in float32 (same on every device)."""
        shape = self.latent_shape
        return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s)))
                            for s in seeds])

    def noised(self, source_latents: torch.Tensor | None, noise: torch.Tensor, noise_ratio: float):
        """GeNIe's first half: the source latents noised to ratio r, at the first timestep that is then
        denoised (pure noise at r = 1). Returns (scheduler, timesteps to run, noisy latents)."""
        scheduler, timesteps = self._schedule(noise_ratio)
        noise = noise.to(self.device, torch.float32)
        if noise_ratio >= 1.0:
            return scheduler, timesteps, noise * scheduler.init_noise_sigma
        if source_latents is None:
            raise ValueError(f"source images are needed at r = {noise_ratio} (only r = 1 ignores them)")
        noisy = scheduler.add_noise(source_latents.to(self.device, torch.float32), noise, timesteps[:1].repeat(len(noise)))
        return scheduler, timesteps, noisy

    @torch.inference_mode()
    def denoise(self, source_latents: torch.Tensor | None, noise: torch.Tensor, cond: torch.Tensor,
                uncond: torch.Tensor, noise_ratio: float) -> torch.Tensor:
        """Noise the source latents to r, then run the remaining DPM-Solver++ steps with guidance.

        `source_latents` may be None only for r = 1 (pure noise). Returns latents (B, C, h, w) float32.
        """
        scheduler, timesteps, latents = self.noised(source_latents, noise, noise_ratio)
        both = torch.cat([uncond, cond])
        for t in timesteps:
            guided = self.recipe.guides_at(t)
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t).to(self.dtype)
            prediction = self.pipe.unet(model_input, t, encoder_hidden_states=both if guided else cond).sample.float()
            if guided:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + self.recipe.guidance_scale * (conditional - unconditional)
            latents = scheduler.step(prediction, t, latents).prev_sample
            self.counts.unet_steps += len(latents)
        return latents

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, output_type: str = "pil"):
        """Latents -> images: PIL list (`pil`) or a float tensor in [0, 1] (`pt`)."""
        images = self.pipe.vae.decode(latents.to(self.dtype) / self.pipe.vae.config.scaling_factor).sample
        self.counts.vae_decodes += len(latents)
        return self.pipe.image_processor.postprocess(images.float(), output_type=output_type)

    def generate(self, sources: Sequence[Image.Image] | None, display_names: Sequence[str], noise_ratio: float,
                 seeds: Sequence[int], output_type: str = "pil"):
        """One batch: source images (None for r = 1), one prompt class and one seed per image."""
        noise_ratio = check_noise_ratio(noise_ratio)
        if not len(seeds):
            raise ValueError("nothing to generate: the batch is empty (no sources, classes or seeds)")
        if len(display_names) != len(seeds) or (sources is not None and len(sources) != len(seeds)):
            raise ValueError(f"need one source, class and seed per image; got {len(sources or [])} sources, "
                             f"{len(display_names)} classes, {len(seeds)} seeds")
        latents = self.encode(sources) if noise_ratio < 1.0 else None
        cond, uncond = self.prompt_embeddings(display_names)
        return self.decode(self.denoise(latents, self.noise(seeds), cond, uncond, noise_ratio), output_type)


# --------------------------------------------------------------------------------------------------
# The paper's operations on images: the same jobs, returned instead of stored


def _as_images(sources) -> list[Image.Image]:
    if isinstance(sources, (str, os.PathLike, Image.Image)):
        sources = [sources]
    images = [to_rgb(s) if isinstance(s, Image.Image) else load_image(s) for s in sources]
    if not images:
        raise ValueError("no source images given: pass a list of image paths or PIL images")
    return images


def _source_ids(sources, images, source_ids):
    if source_ids is not None:
        if len(source_ids) != len(images):
            raise ValueError(f"got {len(source_ids)} source ids for {len(images)} source images")
        return [str(i) for i in source_ids]
    # without ids, content identifies an image: the seed then depends neither on position nor on the path
    if isinstance(sources, (str, os.PathLike, Image.Image)):
        sources = [sources]
    return [hashlib.sha256(i.tobytes()).hexdigest()[:16] if isinstance(s, Image.Image) else file_sha256(s)[:16]
            for s, i in zip(sources, images)]


def _direct(generator: GenieGenerator, method: str, images, ids, source_class: str, target_class: str,
            noise_ratio: float, class_names, variant: int, output_type: str):
    """Jobs built and seeded exactly as `run_jobs` would, generated in batches, returned in order."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type {output_type!r} is not one of {list(OUTPUT_TYPES)}: 'pil' gives PIL images, "
                         "'np' one array (images, height, width, 3) in [0, 1], 'pt' one tensor (images, 3, height, width)")
    names = {target_class: check_class(target_class, class_names)}
    jobs = [Job(method, i, "", source_class, target_class, noise_ratio, variant) for i in ids]
    specs = [(None, job, {"seed": job_seed(generator.recipe, job)}) for job in jobs]
    size = generator.batch_size
    out = [generate_batch(generator, specs[i:i + size], names, images and images[i:i + size], output_type)
           for i in range(0, len(specs), size)]
    return torch.cat(out) if output_type == "pt" else np.concatenate(out) if output_type == "np" else sum(out, [])


OUTPUT_TYPES = ("pil", "np", "pt")  # what `genie`, `img2img` and `txt2img` return


def genie(generator: GenieGenerator, sources, target_class: str, noise_ratio: float = GENIE_NOISE_RATIO,
          class_names: dict[str, str] | None = None, source_ids: Sequence[str] | None = None,
          output_type: str = "pil"):
    """GeNIe hard negatives: each source image denoised from r towards `target_class`'s prompt.

    `sources`: PIL images or image paths. `class_names`: class -> display name (checks the class).
    `source_ids`: the ids the store uses (dataset `image_id`s) give the very images `run_jobs` stores;
    without them, content hashes serve as ids. Returns one image per source, labelled `target_class`.
    """
    images = _as_images(sources)
    return _direct(generator, "genie", images, _source_ids(sources, images, source_ids), "", target_class,
                   noise_ratio, class_names, 0, output_type)


def img2img(generator: GenieGenerator, sources, source_class: str, noise_ratio: float = 0.3,
            class_names: dict[str, str] | None = None, source_ids: Sequence[str] | None = None,
            variant: int = 0, output_type: str = "pil"):
    """The Img2Img baseline: sources denoised towards their own class (r = 0.3: ^L, 0.7: ^H)."""
    images = _as_images(sources)
    method = "img2img_low" if check_noise_ratio(noise_ratio) < 0.5 else "img2img_high"  # the seed ignores it
    return _direct(generator, method, images, _source_ids(sources, images, source_ids), source_class,
                   source_class, noise_ratio, class_names, variant, output_type)


def txt2img(generator: GenieGenerator, target_class: str, count: int, class_names: dict[str, str] | None = None,
            source_ids: Sequence[str] | None = None, variant: int = 0, output_type: str = "pil"):
    """The Txt2Img baseline: `count` images of a class from pure noise (r = 1).

    In an episode a Txt2Img image is seeded by the support image it stands in for (`source_ids`); without
    ids the images are numbered `txt2img-0`, `txt2img-1`, ..."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"count must be a positive integer (the number of images to make), got {count!r}")
    ids = list(source_ids) if source_ids is not None else [f"txt2img-{i}" for i in range(count)]
    if source_ids is not None and len(ids) != count:
        raise ValueError(f"got {len(ids)} source ids for {count} images")
    return _direct(generator, "txt2img", None, ids, target_class, target_class, 1.0, class_names, variant,
                   output_type)


def noised_images(generator: GenieGenerator, image: Image.Image, seed: int, noise_ratios: Sequence[float]):
    """What the UNet starts from at each r, decoded to pixels: the source fading into noise."""
    latents = generator.encode([image])
    noise = generator.noise([seed])
    return [generator.decode(generator.noised(latents, noise, r)[2])[0] for r in noise_ratios]
