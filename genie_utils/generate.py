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
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import json
import math
import numbers
import os
import re
import string
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
from PIL import Image

from . import speed as speed_settings
from .data import file_sha256, load_image, to_rgb
from .profiles import project_root, resolve, seconds_setting
from .store import Store, claim_stale_seconds, spec_key

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_timeout_seconds(text: str | None) -> float:
    """The value of GENIE_HUB_TIMEOUT_SECONDS: a positive number of seconds, 20 when unset or empty."""
    return seconds_setting("GENIE_HUB_TIMEOUT_SECONDS", text, 20.0)


# A hub that accepts the connection but does not answer fails after this many seconds.
HUB_TIMEOUT_SECONDS = hub_timeout_seconds(os.environ.get("GENIE_HUB_TIMEOUT_SECONDS"))


# --------------------------------------------------------------------------------------------------
# Methods and recipe


@dataclass(frozen=True)
class Method:
    """An augmentation method: its noise ratio and whose class the prompt names."""
    name: str
    noise_ratio: float
    prompt_class: str  # "target": another class (GeNIe); "own": the source's class (baselines)


METHODS = {
    "genie": Method("genie", 0.8, "target"),
    "img2img_low": Method("img2img_low", 0.3, "own"),     # Img2Img^L
    "img2img_high": Method("img2img_high", 0.7, "own"),   # Img2Img^H
    # The official script runs its "txt2img" at r = 0.8 by mistake; text-to-image is r = 1.0.
    "txt2img": Method("txt2img", 1.0, "own"),
}
# Scheduler settings that decide the timesteps: pinned, so that a model folder cannot change them silently.
SCHEDULER_SETTINGS = dict(algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="linspace",
                          use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
                          use_lu_lambdas=False)


@dataclass(frozen=True)
class Recipe:
    """Sampling settings; defaults are the official GeNIe recipe."""
    num_inference_steps: int = 50
    guidance_scale: float = 7.5          # classifier-free guidance; <= 1 turns guidance off
    prompt_template: str = "a photo of a {}."
    negative_prompt: str = ""            # the unconditional branch is the empty prompt
    seed: int = 0                        # base seed; each image's seed derives from it (pair_seed)
    height: int | None = None            # None: the UNet's native size (512 for SD v1.5)
    width: int | None = None
    # Guidance only at timesteps low <= t <= high, the conditional prediction alone elsewhere (Kynkaanniemi et
    # al. 2024, "Applying guidance in a limited interval"); None guides every step, as the official recipe.
    guidance_timesteps: tuple[int, int] | None = None

    def __post_init__(self):
        # checked, not converted: the values go into every image's store key as given
        check_steps(self.num_inference_steps)
        check_guidance_scale(self.guidance_scale)
        check_prompt_template(self.prompt_template)
        check_image_size(self.height, "height")
        check_image_size(self.width, "width")
        if self.guidance_timesteps is not None:
            low, high = self.guidance_timesteps
            if not 0 <= low <= high <= 999:
                raise ValueError(f"guidance_timesteps must be (low, high) with 0 <= low <= high <= 999, got "
                                 f"{self.guidance_timesteps!r}")
            object.__setattr__(self, "guidance_timesteps", (int(low), int(high)))

    def prompt(self, display_name: str) -> str:
        return self.prompt_template.format(display_name)

    def guides_at(self, timestep) -> bool:
        """Whether the step at `timestep` runs classifier-free guidance."""
        if self.guidance_scale <= 1:
            return False
        if self.guidance_timesteps is None:
            return True
        low, high = self.guidance_timesteps
        return low <= int(timestep) <= high


def check_noise_ratio(noise_ratio) -> float:
    """r as a plain float rounded to 6 decimals (1 and 1.0 give one store key), or an error.

    Accepts Python and numpy numbers in (0, 1]; refuses booleans and strings."""
    if isinstance(noise_ratio, bool) or not isinstance(noise_ratio, numbers.Real) or not 0 < noise_ratio <= 1:
        raise ValueError(f"noise ratio r must be in (0, 1], got {noise_ratio!r}: "
                         "r = 0.8 is GeNIe's default, r = 1 is text-to-image.")
    return round(float(noise_ratio), 6)


