"""Training the companion model: the VAE first, then the UNet and text encoder jointly on pre-encoded latents.

Checkpoints are keyed by a hash of the size, the settings and the training images: a run resumes only
from a checkpoint made with the same ones (another profile never continues this one's training)."""
from __future__ import annotations

import collections
import copy
import json
import os
import platform
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel, compute_snr
from safetensors.torch import load_file, save
from transformers import CLIPTextModel

from .. import editing
from ..generator_pool import captioned_images
from ..openmoji import mirror_keeps_meaning
from ..pipeline import write_checksums
from ..profiles import resolve
from ..recipe import GENIE_NOISE_RATIO
from ..store import atomic_write
from ..training import fit, step_generator, tensor_digest
from .architecture import CompanionSize, build_parts, build_pipeline, noise_schedule
from .tokenizer import clip_tokenizer


@dataclass(frozen=True)
class TrainingSettings:
    """A profile's `[companion.training]` table. Steps are optimizer steps; batches are drawn per step from a
    seed, so a resumed run continues exactly where an uninterrupted one would be."""
    vae_steps: int = 700
    vae_batch_size: int = 32
    vae_learning_rate: float = 1e-3
    kl_weight: float = 1e-6
    unet_steps: int = 3000
    unet_batch_size: int = 64
    unet_learning_rate: float = 5e-4
    prompt_dropout: float = 0.1      # share of empty prompts, for classifier-free guidance
    snr_gamma: float = 5.0           # min-SNR loss weighting (Hang et al. 2023)
    ema_power: float = 0.75          # EMA warm-up: decay = 1 - (1 + step) ** -power, capped at 0.9999
    checkpoint_every: int = 100
    seed: int = 0
    sampling: str = "uniform"        # images per batch: "uniform", "sqrt" (class ~ sqrt of its size), "balanced"
    schedule_shift: float = 0.0      # log-SNR added to SD's schedule at every timestep (architecture.noise_schedule)
    zero_terminal_snr: bool = False  # pure noise at t = 999, then v-prediction
    flip: bool = False               # mirrored images too, where mirroring keeps the meaning (`mirror_keeps_meaning`)
    caption_templates: tuple[str, ...] = ()  # more captions besides the profile's prompt template, drawn at random
    unet_dropout: float = 0.0        # dropout in the UNet's residual blocks
    snapshots: bool = False          # keep the EMA weights of every checkpoint, to choose among them by copy rate
    renderings: tuple[str, ...] = ()  # other emoji styles of the same generator-pool emoji (emoji_styles.EMOJI_STYLES)
    style_captions: bool = False     # their captions name the style ("a photo of a twitter face smiling.")

    def __post_init__(self):
        object.__setattr__(self, "caption_templates", tuple(self.caption_templates))
        object.__setattr__(self, "renderings", tuple(self.renderings))

    @property
    def schedule(self) -> dict:
        return noise_schedule(self.schedule_shift, self.zero_terminal_snr)


def train_vae(images: torch.Tensor, size: CompanionSize, settings: TrainingSettings, workdir,
              device="cpu", progress: bool = True):
    """An AutoencoderKL (f = 4) on images in [-1, 1] (N, 3, H, W): L1 + MSE reconstruction + a small KL.

    Returns the VAE with `scaling_factor` set to 1 / std of the training latents (SD's convention)."""
    vae = build_parts(size, settings.seed)[0].to(device)

    def loss_fn(step):
        g = step_generator(settings.seed, 1, step)
        batch = images[torch.randint(len(images), (settings.vae_batch_size,), generator=g)].to(device)
        posterior = vae.encode(batch).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(device)
        reconstruction = vae.decode(latents).sample
        return (torch.nn.functional.l1_loss(reconstruction, batch) + torch.nn.functional.mse_loss(reconstruction, batch)
                + settings.kl_weight * posterior.kl().mean())

    fingerprint = {"size": asdict(size), "kl_weight": settings.kl_weight, "batch_size": settings.vae_batch_size,
                   "seed": settings.seed, "images": tensor_digest(images)}
    history = fit("vae", {"vae": vae}, list(vae.parameters()), loss_fn, settings.vae_steps,
                  settings.vae_learning_rate, settings.checkpoint_every, workdir, fingerprint, progress=progress)
    latents = encode_latents(vae, images, 1.0, device)
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae, history


