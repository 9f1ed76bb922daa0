"""GeNIe and its baselines on any Stable-Diffusion-style diffusers pipeline.

GeNIe encodes a source image with the VAE, noises the latent part of the way (noise ratio r), and denoises
it conditioned on a *target* class's prompt; the output is labelled with the target class (a hard
negative for the source class). The baselines use the same code: Img2Img^L/Img2Img^H prompt with the
source's own class at r = 0.3/0.7, Txt2Img starts from pure noise (r = 1).

The loop is written out on public diffusers parts (`encode_prompt`, the VAE, the UNet, the scheduler's
`set_timesteps`/`add_noise`/`step`) rather than calling `StableDiffusionImg2ImgPipeline.__call__`, to
pin two choices of GENIE_SPEC.md section 2 and to reuse work across noise ratios:
  * the source latent is the VAE posterior **mode** times the scaling factor (as the official code;
    img2img would sample it), so a source encodes once, independent of the seed;
  * the latent is noised at the **first timestep that is then denoised** (diffusers img2img semantics:
    799 for r = 0.8 with 50 steps; the official code noises at floor(1000 r) = 800, one step off the
    solver's own schedule);
  * r = 1.0 starts from pure noise, exactly text-to-image (img2img at strength 1 would keep
    sqrt(alpha_bar_999) = 0.07 of the source).
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
from PIL import Image

from .data import file_sha256, load_image
from .profiles import resolve
from .store import Store, spec_key

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------------------------------
# Methods and recipe


@dataclass(frozen=True)
class Method:
    """An augmentation method: its noise ratio and whose class the prompt names."""
    name: str
    noise_ratio: float
    prompt_class: str  # "target": another class (GeNIe); "own": the source's class (baselines)
    description: str


METHODS = {
    "genie": Method("genie", 0.8, "target", "GeNIe: source image of another class, target-class prompt"),
    "img2img_low": Method("img2img_low", 0.3, "own", "Img2Img^L: own-class prompt, r = 0.3"),
    "img2img_high": Method("img2img_high", 0.7, "own", "Img2Img^H: own-class prompt, r = 0.7"),
    # The official script runs its "txt2img" at r = 0.8 by mistake; GENIE_SPEC.md says 1.0.
    "txt2img": Method("txt2img", 1.0, "own", "Txt2Img: pure noise, own-class prompt, source ignored"),
}


@dataclass(frozen=True)
class Recipe:
    """Sampling settings; defaults are the official GeNIe recipe (GENIE_SPEC.md section 2)."""
    num_inference_steps: int = 50
    guidance_scale: float = 7.5          # classifier-free guidance; <= 1 turns guidance off
    prompt_template: str = "a photo of a {}."
    negative_prompt: str = ""            # the unconditional branch is the empty prompt
    seed: int = 0                        # base seed; each image's seed derives from it (pair_seed)
    height: int | None = None            # None: the UNet's native size (512 for SD v1.5)
    width: int | None = None

    def prompt(self, display_name: str) -> str:
        return self.prompt_template.format(display_name)


def check_noise_ratio(noise_ratio: float) -> float:
    if not isinstance(noise_ratio, (int, float)) or not 0 < noise_ratio <= 1:
        raise ValueError(f"noise ratio r must be in (0, 1], got {noise_ratio!r}: "
                         "r = 0.8 is GeNIe's default, r = 1 is text-to-image.")
    return float(noise_ratio)


def pair_seed(seed: int, source_id: str, target_class: str, variant: int = 0) -> int:
    """The seed of one generated image, from (base seed, source id, target class, variant).

    It does not depend on r (a pair gets the same noise at every r, as GeNIe-Ada needs), nor on batch
    size or order. `variant` numbers several images of one (source, class), as the baselines make.
    """
    text = f"{seed}|{source_id}|{target_class}|{variant}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


# --------------------------------------------------------------------------------------------------
# Loading a pipeline


class ModelLoadError(OSError):
    """The diffusion model could not be loaded (wrong path, not a diffusers folder, hub unreachable)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA (as the official code), float32 elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """sha256 over the configs and weights of a diffusers folder (README and images excluded)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"} \
                and not path.name.startswith("."):
            digest.update(f"{path.relative_to(folder).as_posix()} {file_sha256(path)}\n".encode())
    return digest.hexdigest()[:16]


def _hub_revision(model_id: str) -> str:
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(model_id, "model_index.json")
        return Path(cached).parent.name if isinstance(cached, str) else ""
    except Exception:  # the revision is informative only
        return ""


def load_pipeline(model: str | os.PathLike, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None):
    """Load an SD-style pipeline from a local diffusers folder or a hub model id.

    Returns `(pipeline, model_info)`; `model_info` (model, revision, fingerprint) goes into every manifest
    row. Fails at once with a `ModelLoadError` naming the fix; there is no retry loop.
    """
    from diffusers import StableDiffusionImg2ImgPipeline

    device = torch.device(device) if device else default_device()
    dtype = dtype or default_dtype(device)
    text = str(model)
    local = Path(os.path.expanduser(text))
    if local.exists():
        if not (local / "model_index.json").is_file():
            raise ModelLoadError(f"{local} is not a diffusers pipeline folder (no model_index.json). "
                                 "Give the folder that save_pretrained wrote, e.g. models/genie-companion.")
        source, info = str(local), {"model": text, "model_revision": "", "model_fingerprint": folder_fingerprint(local)}
    elif not _HUB_ID.match(text) or local.is_absolute() or text.startswith((".", "~")):
        raise ModelLoadError(f"no diffusers model folder at {text}. Check the path, or give a hub model id "
                             "such as stable-diffusion-v1-5/stable-diffusion-v1-5.")
    else:
        source, info = text, {"model": text}
    try:
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            source, dtype=dtype, safety_checker=None, requires_safety_checker=False)
    except (OSError, ValueError) as error:
        hint = ("the hub id could not be fetched (no connection, or no such model). Download it once with "
                "internet access, or point the profile's [generation] model at a local diffusers folder")
        raise ModelLoadError(f"cannot load the diffusion model {text!r}: {hint}. Cause: {error}") from error
    if "model_revision" not in info:
        info.update(model_revision=_hub_revision(text), model_fingerprint="")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), info


# --------------------------------------------------------------------------------------------------
# The generator


@dataclass
class GenerationCounts:
    """Work done, for cost accounting: UNet evaluations (one per denoising step and image, guidance
    branches included), VAE encodes and decodes (per image)."""
    unet_steps: int = 0
    vae_encodes: int = 0
    vae_decodes: int = 0


class GenieGenerator:
    """Runs GeNIe's img2img loop on a pipeline's parts. Batched; every image has its own noise."""

    def __init__(self, pipe, recipe: Recipe = Recipe(), model_info: dict | None = None):
        self.pipe = pipe
        self.recipe = recipe
        self.model_info = model_info or {"model": "", "model_revision": "", "model_fingerprint": ""}
        self.counts = GenerationCounts()
        self._prompt_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_pretrained(cls, model, recipe: Recipe = Recipe(), device=None, dtype=None) -> "GenieGenerator":
        pipe, info = load_pipeline(model, device, dtype)
        return cls(pipe, recipe, info)

    @classmethod
    def from_profile(cls, profile: dict, device=None, dtype=None) -> "GenieGenerator":
        """The profile's model (a folder relative to the project root, or a hub id) and recipe."""
        settings = profile["generation"]
        model = settings["model"]
        if model.startswith((".", "/", "~")):  # a folder (./models/...), not a hub id
            model = resolve(profile, model)
        size = profile["dataset"]["resolution"]
        recipe = Recipe(**{k: settings[k] for k in ("num_inference_steps", "guidance_scale", "prompt_template",
                                                      "seed") if k in settings}, height=size, width=size)
        return cls.from_pretrained(model, recipe, device, dtype)

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
        """A fresh DPM-Solver++ (order 2) scheduler on the pipeline's noise schedule."""
        from diffusers import DPMSolverMultistepScheduler
        return DPMSolverMultistepScheduler.from_config(self.pipe.scheduler.config, algorithm_type="dpmsolver++",
                                                       solver_order=2)

    def timesteps(self, noise_ratio: float) -> torch.Tensor:
        """The timesteps denoised at noise ratio r: the last int(steps * r) of the schedule.

        With SD v1.5's schedule and 50 steps: r = 0.8 -> 40 steps from 799, r = 1.0 -> 50 from 999.
        """
        return self._schedule(noise_ratio)[1]

    def _schedule(self, noise_ratio: float):
        noise_ratio = check_noise_ratio(noise_ratio)
        steps = self.recipe.num_inference_steps
        scheduler = self.scheduler()
        scheduler.set_timesteps(steps, device=self.device)
        kept = min(int(round(steps * noise_ratio, 6)), steps)
        start = (steps - kept) * scheduler.order
        scheduler.set_begin_index(start)
        return scheduler, scheduler.timesteps[start:]

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize the shorter side, centre-crop to the generator's size, scale to [-1, 1]: (B, 3, H, W)."""
        height, width = self.size
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
        """(conditional, unconditional) text embeddings for `a photo of a {name}.`, cached per prompt."""
        missing = [n for n in dict.fromkeys(display_names) if n not in self._prompt_cache]
        if missing:
            prompts = [self.recipe.prompt(n) for n in missing]
            cond, uncond = self.pipe.encode_prompt(prompts, self.device, 1, True,
                                                   negative_prompt=[self.recipe.negative_prompt] * len(prompts))
            for i, name in enumerate(missing):
                self._prompt_cache[name] = (cond[i], uncond[i])
        cond = torch.stack([self._prompt_cache[n][0] for n in display_names])
        uncond = torch.stack([self._prompt_cache[n][1] for n in display_names])
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
        if len(timesteps) == 0:  # r so small that no step runs: the source comes back unchanged
            return scheduler, timesteps, source_latents.to(self.device, torch.float32)
        noisy = scheduler.add_noise(source_latents.to(self.device, torch.float32), noise, timesteps[:1].repeat(len(noise)))
        return scheduler, timesteps, noisy

    @torch.inference_mode()
    def denoise(self, source_latents: torch.Tensor | None, noise: torch.Tensor, cond: torch.Tensor,
                uncond: torch.Tensor, noise_ratio: float) -> torch.Tensor:
        """Noise the source latents to r, then run the remaining DPM-Solver++ steps with guidance.

        `source_latents` may be None only for r = 1 (pure noise). Returns latents (B, C, h, w) float32.
        """
        scheduler, timesteps, latents = self.noised(source_latents, noise, noise_ratio)
        guided = self.recipe.guidance_scale > 1
        embeddings = torch.cat([uncond, cond]) if guided else cond
        for t in timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t).to(self.dtype)
            prediction = self.pipe.unet(model_input, t, encoder_hidden_states=embeddings).sample.float()
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
        if len(display_names) != len(seeds) or (sources is not None and len(sources) != len(seeds)):
            raise ValueError(f"need one source, class and seed per image; got {len(sources or [])} sources, "
                             f"{len(display_names)} classes, {len(seeds)} seeds")
        latents = self.encode(sources) if noise_ratio < 1.0 else None
        cond, uncond = self.prompt_embeddings(display_names)
        return self.decode(self.denoise(latents, self.noise(seeds), cond, uncond, noise_ratio), output_type)