def check_steps(num_inference_steps) -> int:
    """The number of denoising steps of the full schedule: a positive integer."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral) \
            or num_inference_steps < 1:
        raise ValueError(f"the number of inference steps must be a positive integer, got {num_inference_steps!r}: "
                         "50 is the official recipe's (r keeps int(steps * r) of them).")
    return int(num_inference_steps)


def check_guidance_scale(guidance_scale) -> float:
    """The classifier-free guidance scale: a finite number >= 0 (<= 1 turns guidance off)."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real) \
            or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(f"guidance scale must be a finite number >= 0, got {guidance_scale!r}: 7.5 is the official "
                         "recipe's, 1 or less turns guidance off.")
    return float(guidance_scale)


def check_prompt_template(template) -> str:
    """A prompt template with exactly one `{}`, where `str.format` puts the class's display name."""
    fix = "write exactly one {} where the class name goes, e.g. 'a photo of a {}.' ({{ and }} for literal braces)"
    if not isinstance(template, str):
        raise ValueError(f"prompt template must be a string, got {template!r}: {fix}")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise ValueError(f"prompt template {template!r} is not a format string ({error}): {fix}") from None
    if len(fields) != 1 or fields[0] not in ("", "0"):
        found = ", ".join("{" + f + "}" for f in fields) or "none"
        raise ValueError(f"prompt template {template!r} needs one placeholder for the class name, found {found}: "
                         f"{fix}")
    try:
        template.format("class name")
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise ValueError(f"prompt template {template!r} cannot format a class name ({error}): {fix}") from None
    return template


def check_image_size(size, name: str = "size") -> int | None:
    """An image height or width: None (the model's native size) or a positive multiple of 8."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise ValueError(f"{name} must be a whole number of pixels, a multiple of 8, or None, got {size!r}")
    if size < 8 or size % 8:
        below = int(size) // 8 * 8
        nearest = " or ".join(str(s) for s in (below, below + 8) if s >= 8)
        raise ValueError(f"{name} = {size} px is not a positive multiple of 8 (a Stable Diffusion latent is 1/8 of the "
                         f"image, so the output would silently come out smaller): use {nearest}, or None for the "
                         "model's native size.")
    return int(size)


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def kept_steps(num_inference_steps: int, noise_ratio: float) -> int:
    """How many of the schedule's last steps r runs: int(steps * r), exactly as diffusers img2img's
    `strength` (so r = 0.58 with 50 steps runs 28, since 50 * 0.58 = 28.999...)."""
    return min(int(num_inference_steps * check_noise_ratio(noise_ratio)), num_inference_steps)


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
    """The diffusion model could not be loaded (wrong path, broken folder, hub unreachable)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(name: str) -> torch.device:
    """The device a user named, checked before any work: it must parse and be usable on this machine."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r}: torch sees no CUDA GPU on this machine; use cpu, or leave the device "
                             "out to take a GPU when there is one")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        raise ValueError(f"device {name!r} is not supported here: use cpu, cuda or cuda:N")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA (as the official code), float32 elsewhere: the built-in speed setting's dtype."""
    return speed_settings.dtype_of(speed_settings.builtin_default(device))


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


