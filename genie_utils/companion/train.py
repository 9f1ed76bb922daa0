"""Training the companion model: the VAE first, then the UNet and text encoder jointly on pre-encoded latents.

Checkpoints are keyed by a hash of the size, the settings and the training images: a run resumes only
from a checkpoint made with the same ones (another profile never continues this one's training)."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from ..data import images_tensor, load_dataset
from ..profiles import resolve
from ..splits import GENERATOR, pool_images
from ..training import fit, step_generator, tensor_digest
from .architecture import SD15_SCHEDULE, CompanionSize, build_pipeline


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


def train_vae(images: torch.Tensor, size: CompanionSize, settings: TrainingSettings, workdir,
              device="cpu", progress: bool = True):
    """An AutoencoderKL (f = 4) on images in [-1, 1] (N, 3, H, W): L1 + MSE reconstruction + a small KL.

    Returns the VAE with `scaling_factor` set to 1 / std of the training latents (SD's convention)."""
    vae = build_pipeline(size, settings.seed).vae.to(device)

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


def train_denoiser(latents: torch.Tensor, prompts: list[str], size: CompanionSize, settings: TrainingSettings,
                   workdir, device="cpu", progress: bool = True):
    """The UNet and the text encoder, jointly from scratch: epsilon prediction on SD v1.5's noise schedule,
    10% empty prompts, min-SNR weighting, EMA weights. Returns (unet, text_encoder, tokenizer, history)."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel, compute_snr

    parts = build_pipeline(size, settings.seed)
    unet, text_encoder, tokenizer = parts.unet.to(device), parts.text_encoder.to(device), parts.tokenizer
    noise_schedule = DDPMScheduler(**SD15_SCHEDULE)
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    ema = EMAModel(parameters, decay=0.9999, use_ema_warmup=True, power=settings.ema_power)

    def loss_fn(step):
        g = step_generator(settings.seed, 2, step)
        index = torch.randint(len(latents), (settings.unet_batch_size,), generator=g)
        clean = latents[index].to(device)
        noise = torch.randn(clean.shape, generator=g).to(device)
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(index),), generator=g).to(device)
        tokens = ids[index].clone()
        tokens[torch.rand(len(index), generator=g) < settings.prompt_dropout] = empty[0]
        hidden = text_encoder(tokens.to(device))[0]
        prediction = unet(noise_schedule.add_noise(clean, noise, timesteps), timesteps, hidden).sample
        snr = compute_snr(noise_schedule, timesteps)
        weight = torch.clamp(snr, max=settings.snr_gamma) / snr
        return (weight * ((prediction - noise) ** 2).mean(dim=(1, 2, 3))).mean()

    fingerprint = {"size": asdict(size), "settings": asdict(settings), "latents": tensor_digest(latents),
                   "prompts": prompts}
    history = fit("denoiser", {"unet": unet, "text_encoder": text_encoder}, parameters, loss_fn,
                  settings.unet_steps, settings.unet_learning_rate, settings.checkpoint_every, workdir, fingerprint,
                  ema=ema,
                  progress=progress)
    ema.copy_to(parameters)
    return unet, text_encoder, tokenizer, history


def training_images(profile: dict):
    """The generator pool's images as a tensor in [-1, 1] (N, 3, H, W), their prompts, and their rows."""
    train = pool_images(profile, load_dataset(profile, progress=False), GENERATOR)
    template = profile["generation"]["prompt_template"]
    return images_tensor(train.path), [template.format(name) for name in train.display_name], train


def _hardware(device) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def train_companion(profile: dict, out=None, workdir=None, device=None, progress: bool = True):
    """Train the companion model from scratch on the profile's generator pool and save it as a diffusers
    folder in half precision (`save_pretrained`, shards under 16 MB) at the profile's `[companion] output`
    (the smoke profile writes under results/, never over the shipped model). Resumes from `workdir`'s
    checkpoints when they were made with the same size, settings and images."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

    spec = profile["companion"]
    size = CompanionSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["size"].items()})
    settings = TrainingSettings(**spec["training"])
    out = Path(out) if out else resolve(profile, spec["output"])
    workdir = Path(workdir) if workdir else resolve(profile, spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed)

    images, prompts, train = training_images(profile)
    began = time.perf_counter()
    vae, vae_history = train_vae(images, size, settings, workdir, device, progress)
    latents = encode_latents(vae, images, vae.config.scaling_factor, device)
    unet, text_encoder, tokenizer, history = train_denoiser(latents, prompts, size, settings, workdir, device, progress)
    scheduler = DPMSolverMultistepScheduler(**SD15_SCHEDULE, algorithm_type="dpmsolver++", solver_order=2)
    for module in (vae, unet, text_encoder):
        module.to("cpu", torch.float16)  # shipped in half precision; loaders upcast on CPU
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True, max_shard_size="15MB")
    pd.DataFrame(vae_history).assign(stage="vae").to_csv(out / "training_loss_vae.csv", index=False)
    pd.DataFrame(history).assign(stage="denoiser").to_csv(out / "training_loss_denoiser.csv", index=False)
    record = {
        "profile": profile["name"], "training_images": len(train), "classes": int(train.class_name.nunique()),
        "pool": "generator", "size": asdict(size), "settings": asdict(settings),
        "vae_seconds": round(vae_history[-1]["seconds"], 1), "denoiser_seconds": round(history[-1]["seconds"], 1),
        "session_seconds": round(time.perf_counter() - began, 1), "hardware": _hardware(device),
        "torch_threads": torch.get_num_threads(), "vae_scaling_factor": vae.config.scaling_factor,
        "parameters": {name: sum(p.numel() for p in getattr(pipe, name).parameters())
                       for name in ("unet", "vae", "text_encoder")},
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return out