# --------------------------------------------------------------------------------------------------
# The paper's operations on images


def _as_images(sources) -> list[Image.Image]:
    return [s.convert("RGB") if isinstance(s, Image.Image) else load_image(s) for s in sources]


def _source_ids(sources, images, source_ids):
    if source_ids is not None:
        return list(source_ids)
    # without ids, content identifies an image: the seed then depends neither on position nor on the path
    return [hashlib.sha256(i.tobytes()).hexdigest()[:16] if isinstance(s, Image.Image) else file_sha256(s)[:16]
            for s, i in zip(sources, images)]


def check_class(class_name: str, class_names: dict[str, str] | None) -> str:
    """The display name of a class, or an error listing the closest known classes."""
    if class_names is None:
        return class_name
    if class_name not in class_names:
        close = difflib.get_close_matches(class_name, list(class_names), n=3)
        raise KeyError(f"unknown class {class_name!r}" + (f"; did you mean {close}?" if close else "")
                       + f" The dataset has {len(class_names)} classes (see its class_name column).")
    return class_names[class_name]


def genie(generator: GenieGenerator, sources, target_class: str, noise_ratio: float = 0.8,
          class_names: dict[str, str] | None = None, source_ids: Sequence[str] | None = None,
          output_type: str = "pil"):
    """GeNIe hard negatives: each source image denoised from r towards `target_class`'s prompt.

    `sources`: PIL images or image paths. `class_names`: class -> display name (checks the class).
    Returns one image per source, to be labelled `target_class`.
    """
    display = check_class(target_class, class_names)
    images = _as_images(sources)
    ids = _source_ids(sources, images, source_ids)
    seeds = [pair_seed(generator.recipe.seed, i, target_class) for i in ids]
    return generator.generate(images, [display] * len(images), noise_ratio, seeds, output_type)