def model_location(model: str | os.PathLike) -> tuple[str, Path | None]:
    """("folder", path) for a local diffusers folder, ("hub", None) for a hub model id.

    A relative path is looked up under the project root first, then the working directory, so that
    `models/genie-companion` means the shipped folder from a notebook's folder too."""
    text = os.path.expanduser(str(model))
    path = Path(text)
    candidates = [path] if path.is_absolute() else [project_root() / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.exists():
            return "folder", candidate.resolve()
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return "hub", None
    raise ModelLoadError(f"no diffusers model folder at {model} (looked in {', '.join(map(str, candidates))}). "
                         "Check the path, or give a hub model id such as stable-diffusion-v1-5/stable-diffusion-v1-5.")


# The parts GenieGenerator runs: model_index.json must list each.
PIPELINE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")
# diffusers renames these parameters of its old attention blocks on loading (ModelMixin._fix_state_dict_keys_on_load)
_LEGACY_ATTENTION = re.compile(r"\.(query|key|value|proj_attn)\.(weight|bias)$")
_LEGACY_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def check_model_folder(folder: Path) -> None:
    """Refuse a broken diffusers folder before loading, naming the file at fault."""
    from safetensors import safe_open

    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{folder} is not a diffusers pipeline folder (no model_index.json). "
                             "Give the folder that save_pretrained wrote, e.g. models/genie-companion.")
    restore = "Restore the file (git checkout, or save_pretrained again)."
    try:
        components = json.loads(index.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"broken local model folder: {index} is not valid JSON ({error}). {restore}") from None
    if not isinstance(components, dict) or not isinstance(components.get("_class_name"), str):
        raise ModelLoadError(f"broken local model folder: {index} names no pipeline class (no \"_class_name\"): it is "
                             f"not what save_pretrained writes. {restore}")
    parts = {name: spec for name, spec in components.items()
             if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2 and spec[0] is not None}
    unlisted = [name for name in PIPELINE_PARTS if name not in parts]
    if unlisted:
        raise ModelLoadError(f"broken local model folder: {index} lists no {', '.join(unlisted)} (a Stable-Diffusion-"
                             f"style pipeline has {', '.join(PIPELINE_PARTS)}). {restore}")
    parameters = {}  # weights part -> the parameter names its safetensors files hold
    for name, spec in parts.items():
        part = folder / name
        if not part.is_dir():
            raise ModelLoadError(f"broken local model folder: {folder} has no {name} folder, which {index.name} lists "
                                 f"({spec[1]}). Restore it.")
        for config in ("config.json", "scheduler_config.json", "tokenizer_config.json"):
            if (part / config).is_file():
                try:
                    json.loads((part / config).read_text())
                except (ValueError, UnicodeDecodeError) as error:
                    raise ModelLoadError(f"broken local model folder: {part / config} is not valid JSON ({error}). "
                                         "Restore the file.") from None
        if str(spec[1]).endswith(("Tokenizer", "TokenizerFast")) and not (
                any((part / f).is_file() for f in _VOCABULARY_FILES) or any(part.glob("*.model"))):
            raise ModelLoadError(f"broken local model folder: {part} holds no vocabulary "
                                 f"({', '.join(_VOCABULARY_FILES)} or a sentencepiece .model): every prompt would become "
                                 "unknown tokens. Restore it.")
        if name in ("unet", "vae", "text_encoder"):
            weights = sorted(part.glob("*.safetensors")) + sorted(part.glob("*.bin"))
            shard_index = next(iter(part.glob("*.index.json")), None)
            if shard_index is not None:
                shards = set(json.loads(shard_index.read_text()).get("weight_map", {}).values())
                missing = sorted(s for s in shards if not (part / s).is_file())
                if missing:
                    raise ModelLoadError(f"broken local model folder: {part} lacks the weights file(s) {missing} "
                                         f"that {shard_index.name} lists. Restore them.")
            if not weights:
                raise ModelLoadError(f"broken local model folder: no weights file in {part}. Restore it.")
            for file in weights:
                if file.suffix != ".safetensors":
                    continue
                try:
                    with safe_open(str(file), "pt") as handle:
                        parameters.setdefault(name, set()).update(handle.keys())
                except Exception as error:  # safetensors raises its own error types for corrupt headers
                    raise ModelLoadError(f"broken local model folder: weights file {file} is corrupt or "
                                         f"truncated ({error}). Restore it.") from None
    _check_weights_fit(folder, parts, parameters)


def _parameter_names(part: Path, library: str, class_name: str) -> set[str] | None:
    """The parameter names a part's config.json describes (its model built on the meta device: no memory, no
    weights read); None when the class or config is not one this can build (the loader then names its error)."""
    import importlib

    try:
        cls = getattr(importlib.import_module(library), class_name)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = (cls.from_config(cls.load_config(part)) if library == "diffusers"
                     else cls(cls.config_class.from_pretrained(part)))
    except Exception:
        return None
    ignored = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_missing", None) or []]
    return {name for name in model.state_dict() if not any(p.search(name) for p in ignored)}