@torch.inference_mode()
def encode_latents(vae, images: torch.Tensor, scaling_factor: float, device="cpu", batch_size: int = 128):
    """VAE posterior modes times `scaling_factor`, computed once: the UNet trains on these."""
    return torch.cat([vae.encode(images[i:i + batch_size].to(device)).latent_dist.mode().cpu() * scaling_factor
                      for i in range(0, len(images), batch_size)])


def sampling_weights(prompts: list[str], sampling: str) -> torch.Tensor:
    """Per-image sampling weights from the images' prompts (one prompt per class): "uniform" draws images
    uniformly (classes in proportion to their size), "sqrt" classes in proportion to the square root of their
    size, "balanced" every class equally often, so that the rare classes are learnt too."""
    counts = collections.Counter(prompts)
    power = {"uniform": 0.0, "sqrt": 0.5, "balanced": 1.0}
    if sampling not in power:
        raise ValueError(f"unknown sampling {sampling!r}; use one of {sorted(power)}")
    return torch.tensor([counts[p] ** -power[sampling] for p in prompts], dtype=torch.float64)


# Settings whose defaults change nothing: left out of a run's fingerprint while at their defaults, so that
# checkpoints made without them still resume; `snapshots` changes no weight and never counts.
LATER_SETTINGS = {"schedule_shift": 0.0, "zero_terminal_snr": False, "flip": False, "caption_templates": (),
                  "unet_dropout": 0.0, "renderings": (), "style_captions": False}


def fingerprint_settings(settings: TrainingSettings) -> dict:
    """The settings that decide a denoiser training's weights, as its checkpoint fingerprint holds them."""
    return {k: v for k, v in asdict(settings).items()
            if k != "snapshots" and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}