def img2img(generator: GenieGenerator, sources, source_class: str, noise_ratio: float = 0.3,
            class_names: dict[str, str] | None = None, source_ids: Sequence[str] | None = None,
            variant: int = 0, output_type: str = "pil"):
    """The Img2Img baseline: sources denoised towards their own class (r = 0.3: ^L, 0.7: ^H)."""
    display = check_class(source_class, class_names)
    images = _as_images(sources)
    ids = _source_ids(sources, images, source_ids)
    seeds = [pair_seed(generator.recipe.seed, i, source_class, variant) for i in ids]
    return generator.generate(images, [display] * len(images), noise_ratio, seeds, output_type)


def txt2img(generator: GenieGenerator, target_class: str, count: int, class_names: dict[str, str] | None = None,
            output_type: str = "pil"):
    """The Txt2Img baseline: `count` images of a class from pure noise (r = 1)."""
    display = check_class(target_class, class_names)
    seeds = [pair_seed(generator.recipe.seed, f"txt2img-{i}", target_class) for i in range(count)]
    return generator.generate(None, [display] * count, 1.0, seeds, output_type)


# --------------------------------------------------------------------------------------------------
# Jobs: which images an episode needs, generated into the store


@dataclass(frozen=True)
class Job:
    """One image to generate: a source image, the class its prompt names, a noise ratio."""
    method: str
    source_id: str
    source_path: str
    source_class: str
    target_class: str
    noise_ratio: float
    variant: int = 0