def _check_weights_fit(folder: Path, parts: dict, parameters: dict[str, set[str]]) -> None:
    """Refuse weights that lack parameters their part's config.json describes (the loader would leave them empty:
    an error deep inside torch, or random weights), naming the part whose weights they are when they fit another."""
    expected = {name: _parameter_names(folder / name, *parts[name]) for name in parameters}
    for name, found in parameters.items():
        if expected[name] is None:
            continue
        found = found | {_LEGACY_ATTENTION.sub(lambda m: f".{_LEGACY_NAMES[m[1]]}.{m[2]}", key) for key in found}
        missing = expected[name] - found
        if not missing:
            continue
        owner = next((other for other, names in expected.items() if other != name and names and names <= found), None)
        hint = (f"they are the {owner}'s: are the {name} and {owner} weights files swapped?" if owner
                else "are they another model's, or saved with another config.json?")
        raise ModelLoadError(f"broken local model folder: the weights in {folder / name} lack {len(missing)} of the "
                             f"{len(expected[name])} parameters its config.json describes (e.g. {min(missing)!r}): "
                             f"{hint} Restore them.")


def _from_pretrained(source: str, dtype, **kwargs):
    from diffusers import StableDiffusionImg2ImgPipeline
    return StableDiffusionImg2ImgPipeline.from_pretrained(source, dtype=dtype, safety_checker=None,
                                                          requires_safety_checker=False, **kwargs)


def _load_from_hub(model_id: str, dtype):
    """From the local cache if it holds the model (no network at all), else download it, after checking
    within HUB_TIMEOUT_SECONDS that the hub answers: a silent endpoint cannot hang the caller."""
    try:
        return _from_pretrained(model_id, dtype, local_files_only=True)
    except (OSError, ValueError):
        pass  # not (completely) in the cache
    from huggingface_hub import HfApi, constants
    fix = ("Download it once with internet access (it is then read from the Hugging Face cache), or point the "
           "profile's [generation] model at a local diffusers folder.")
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(f"cannot load the diffusion model {model_id!r}: it is not in the Hugging Face cache and "
                             f"HF_HUB_OFFLINE is set. {fix}")
    try:
        HfApi().model_info(model_id, timeout=HUB_TIMEOUT_SECONDS)
    except Exception as error:  # network errors come from httpx, hub errors from huggingface_hub
        raise ModelLoadError(f"cannot load the diffusion model {model_id!r}: the hub at {constants.ENDPOINT} did not "
                             f"answer within {HUB_TIMEOUT_SECONDS} s or refused ({type(error).__name__}: {error}). "
                             f"{fix}") from error
    try:
        return _from_pretrained(model_id, dtype)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load the diffusion model {model_id!r} from the hub: {error}. {fix}") from error


def load_pipeline(model: str | os.PathLike, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None):
    """Load an SD-style pipeline from a local diffusers folder or a hub model id.

    Returns `(pipeline, model_info)`; `model_info` (model, revision, fingerprint) goes into every manifest
    row. A wrong path, a broken folder (naming the file) or a hub that does not answer within
    HUB_TIMEOUT_SECONDS gives a `ModelLoadError` naming the fix; there is no retry loop.
    """
    device = torch.device(device) if device else default_device()
    dtype = dtype or default_dtype(device)
    kind, folder = model_location(model)
    if kind == "folder":
        check_model_folder(folder)
        try:
            pipe = _from_pretrained(str(folder), dtype)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"broken local model folder {folder}: {error}") from error
        info = {"model": str(model), "model_revision": "", "model_fingerprint": folder_fingerprint(folder)}
    else:
        pipe = _load_from_hub(str(model), dtype)
        info = {"model": str(model), "model_revision": _hub_revision(str(model)), "model_fingerprint": ""}
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
                                   benchmarks_folder(profile))

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
        from diffusers import DPMSolverMultistepScheduler
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


def benchmarks_folder(profile: dict) -> Path:
    """Where `benchmarks/throughput.py` writes a profile's records (throughput.csv, throughput-*.json)."""
    return resolve(profile, profile["paths"]["results"]) / "benchmarks"