def train_denoiser(latents: torch.Tensor, prompts: list[str], size: CompanionSize, settings: TrainingSettings,
                   workdir, device="cpu", progress: bool = True, token_ids: torch.Tensor | None = None,
                   empty_ids: torch.Tensor | None = None, flipped: torch.Tensor | None = None, parts=None):
    """The UNet and the text encoder, jointly: from scratch, or from `parts` (vae, unet, text_encoder) to fine-tune.
    On the settings' noise schedule (SD v1.5's by default) with epsilon prediction, or v-prediction with zero
    terminal SNR; 10% empty prompts, min-SNR weighting, EMA weights. `token_ids` / `empty_ids` are the CLIP token
    ids of the prompts, (N, 77) or one caption set per template (T, N, 77), and of the empty prompt (tokenized here
    when not given). `flipped`: the latents of the mirrored images, NaN where mirroring changes the meaning; each
    draw of another image is mirrored with probability 1/2. Returns (unet, text_encoder, history)."""
    vae, unet, text_encoder = parts if parts is not None else build_parts(size, settings.seed)
    # Every dropout layer of the UNet (residual blocks, attention outputs, feed-forward layers) at unet_dropout;
    # the config's `dropout` records it, though diffusers rebuilds only the residual blocks' from it. Inactive in eval.
    for module in unet.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = settings.unet_dropout
    unet.register_to_config(dropout=settings.unet_dropout)
    unet, text_encoder = unet.to(device), text_encoder.to(device)
    if token_ids is None or empty_ids is None:
        token_ids, empty_ids = tokenize(prompts)
    captions = token_ids if token_ids.dim() == 3 else token_ids[None]
    noise_schedule = DDPMScheduler(**settings.schedule)
    velocity = noise_schedule.config.prediction_type == "v_prediction"
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    ema = EMAModel(parameters, decay=0.9999, use_ema_warmup=True, power=settings.ema_power,
                   foreach=torch.device(device).type == "cuda")
    weights = sampling_weights(prompts, settings.sampling)

    def loss_fn(step):
        g = step_generator(settings.seed, 2, step)
        if settings.sampling == "uniform":  # every prompt as often as the training data holds it
            index = torch.randint(len(latents), (settings.unet_batch_size,), generator=g)
        else:
            index = torch.multinomial(weights, settings.unet_batch_size, replacement=True, generator=g)
        clean = latents[index]
        if flipped is not None:  # the draws below only happen when flipping is on: old runs draw what they drew
            mirror = (torch.rand(len(index), generator=g) < 0.5) & ~flipped[index].isnan().flatten(1).any(1)
            clean = torch.where(mirror[:, None, None, None], flipped[index].nan_to_num(), clean)
        clean = clean.to(device)
        noise = torch.randn(clean.shape, generator=g).to(device)
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(index),), generator=g).to(device)
        if len(captions) > 1:
            tokens = captions[torch.randint(len(captions), (len(index),), generator=g), index].clone()
        else:
            tokens = captions[0, index].clone()
        tokens[torch.rand(len(index), generator=g) < settings.prompt_dropout] = empty_ids
        hidden = text_encoder(tokens.to(device))[0]
        prediction = unet(noise_schedule.add_noise(clean, noise, timesteps), timesteps, hidden).sample
        snr = compute_snr(noise_schedule, timesteps)
        if velocity:  # min-SNR-gamma in v's units (Hang et al. 2023); the pure-noise step (SNR 0) weighs 1
            target = noise_schedule.get_velocity(clean, noise, timesteps)
            weight = torch.where(snr == 0, 1.0, torch.clamp(snr, max=settings.snr_gamma) / (snr + 1))
        else:
            target, weight = noise, torch.clamp(snr, max=settings.snr_gamma) / snr
        return (weight * ((prediction - target) ** 2).mean(dim=(1, 2, 3))).mean()

    fingerprint = {"size": asdict(size), "settings": fingerprint_settings(settings),
                   "latents": tensor_digest(latents), "prompts": prompts}
    if parts is not None:  # a fine-tuning resumes only from a checkpoint of the same start
        fingerprint["start"] = tensor_digest(torch.cat([p.detach().cpu().flatten() for p in parameters]))
    names = [f"unet.{n}" for n, _ in unet.named_parameters()] + \
        [f"text_encoder.{n}" for n, _ in text_encoder.named_parameters()]

    def snapshot(path):
        state = {n: p.detach().to("cpu", torch.float16).contiguous() for n, p in zip(names, ema.shadow_params)}
        atomic_write(path, lambda f: f.write(save(state)))

    history = fit("denoiser", {"unet": unet, "text_encoder": text_encoder}, parameters, loss_fn,
                  settings.unet_steps, settings.unet_learning_rate, settings.checkpoint_every, workdir, fingerprint,
                  ema=ema, progress=progress, snapshot=snapshot if settings.snapshots else None)
    ema.copy_to(parameters)
    return unet, text_encoder, history