def hard_negative_jobs(support: pd.DataFrame, noise_ratio: float = METHODS["genie"].noise_ratio,
                       method: str = "genie") -> list[Job]:
    """GeNIe's pairing in an N-way K-shot episode: every support image of the other N-1 classes is a
    source for each target class, giving (N-1)*K images per class."""
    check_noise_ratio(noise_ratio)
    jobs = []
    for target in sorted(support.class_name.unique()):
        for row in support[support.class_name != target].itertuples():
            jobs.append(Job(method, row.image_id, row.path, row.class_name, target, noise_ratio))
    return jobs


def own_class_jobs(support: pd.DataFrame, method: str) -> list[Job]:
    """The baselines' pairing: N-1 variants of every support image, prompted with its own class, so each
    class gets as many images as GeNIe gives it."""
    spec = METHODS[method]
    variants = support.class_name.nunique() - 1
    return [Job(method, row.image_id, row.path, row.class_name, row.class_name, spec.noise_ratio, v)
            for row in support.sort_values(["class_name", "image_id"]).itertuples() for v in range(variants)]


def episode_jobs(support: pd.DataFrame, method: str) -> list[Job]:
    """The jobs of one augmentation method for an episode's support set."""
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    if METHODS[method].prompt_class == "target":
        return hard_negative_jobs(support, METHODS[method].noise_ratio, method)
    return own_class_jobs(support, method)