def profile_recipe(profile: dict) -> Recipe:
    """The sampling recipe a profile's `[generation]` table names, at the dataset's resolution."""
    settings, size = profile["generation"], profile["dataset"]["resolution"]
    interval = settings.get("guidance_timesteps")
    if interval is not None and len(interval) != 2:
        raise ValueError(f"[generation] guidance_timesteps must be [low, high], got {interval!r}")
    return Recipe(settings["num_inference_steps"], settings["guidance_scale"], settings["prompt_template"],
                  seed=settings["seed"], height=size, width=size,
                  guidance_timesteps=tuple(interval) if interval else None)


# --------------------------------------------------------------------------------------------------
# Jobs: one image each, generated into the store


@dataclass(frozen=True)
class Job:
    """One image to generate: a source image, the class its prompt names, a noise ratio.

    The method must be one of METHODS (it names the store's image folder); r is normalised by
    `check_noise_ratio`, so r = 1 and r = 1.0 are one job."""
    method: str
    source_id: str
    source_path: str
    source_class: str
    target_class: str
    noise_ratio: float
    variant: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            close = difflib.get_close_matches(str(self.method), list(METHODS), n=1)
            raise ValueError(f"unknown method {self.method!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" Known methods: {sorted(METHODS)}")
        object.__setattr__(self, "noise_ratio", check_noise_ratio(self.noise_ratio))


def job_seed(recipe: Recipe, job: Job) -> int:
    """The seed of a job's image: the one place seeds come from, for `run_jobs` and `genie()` alike."""
    return pair_seed(recipe.seed, job.source_id, job.target_class, job.variant)


def pairs_with_targets(sources: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """Every source row paired with every target class (a `target_class` column added)."""
    return sources.merge(pd.DataFrame({"target_class": list(targets)}), how="cross")


def sweep_jobs(pairs: pd.DataFrame, noise_ratios: Sequence[float], method: str = "genie") -> list[Job]:
    """Every (source, target) pair of `pairs` (dataset rows plus a `target_class` column) at every r: the
    same noise per pair at each r, as in the paper's figure 2."""
    return [Job(method, row.image_id, row.path, row.class_name, row.target_class, r)
            for row in pairs.itertuples() for r in noise_ratios]


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """(index, count) of one worker among `count`; None means the only worker, (0, 1)."""
    index, count = shard if shard is not None else (0, 1)
    if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    return index, count


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether the job with store key `key` belongs to worker `shard` = (index, count): decided by the key
    alone, so it depends on neither the order of the jobs nor the process that lists them."""
    index, count = check_shard(shard)
    return int(key[:15], 16) % count == index


def process_state():
    """accelerate's state of this process under `accelerate launch` or `torchrun` (several GPUs or nodes; on
    CPUs, torchrun: accelerate's own CPU launcher needs MPI), None when launched alone.

    Give each process the jobs `in_shard(key, (state.process_index, state.num_processes))`: every image depends
    only on its job (per-image seeds), so the union of the shards is the single-process result."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _versions() -> dict:
    return {name: importlib.metadata.version(name) for name in ("torch", "diffusers", "transformers",
                                                                  "genie-companion")}


def job_spec(generator: GenieGenerator, job: Job, prompt: str, source_sha256: str) -> dict:
    """Everything that determines a job's image: its store key is a hash of this."""
    recipe = generator.recipe
    identity = version_spec(generator)
    return {
        "method": job.method, "source_id": job.source_id, "source_sha256": source_sha256,
        "source_class": job.source_class, "target_class": job.target_class, "noise_ratio": job.noise_ratio,
        "variant": job.variant, "seed": job_seed(recipe, job),
        "base_seed": identity.pop("base_seed"), "prompt": prompt, "negative_prompt": recipe.negative_prompt,
        **identity,
    }


def version_spec(generator: GenieGenerator) -> dict:
    """What makes one version of every image: the model, the recipe, the size, the dtype and the base seed. Two
    of them in one store would give each (source, target) pair twice; `genie generate` refuses that."""
    recipe = generator.recipe
    height, width = generator.size
    return {
        "base_seed": recipe.seed,
        "num_inference_steps": recipe.num_inference_steps, "guidance_scale": recipe.guidance_scale,
        "scheduler": "DPMSolverMultistepScheduler(dpmsolver++, order 2, linspace)", "latent": "vae-mode",
        "height": height, "width": width, "dtype": str(generator.dtype).replace("torch.", ""),
        # a local folder is identified by its content (the same key in every checkout), a hub model by id@revision
        "model_identity": generator.model_info["model_fingerprint"]
        or f"{generator.model_info['model']}@{generator.model_info['model_revision']}",
        # only when set, so that the keys of images guided at every step stay what they were
        **({"guidance_timesteps": list(recipe.guidance_timesteps)}
           if recipe.guidance_timesteps and recipe.guidance_scale > 1 else {}),
    }


def manifest_row(generator: GenieGenerator, spec: dict, source_path: str, seconds: float | None) -> dict:
    """A job's specification plus what is known once its image exists: timesteps run, time, versions."""
    timesteps = generator.timesteps(spec["noise_ratio"])
    return {**spec, **generator.model_info, "source_path": source_path, "denoising_steps": len(timesteps),
            "first_timestep": int(timesteps[0]),
            "seconds": None if seconds is None else round(seconds, 4), "device": str(generator.device),
            "speed_setting": generator.speed,
            "versions": _versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def keyed_jobs(generator: GenieGenerator, jobs: Iterable[Job], class_names: dict[str, str]) -> list[tuple[str, Job, dict]]:
    """(store key, job, spec) per job, checking every class and source file before any work."""
    hashes: dict[str, str] = {}
    keyed = []
    for job in jobs:
        if not isinstance(job, Job):
            raise TypeError(f"expected Job objects, got {type(job).__name__}")
        prompt = generator.recipe.prompt(check_class(job.target_class, class_names))
        if job.source_path not in hashes:
            if not Path(job.source_path).is_file():
                raise FileNotFoundError(f"source image {job.source_id} not found at {job.source_path}")
            hashes[job.source_path] = file_sha256(job.source_path)
        spec = job_spec(generator, job, prompt, hashes[job.source_path])
        keyed.append((spec_key(spec), job, spec))
    return keyed


WAIT_MESSAGE_SECONDS = 60.0  # how often a worker waiting on others' claims says so


def claimed_batches(store: Store, items: list, key_of, batch_size: int, done=None, poll_seconds: float = 1.0):
    """Yield batches of `items` not yet done (default: `key_of(item)` in the store), each claimed first.

    Items another live worker has claimed are skipped, then waited for (polling the store), and taken over
    if that worker's claim goes stale: parallel workers on one store share the work and never duplicate it.
    The caller writes each item into the store; claims are released after each batch."""
    done = done or (lambda item: store.has(key_of(item)))
    pending = [item for item in items if not done(item)]
    said = float("-inf")
    while pending:
        waiting, batch = [], []
        for item in pending:
            if done(item):
                continue
            if len(batch) < batch_size and store.claim(key_of(item)):
                if done(item):  # finished by another worker between the check above and the claim
                    store.release(key_of(item))
                    continue
                batch.append(item)
            else:
                waiting.append(item)
        if batch:
            try:
                with store.heartbeat([key_of(item) for item in batch]):  # so that no worker takes them over
                    yield batch
            finally:
                for item in batch:
                    store.release(key_of(item))
        elif waiting:  # every remaining job is being made by another worker
            if time.monotonic() - said > WAIT_MESSAGE_SECONDS:
                said = time.monotonic()
                print(f"waiting for {len(waiting)} image{'s' * (len(waiting) != 1)} that other workers are making (the first held by "
                      f"{store.claim_holder(key_of(waiting[0]))}); a claim not refreshed for {claim_stale_seconds():g} s "
                      "is taken over (GENIE_CLAIM_STALE_SECONDS)", file=sys.stderr, flush=True)
            time.sleep(poll_seconds)
        pending = waiting


def _generate_batch(generator: GenieGenerator, batch: list[tuple[str, Job, dict]], class_names: dict[str, str],
                    sources: list[Image.Image] | None = None, output_type: str = "pil"):
    """The images of jobs sharing one noise ratio: sources loaded (unless given), seeds from the specs."""
    ratio = batch[0][1].noise_ratio
    if sources is None and ratio < 1.0:
        sources = [load_image(job.source_path) for _, job, _ in batch]
    return generator.generate(sources if ratio < 1.0 else None, [class_names[j.target_class] for _, j, _ in batch],
                              ratio, [spec["seed"] for _, _, spec in batch], output_type)


def run_jobs(generator: GenieGenerator, jobs: Iterable[Job], store: Store, class_names: dict[str, str],
             batch_size: int | None = None, progress: bool = True,
             shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """Generate every job not yet in the store; return the manifest rows of all `jobs`, in order.

    Jobs are grouped by noise ratio and batched (`batch_size`, default the generator's); each image is
    written (atomically, with its row) as soon as its batch is done, so an interrupted run loses at most one
    batch and a rerun resumes. Several processes may run the same jobs on one store: each claims a batch
    before generating it, so no image is made twice. With `shard` = (index, count) a process takes only the
    jobs `in_shard` and returns only their rows (see `process_state` for `accelerate launch`).
    """
    from tqdm.auto import tqdm

    batch_size = check_batch_size(batch_size if batch_size is not None else generator.batch_size)
    keyed = [item for item in keyed_jobs(generator, jobs, class_names) if in_shard(item[0], shard)]
    todo = {key: (key, job, spec) for key, job, spec in keyed if not store.has(key)}
    ordered = sorted(todo.values(), key=lambda item: (item[1].noise_ratio, item[1].target_class, item[0]))
    with tqdm(total=len(ordered), desc=f"generating ({len(keyed) - len(todo)} already in store)",
              unit="img", disable=not progress or not ordered) as bar:
        for ratio in sorted({job.noise_ratio for _, job, _ in ordered}):
            group = [item for item in ordered if item[1].noise_ratio == ratio]
            for batch in claimed_batches(store, group, lambda item: item[0], batch_size):
                began = time.perf_counter()
                images = _generate_batch(generator, batch, class_names)
                seconds = (time.perf_counter() - began) / len(batch)
                for (key, job, spec), image in zip(batch, images):
                    store.put(key, image, manifest_row(generator, spec, job.source_path, seconds))
                bar.update(len(batch))
    return pd.DataFrame([store.row(key) for key, _, _ in keyed])


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


def check_class(class_name: str, class_names: dict[str, str] | None) -> str:
    """The display name of a class, or an error listing the closest known classes."""
    if class_names is None:
        return class_name
    if class_name not in class_names:
        close = difflib.get_close_matches(str(class_name), list(class_names), n=3)
        raise KeyError(f"unknown class {class_name!r}" + (f"; did you mean {close}?" if close else "")
                       + f" The dataset has {len(class_names)} classes (see its class_name column).")
    return class_names[class_name]


def _direct(generator: GenieGenerator, method: str, images, ids, source_class: str, target_class: str,
            noise_ratio: float, class_names, variant: int, output_type: str):
    """Jobs built and seeded exactly as `run_jobs` would, generated in batches, returned in order."""
    names = {target_class: check_class(target_class, class_names)}
    jobs = [Job(method, i, "", source_class, target_class, noise_ratio, variant) for i in ids]
    specs = [(None, job, {"seed": job_seed(generator.recipe, job)}) for job in jobs]
    size = generator.batch_size
    out = [_generate_batch(generator, specs[i:i + size], names, images and images[i:i + size], output_type)
           for i in range(0, len(specs), size)]
    return torch.cat(out) if output_type == "pt" else sum(out, [])


def genie(generator: GenieGenerator, sources, target_class: str, noise_ratio: float = 0.8,
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
    ids = list(source_ids) if source_ids is not None else [f"txt2img-{i}" for i in range(check_batch_size(count))]
    if source_ids is not None and len(ids) != count:
        raise ValueError(f"got {len(ids)} source ids for {count} images")
    return _direct(generator, "txt2img", None, ids, target_class, target_class, 1.0, class_names, variant,
                   output_type)


def noised_images(generator: GenieGenerator, image: Image.Image, seed: int, noise_ratios: Sequence[float]):
    """What the UNet starts from at each r, decoded to pixels: the source fading into noise."""
    latents = generator.encode([image])
    noise = generator.noise([seed])
    return [generator.decode(generator.noised(latents, noise, r)[2])[0] for r in noise_ratios]