def tokenize(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts' CLIP token ids (N, 77) and the empty prompt's (77,), as SD's pipeline pads them."""
    tokenizer = clip_tokenizer()
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    return ids, empty[0]


def hardware(device) -> str:
    """The GPU's name, or the CPU's model and core count."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def pack_training_data(profile: dict, settings: dict | None = None) -> dict:
    """Everything the training needs, with no dataset or tokenizer left to load: the generator pool's pixels
    (uint8, N x 3 x H x W), prompts, CLIP token ids, and the profile's size and settings. Written with
    `write_pack`, it trains on any machine that has torch, diffusers and transformers (`train --pack`).
    `settings`: the training settings it carries (default: the profile's `[companion.training]`)."""
    spec = profile["companion"]
    settings = dict(spec["training"] if settings is None else settings)
    images, prompts, train = captioned_images(profile, settings.get("renderings", ()),
                                              settings.get("style_captions", False))
    token_ids, empty_ids = tokenize(prompts)
    templates = settings.get("caption_templates", [])
    caption_ids = torch.stack([token_ids] + [tokenize([t.format(n) for n in train.display_name])[0] for t in templates])
    return {"pixels": ((images + 1.0) * 127.5).round().to(torch.uint8), "prompts": prompts, "token_ids": token_ids,
            "empty_ids": empty_ids, "caption_ids": caption_ids,
            "flippable": torch.tensor([mirror_keeps_meaning(c, n) for c, n in zip(train.class_name, train.name)]),
            "profile": profile["name"], "classes": int(train.class_name.nunique()),
            "styles": {style: int(n) for style, n in train["style"].value_counts(sort=False).items()},
            "size": dict(spec["size"]), "training": settings}


def write_pack(pack: dict, path) -> Path:
    """The packed training data as one compressed .npz file (the emoji's white backgrounds compress well)."""
    path = Path(path)
    meta = {k: pack[k] for k in ("prompts", "profile", "classes", "styles", "size", "training") if k in pack}
    arrays = {"pixels": pack["pixels"].numpy(), "token_ids": pack["token_ids"].numpy(),
              "empty_ids": pack["empty_ids"].numpy(), "caption_ids": pack["caption_ids"].numpy(),
              "flippable": pack["flippable"].numpy(), "meta": np.array(json.dumps(meta))}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def read_pack(path) -> dict:
    """`write_pack`'s file back, or an error naming the file and the command that makes one."""
    remake = "make one with `python -m genie_utils.companion pack --pack FILE`"
    if not Path(path).is_file():
        raise FileNotFoundError(f"no training pack at {path}: {remake}")
    try:
        with np.load(path) as f:
            pack = {**json.loads(str(f["meta"])), **{key: torch.from_numpy(f[key]) for key in f.files if key != "meta"}}
        pack.setdefault("caption_ids", pack["token_ids"][None])  # a pack written before caption templates and flips
        pack.setdefault("flippable", torch.zeros(len(pack["pixels"]), dtype=torch.bool))
        return pack
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable training pack ({error}); {remake}") from error


def companion_size(size: dict) -> CompanionSize:
    """A profile's or record's `size` table (lists for tuples) as a CompanionSize."""
    return CompanionSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in size.items()})


def train_pack(pack: dict, workdir, device=None, progress: bool = True, time_budget: float | None = None,
               start: dict | None = None) -> dict:
    """Train the VAE, then the UNet and text encoder, on packed data. Returns {"parts": (vae, unet,
    text_encoder) on the CPU in float32, "histories": {...}, "record": {...}}. Resumes from `workdir`'s
    checkpoints when they were made with the same size, settings and images.

    `start`: a trained model ({"parts", "record"}, e.g. `read_model`) to fine-tune: its VAE is kept as it is, its
    UNet and text encoder train further under the pack's settings (which may change the noise schedule).
    `time_budget` (seconds, for a GPU's limited time): after the VAE, time a few denoiser steps and lower `unet_steps` to
    what fits the rest of the budget (a multiple of 500; never raised). The record holds the steps run."""
    size = companion_size(pack["size"])
    settings = TrainingSettings(**pack["training"])
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # TF32 matrix products: the model is small, the step count large
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(settings.seed)
    images = pack["pixels"].float() / 127.5 - 1.0  # the same arithmetic as images.images_tensor
    began = time.perf_counter()
    if start is not None:  # fine-tuning: the model's own VAE, no VAE training
        vae, vae_history = start["parts"][0].to(device), [{"step": 0, "loss": float("nan"), "seconds": 0.0}]
    else:
        vae, vae_history = train_vae(images, size, settings, workdir, device, progress)
    parts = None if start is None else start["parts"]
    latents = encode_latents(vae, images, vae.config.scaling_factor, device)
    flipped = None
    if settings.flip:
        mirrored = encode_latents(vae, images.flip(-1), vae.config.scaling_factor, device)
        flipped = torch.where(pack["flippable"][:, None, None, None], mirrored, float("nan"))
    captions = pack["caption_ids"]
    denoiser = (latents, pack["prompts"], size)
    if time_budget is not None:
        per_step = seconds_per_denoiser_step(*denoiser, settings, device, captions, pack["empty_ids"], flipped=flipped,
                                             parts=copy.deepcopy(parts))
        left = time_budget - (time.perf_counter() - began)
        settings = replace(settings, unet_steps=steps_within_budget(settings.unet_steps, left, per_step))
        print(f"denoiser: {per_step * 1000:.1f} ms/step, {left:.0f} s left: {settings.unet_steps} steps")
    unet, text_encoder, history = train_denoiser(*denoiser, settings, workdir, device, progress, captions,
                                                 pack["empty_ids"], flipped, parts)
    parts = tuple(module.to("cpu").eval() for module in (vae, unet, text_encoder))
    record = {
        "profile": pack["profile"], "training_images": len(images), "classes": pack["classes"],
        "pool": "generator", "styles": pack.get("styles"), "size": asdict(size), "settings": asdict(settings),
        "vae_seconds": round(vae_history[-1]["seconds"], 1), "denoiser_seconds": round(history[-1]["seconds"], 1),
        "session_seconds": round(time.perf_counter() - began, 1), "hardware": hardware(device),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "vae_scaling_factor": vae.config.scaling_factor, "schedule": settings.schedule,
        "parameters": {name: sum(p.numel() for p in part.parameters())
                       for name, part in zip(PARTS, parts)},
    }
    histories = {"vae": vae_history, "denoiser": history}
    if start is not None:  # what the fine-tuning started from, for the model card; its loss curves stay
        record["fine_tuned_from"] = start["record"]
        histories = {**start["histories"], "finetune": history}
    return {"parts": parts, "histories": histories, "record": record}