def pairs_with_targets(sources: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """Every source row paired with every target class (a `target_class` column added)."""
    return sources.merge(pd.DataFrame({"target_class": list(targets)}), how="cross")


def sweep_jobs(pairs: pd.DataFrame, noise_ratios: Sequence[float], method: str = "genie") -> list[Job]:
    """Every (source, target) pair of `pairs` (dataset rows plus a `target_class` column) at every r: the
    same noise per pair at each r, as in the paper's figure 2."""
    return [Job(method, row.image_id, row.path, row.class_name, row.target_class, check_noise_ratio(r))
            for row in pairs.itertuples() for r in noise_ratios]


def noised_images(generator: GenieGenerator, image: Image.Image, seed: int, noise_ratios: Sequence[float]):
    """What the UNet starts from at each r, decoded to pixels: the source fading into noise."""
    latents = generator.encode([image])
    noise = generator.noise([seed])
    return [generator.decode(generator.noised(latents, noise, r)[2])[0] for r in noise_ratios]


def shard(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """The jobs of worker `index` out of `count` (round robin), for several processes on one store."""
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index}")
    return list(jobs)[index::count]


def _versions() -> dict:
    return {name: importlib.metadata.version(name) for name in ("torch", "diffusers", "transformers",
                                                                  "genie-companion")}


def job_spec(generator: GenieGenerator, job: Job, prompt: str, source_sha256: str) -> dict:
    """Everything that determines a job's image: its store key is a hash of this."""
    recipe = generator.recipe
    height, width = generator.size
    return {
        "method": job.method, "source_id": job.source_id, "source_sha256": source_sha256,
        "source_class": job.source_class, "target_class": job.target_class, "noise_ratio": job.noise_ratio,
        "variant": job.variant, "seed": pair_seed(recipe.seed, job.source_id, job.target_class, job.variant),
        "base_seed": recipe.seed, "prompt": prompt, "negative_prompt": recipe.negative_prompt,
        "num_inference_steps": recipe.num_inference_steps, "guidance_scale": recipe.guidance_scale,
        "scheduler": "DPMSolverMultistepScheduler(dpmsolver++, order 2)", "latent": "vae-mode",
        "height": height, "width": width, "dtype": str(generator.dtype).replace("torch.", ""),
        # a local folder is identified by its content (the same key in every checkout), a hub model by id@revision
        "model_identity": generator.model_info["model_fingerprint"]
        or f"{generator.model_info['model']}@{generator.model_info['model_revision']}",
    }


def manifest_row(generator: GenieGenerator, spec: dict, source_path: str, seconds: float | None) -> dict:
    """A job's specification plus what is known once its image exists: timesteps run, time, versions."""
    timesteps = generator.timesteps(spec["noise_ratio"])
    return {**spec, **generator.model_info, "source_path": source_path, "denoising_steps": len(timesteps),
            "first_timestep": int(timesteps[0]) if len(timesteps) else None,
            "seconds": None if seconds is None else round(seconds, 4), "device": str(generator.device),
            "versions": _versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def run_jobs(generator: GenieGenerator, jobs: Iterable[Job], store: Store, class_names: dict[str, str],
             batch_size: int = 16, progress: bool = True) -> pd.DataFrame:
    """Generate every job not yet in the store; return the manifest rows of all `jobs`, in order.

    Jobs are grouped by noise ratio and batched; each image is written (atomically, with its row) as soon
    as its batch is done, so an interrupted run loses at most one batch and a rerun resumes.
    """
    from tqdm.auto import tqdm

    jobs = list(jobs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    hashes: dict[str, str] = {}
    keyed = []
    for job in jobs:
        prompt = generator.recipe.prompt(check_class(job.target_class, class_names))
        check_noise_ratio(job.noise_ratio)
        if job.source_path not in hashes:
            if not Path(job.source_path).is_file():
                raise FileNotFoundError(f"source image {job.source_id} not found at {job.source_path}")
            hashes[job.source_path] = file_sha256(job.source_path)
        spec = job_spec(generator, job, prompt, hashes[job.source_path])
        keyed.append((spec_key(spec), job, spec))
    todo = {key: (job, spec) for key, job, spec in keyed if not store.has(key)}
    ordered = sorted(todo.items(), key=lambda item: (item[1][0].noise_ratio, item[1][0].target_class, item[0]))
    with tqdm(total=len(ordered), desc=f"generating ({len(keyed) - len(todo)} already in store)",
              unit="img", disable=not progress or not ordered) as bar:
        for ratio in sorted({job.noise_ratio for job, _ in todo.values()}):
            group = [(key, job, spec) for key, (job, spec) in ordered if job.noise_ratio == ratio]
            for start in range(0, len(group), batch_size):
                batch = group[start:start + batch_size]
                began = time.perf_counter()
                sources = None if ratio >= 1.0 else [load_image(job.source_path) for _, job, _ in batch]
                images = generator.generate(sources, [class_names[j.target_class] for _, j, _ in batch], ratio,
                                            [spec["seed"] for _, _, spec in batch])
                seconds = (time.perf_counter() - began) / len(batch)
                for (key, job, spec), image in zip(batch, images):
                    store.put(key, image, manifest_row(generator, spec, job.source_path, seconds))
                bar.update(len(batch))
    return pd.DataFrame([store.row(key) for key, _, _ in keyed])