PARTS = ("vae", "unet", "text_encoder")


def read_model(folder) -> dict:
    """A companion model folder (`assemble_companion`'s) as {"parts": (vae, unet, text_encoder) in float32 on the CPU,
    "histories", "record"}: what a fine-tuning starts from."""
    folder = Path(folder)
    if not (folder / "model_index.json").is_file() or not (folder / "training.json").is_file():
        raise FileNotFoundError(f"{folder} is not a companion model folder (no model_index.json or training.json); "
                                "give the folder to fine-tune from, e.g. models/genie-companion")
    parts = (AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32),
             UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32),
             CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.float32))
    histories = {path.stem.removeprefix("training_loss_"): pd.read_csv(path).drop(columns="stage").to_dict("records")
                 for path in sorted(folder.glob("training_loss_*.csv"))}
    return {"parts": parts, "histories": histories, "record": json.loads((folder / "training.json").read_text())}


def steps_within_budget(steps: int, seconds_left: float, seconds_per_step: float, multiple: int = 500) -> int:
    """`steps`, or fewer when they do not fit in 90% of `seconds_left`: the most that fit, a multiple of
    `multiple` (a round number for the profile). Never more than `steps`; an error when not even `multiple` fit."""
    affordable = int(0.9 * seconds_left / seconds_per_step)
    if affordable >= steps:
        return steps
    if affordable < multiple:
        raise RuntimeError(f"the time budget leaves {seconds_left:.0f} s, under {multiple} denoiser steps at "
                           f"{seconds_per_step:.3f} s a step: give a larger --time-budget")
    return affordable // multiple * multiple


def seconds_per_denoiser_step(latents, prompts, size, settings, device, token_ids, empty_ids, steps: int = 40,
                              flipped=None, parts=None):
    """Seconds per denoiser training step on `device`, timed on a throwaway run (after 10 warm-up steps)."""
    trial = replace(settings, unet_steps=steps, checkpoint_every=10 ** 9)
    with tempfile.TemporaryDirectory() as scratch:
        history = train_denoiser(latents, prompts, size, trial, scratch, device, False, token_ids, empty_ids,
                                 flipped, parts)[2]
    return (history[-2]["seconds"] - history[9]["seconds"]) / (steps - 11)


def write_weights(trained: dict, folder) -> Path:
    """The trained parts as half-precision safetensors (one file per part), their histories and the record:
    what `assemble_companion` turns into the model folder (the output of `train --pack` on a GPU machine)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in zip(PARTS, trained["parts"]):
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in part.state_dict().items()}
        atomic_write(folder / f"{name}.safetensors", lambda f, state=state: f.write(save(state)))
    (folder / "histories.json").write_text(json.dumps(trained["histories"]) + "\n")
    (folder / "training.json").write_text(json.dumps(trained["record"], indent=2) + "\n")
    return folder


def read_weights(folder) -> dict:
    """`write_weights`' folder back as {"parts", "histories", "record"} (parts in float32, on the CPU)."""
    folder = Path(folder)
    missing = [f"{n}.safetensors" for n in PARTS if not (folder / f"{n}.safetensors").is_file()]
    if missing or not (folder / "training.json").is_file():
        raise FileNotFoundError(f"{folder} is not a trained-weights folder (missing {missing or 'training.json'}); "
                                f"make one with `python -m genie_utils.companion train --pack FILE --weights DIR`")
    record = json.loads((folder / "training.json").read_text())
    size = companion_size(record["size"])
    parts = build_parts(size, record["settings"]["seed"])
    for name, part in zip(PARTS, parts):
        part.load_state_dict({k: v.float() for k, v in load_file(folder / f"{name}.safetensors").items()})
        part.eval()
    if "vae_scaling_factor" in record:
        parts[0].register_to_config(scaling_factor=record["vae_scaling_factor"])
    return {"parts": parts, "histories": json.loads((folder / "histories.json").read_text()), "record": record}


def assemble_companion(trained: dict, out) -> Path:
    """Save trained parts as a diffusers folder in half precision (`save_pretrained`, shards under 16 MB),
    with the loss histories and the training record beside it."""
    vae, unet, text_encoder = trained["parts"]
    for module in (vae, unet, text_encoder):
        module.to("cpu", torch.float16)  # shipped in half precision; loaders upcast on CPU
    settings = trained["record"]["settings"]
    pipe = build_pipeline(parts=(vae, unet, text_encoder),
                          schedule=noise_schedule(settings.get("schedule_shift", 0.0), settings.get("zero_terminal_snr", False)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True, max_shard_size="15MB")
    write_checksums(out)  # loading checks them
    # Weights stay half precision on disk, but the text encoder's config asks for float32, as diffusers loads the
    # UNet and VAE by default: a stock from_pretrained without a dtype then gives one dtype everywhere.
    config = out / "text_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "dtype": "float32"}, indent=2) + "\n")
    for part in ("unet", "vae"):  # parts loaded with from_pretrained (a fine-tuning's start) remember where from
        config = out / part / "config.json"
        values = json.loads(config.read_text())
        if values.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    for stage, history in trained["histories"].items():
        if not history:
            continue
        pd.DataFrame(history).assign(stage=stage).to_csv(out / f"training_loss_{stage}.csv", index=False)
    (out / "training.json").write_text(json.dumps(trained["record"], indent=2) + "\n")
    return out


def train_companion(profile: dict, out=None, workdir=None, device=None, progress: bool = True,
                    time_budget: float | None = None):
    """Train the companion model from scratch on the profile's generator pool and save it as a diffusers folder
    at the profile's `[companion] output` (the smoke profile writes under results/, never over the shipped
    model). Resumes from `workdir`'s checkpoints when they were made with the same size, settings and images."""
    spec = profile["companion"]
    workdir = workdir or resolve(profile, spec["workdir"])
    pack = pack_training_data(profile)
    trained = train_pack(pack, workdir, device, progress, time_budget)
    if "finetune" in spec:
        trained = finetune_companion(profile, trained, workdir, device, progress)
    return assemble_companion(trained, out or resolve(profile, spec["output"]))


def finetune_settings(profile: dict) -> dict:
    """The fine-tuning's settings: the profile's `[companion.training]` with `[companion.finetune]` over it."""
    spec = profile["companion"]
    if "finetune" not in spec:
        raise ValueError(f"profile {profile['name']!r} has no [companion.finetune] table: nothing to fine-tune")
    return {**spec["training"], **spec["finetune"]}


def finetune_companion(profile: dict, start: dict, workdir=None, device=None, progress: bool = True) -> dict:
    """Train `start` ({"parts", "histories", "record"}, from `train_pack` or `read_model`) further under the
    profile's fine-tuning settings (`finetune_settings`); resumes from `workdir`'s checkpoints."""
    pack = pack_training_data(profile, finetune_settings(profile))
    workdir = Path(workdir or resolve(profile, profile["companion"]["workdir"])) / "finetune"
    trained = train_pack(pack, workdir, device, progress, start=start)
    if pack["training"].get("snapshots"):
        trained = choose_snapshot(profile, trained, workdir, progress=progress)
    return trained


def with_snapshot(parts: tuple, path) -> tuple:
    """Copies of (vae, unet, text_encoder) with the UNet's and text encoder's weights of a snapshot file."""
    vae, unet, text_encoder = (copy.deepcopy(part) for part in parts)
    state = load_file(path)
    for prefix, module in (("unet.", unet), ("text_encoder.", text_encoder)):
        weights = {k.removeprefix(prefix): v.float() for k, v in state.items() if k.startswith(prefix)}
        missing = set(dict(module.named_parameters())) - set(weights)
        if missing:
            raise ValueError(f"snapshot {path} lacks {len(missing)} weights of the {prefix[:-1]}, e.g. {sorted(missing)[0]}")
        module.load_state_dict(weights, strict=False)
    return vae, unet, text_encoder


def snapshots_present(trained: dict, folder) -> dict:
    """`trained` with only the EMA snapshots whose files are in `folder` left to choose from, and the last one (the
    trained weights themselves): for weights trained elsewhere, of whose snapshots only some were brought back."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no snapshot folder {folder}: give the folder the snapshot files were copied into")
    stage = "finetune" if "finetune" in trained["histories"] else "denoiser"
    history = trained["histories"][stage]
    kept = [{k: v for k, v in entry.items() if k != "snapshot" or entry is history[-1] or (folder / v).is_file()}
            for entry in history]
    absent = [entry["step"] for entry, now in zip(history, kept) if "snapshot" in entry and "snapshot" not in now]
    if absent:
        print(f"snapshots not in {folder}, left out of the choice: steps {absent}")
    return {**trained, "histories": {**trained["histories"], stage: kept}}


def choose_snapshot(profile: dict, trained: dict, workdir, ratio: float = GENIE_NOISE_RATIO, per_class: int = 1,
                    seed: int = 1, progress: bool = True) -> dict:
    """Choose among the EMA snapshots of the last denoiser training (history entries naming a `snapshot` file in
    `workdir`; the last one's weights are the trained parts, used when its file is absent) by the editing benchmark
    at the profile's recipe, not by loss: the lowest copy rate at r = `ratio` among the snapshots whose P(target)
    there reaches the target (the highest P(target) if none does). Measured on `per_class` pairs per target class
    drawn with `seed` (other pairs than the model card's).

    Returns `trained` with the chosen weights, and the comparison in its record's `snapshot_choice`."""
    stage = "finetune" if "finetune" in trained["histories"] else "denoiser"
    history = trained["histories"][stage]
    entries = [entry for entry in history if isinstance(entry.get("snapshot"), str)]
    if not entries:
        return trained
    own = editing.profile_settings(profile)[-1]
    rows, candidates = [], {}
    for entry in entries:
        path = Path(workdir) / entry["snapshot"]
        if entry is history[-1] and not path.is_file():  # the last snapshot is the EMA the trained parts hold
            parts = tuple(copy.deepcopy(part) for part in trained["parts"])
        else:
            parts = with_snapshot(trained["parts"], path)
        candidates[entry["step"]] = parts
        with tempfile.TemporaryDirectory() as scratch:
            folder = assemble_companion({**trained, "parts": tuple(copy.deepcopy(p) for p in parts)},
                                        Path(scratch) / "model")
            (folder / "training.json").unlink(missing_ok=True)  # its timings would give these weights another store key
            summary = editing.benchmark(profile, [own], per_class, (ratio,), seed, model=folder, progress=progress)[0]
        at = summary[(summary.group == "all classes") & np.isclose(summary.noise_ratio, ratio)].iloc[0]
        rows.append({"step": entry["step"], "copy_rate": round(float(at.copy_rate), 4),
                     "p_target": round(float(at.p_target), 4),
                     "hard_negative_rate": round(float(at.hard_negative_rate), 4)})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    reaching = table[table.p_target >= editing.TARGETS["p_target_at_0.8"]]
    chosen = int(reaching.sort_values(["copy_rate", "step"]).step.iloc[0] if len(reaching)
                 else table.sort_values("p_target", ascending=False).step.iloc[0])
    record = {**trained["record"], "snapshot_choice": {"ratio": ratio, "pairs_per_class": per_class, "seed": seed,
                                                       "setting": own.label, "chosen_step": chosen, "snapshots": rows}}
    return {**trained, "parts": candidates[chosen], "record": record}
