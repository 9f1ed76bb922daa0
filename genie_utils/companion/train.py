"""Training the companion model: the VAE first, then the UNet and text encoder jointly on pre-encoded latents.

Checkpoints are keyed by a hash of the size, the settings and the training images: a run resumes only
from a checkpoint made with the same ones (another profile never continues this one's training)."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from ..data import images_tensor, load_dataset
from ..profiles import resolve
from ..splits import GENERATOR, pool_images
from ..store import atomic_write
from ..training import fit, step_generator, tensor_digest
from .architecture import SD15_SCHEDULE, CompanionSize, build_parts, build_pipeline
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
    import collections

    counts = collections.Counter(prompts)
    power = {"uniform": 0.0, "sqrt": 0.5, "balanced": 1.0}
    if sampling not in power:
        raise ValueError(f"unknown sampling {sampling!r}; use one of {sorted(power)}")
    return torch.tensor([counts[p] ** -power[sampling] for p in prompts], dtype=torch.float64)


def train_denoiser(latents: torch.Tensor, prompts: list[str], size: CompanionSize, settings: TrainingSettings,
                   workdir, device="cpu", progress: bool = True, token_ids: torch.Tensor | None = None,
                   empty_ids: torch.Tensor | None = None):
    """The UNet and the text encoder, jointly from scratch: epsilon prediction on SD v1.5's noise schedule,
    10% empty prompts, min-SNR weighting, EMA weights. `token_ids` / `empty_ids` are the prompts' and the empty
    prompt's CLIP token ids (tokenized here when not given). Returns (unet, text_encoder, history)."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel, compute_snr

    vae, unet, text_encoder = build_parts(size, settings.seed)
    unet, text_encoder = unet.to(device), text_encoder.to(device)
    if token_ids is None or empty_ids is None:
        token_ids, empty_ids = tokenize(prompts)
    noise_schedule = DDPMScheduler(**SD15_SCHEDULE)
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    ema = EMAModel(parameters, decay=0.9999, use_ema_warmup=True, power=settings.ema_power,
                   foreach=torch.device(device).type == "cuda")
    weights = sampling_weights(prompts, settings.sampling)

    def loss_fn(step):
        g = step_generator(settings.seed, 2, step)
        if settings.sampling == "uniform":  # the draw the first shipped model was trained with
            index = torch.randint(len(latents), (settings.unet_batch_size,), generator=g)
        else:
            index = torch.multinomial(weights, settings.unet_batch_size, replacement=True, generator=g)
        clean = latents[index].to(device)
        noise = torch.randn(clean.shape, generator=g).to(device)
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(index),), generator=g).to(device)
        tokens = token_ids[index].clone()
        tokens[torch.rand(len(index), generator=g) < settings.prompt_dropout] = empty_ids
        hidden = text_encoder(tokens.to(device))[0]
        prediction = unet(noise_schedule.add_noise(clean, noise, timesteps), timesteps, hidden).sample
        snr = compute_snr(noise_schedule, timesteps)
        weight = torch.clamp(snr, max=settings.snr_gamma) / snr
        return (weight * ((prediction - noise) ** 2).mean(dim=(1, 2, 3))).mean()

    fingerprint = {"size": asdict(size), "settings": asdict(settings), "latents": tensor_digest(latents),
                   "prompts": prompts}
    history = fit("denoiser", {"unet": unet, "text_encoder": text_encoder}, parameters, loss_fn,
                  settings.unet_steps, settings.unet_learning_rate, settings.checkpoint_every, workdir, fingerprint,
                  ema=ema, progress=progress)
    ema.copy_to(parameters)
    return unet, text_encoder, history


def tokenize(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts' CLIP token ids (N, 77) and the empty prompt's (77,), as SD's pipeline pads them."""
    tokenizer = clip_tokenizer()
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    return ids, empty[0]


def training_images(profile: dict):
    """The generator pool's images as a tensor in [-1, 1] (N, 3, H, W), their prompts, and their rows."""
    train = pool_images(profile, load_dataset(profile, progress=False), GENERATOR)
    template = profile["generation"]["prompt_template"]
    return images_tensor(train.path), [template.format(name) for name in train.display_name], train


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


def pack_training_data(profile: dict) -> dict:
    """Everything the training needs, with no dataset or tokenizer left to load: the generator pool's pixels
    (uint8, N x 3 x H x W), prompts, CLIP token ids, and the profile's size and settings. Written with
    `write_pack`, it trains on any machine that has torch, diffusers and transformers (`train --pack`)."""
    spec = profile["companion"]
    images, prompts, train = training_images(profile)
    token_ids, empty_ids = tokenize(prompts)
    return {"pixels": ((images + 1.0) * 127.5).round().to(torch.uint8), "prompts": prompts, "token_ids": token_ids,
            "empty_ids": empty_ids, "profile": profile["name"], "classes": int(train.class_name.nunique()),
            "size": dict(spec["size"]), "training": dict(spec["training"])}


def write_pack(pack: dict, path) -> Path:
    """The packed training data as one compressed .npz file (the emoji's white backgrounds compress well)."""
    import numpy as np

    path = Path(path)
    meta = {k: pack[k] for k in ("prompts", "profile", "classes", "size", "training")}
    arrays = {"pixels": pack["pixels"].numpy(), "token_ids": pack["token_ids"].numpy(),
              "empty_ids": pack["empty_ids"].numpy(), "meta": np.array(json.dumps(meta))}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def read_pack(path) -> dict:
    """`write_pack`'s file back, or an error naming the file and the command that makes one."""
    import zipfile

    import numpy as np

    remake = "make one with `python -m genie_utils.companion pack --pack FILE`"
    if not Path(path).is_file():
        raise FileNotFoundError(f"no training pack at {path}: {remake}")
    try:
        with np.load(path) as f:
            return {**json.loads(str(f["meta"])), "pixels": torch.from_numpy(f["pixels"]),
                    "token_ids": torch.from_numpy(f["token_ids"]), "empty_ids": torch.from_numpy(f["empty_ids"])}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable training pack ({error}); {remake}") from error


def companion_size(size: dict) -> CompanionSize:
    """A profile's or record's `size` table (lists for tuples) as a CompanionSize."""
    return CompanionSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in size.items()})


def train_pack(pack: dict, workdir, device=None, progress: bool = True, time_budget: float | None = None) -> dict:
    """Train the VAE, then the UNet and text encoder, on packed data. Returns {"parts": (vae, unet,
    text_encoder) on the CPU in float32, "histories": {...}, "record": {...}}. Resumes from `workdir`'s
    checkpoints when they were made with the same size, settings and images.

    `time_budget` (seconds, for a lent GPU): after the VAE, time a few denoiser steps and lower `unet_steps` to
    what fits the rest of the budget (a multiple of 500; never raised). The record holds the steps run."""
    size = companion_size(pack["size"])
    settings = TrainingSettings(**pack["training"])
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # TF32 matrix products: the model is small, the step count large
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(settings.seed)
    images = pack["pixels"].float() / 127.5 - 1.0  # the same arithmetic as data.images_tensor
    began = time.perf_counter()
    vae, vae_history = train_vae(images, size, settings, workdir, device, progress)
    latents = encode_latents(vae, images, vae.config.scaling_factor, device)
    denoiser = (latents, pack["prompts"], size)
    if time_budget is not None:
        per_step = seconds_per_denoiser_step(*denoiser, settings, device, pack["token_ids"], pack["empty_ids"])
        left = time_budget - (time.perf_counter() - began)
        settings = replace(settings, unet_steps=steps_within_budget(settings.unet_steps, left, per_step))
        print(f"denoiser: {per_step * 1000:.1f} ms/step, {left:.0f} s left: {settings.unet_steps} steps")
    unet, text_encoder, history = train_denoiser(*denoiser, settings, workdir, device, progress,
                                                 pack["token_ids"], pack["empty_ids"])
    parts = tuple(module.to("cpu").eval() for module in (vae, unet, text_encoder))
    record = {
        "profile": pack["profile"], "training_images": len(images), "classes": pack["classes"],
        "pool": "generator", "size": asdict(size), "settings": asdict(settings),
        "vae_seconds": round(vae_history[-1]["seconds"], 1), "denoiser_seconds": round(history[-1]["seconds"], 1),
        "session_seconds": round(time.perf_counter() - began, 1), "hardware": hardware(device),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "vae_scaling_factor": vae.config.scaling_factor,
        "parameters": {name: sum(p.numel() for p in part.parameters())
                       for name, part in zip(PARTS, parts)},
    }
    return {"parts": parts, "histories": {"vae": vae_history, "denoiser": history}, "record": record}


PARTS = ("vae", "unet", "text_encoder")


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


def seconds_per_denoiser_step(latents, prompts, size, settings, device, token_ids, empty_ids, steps: int = 40):
    """Seconds per denoiser training step on `device`, timed on a throwaway run (after 10 warm-up steps)."""
    import tempfile

    trial = replace(settings, unet_steps=steps, checkpoint_every=10 ** 9)
    with tempfile.TemporaryDirectory() as scratch:
        history = train_denoiser(latents, prompts, size, trial, scratch, device, False, token_ids, empty_ids)[2]
    return (history[-2]["seconds"] - history[9]["seconds"]) / (steps - 11)


def write_weights(trained: dict, folder) -> Path:
    """The trained parts as half-precision safetensors (one file per part), their histories and the record:
    what `assemble_companion` turns into the model folder (the output of `train --pack` on a GPU machine)."""
    from safetensors.torch import save

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
    from safetensors.torch import load_file

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
    pipe = build_pipeline(parts=(vae, unet, text_encoder))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True, max_shard_size="15MB")
    # Weights stay half precision on disk, but the text encoder's config asks for float32, as diffusers loads the
    # UNet and VAE by default: a stock from_pretrained without a dtype then gives one dtype everywhere.
    config = out / "text_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "dtype": "float32"}, indent=2) + "\n")
    for stage, history in trained["histories"].items():
        pd.DataFrame(history).assign(stage=stage).to_csv(out / f"training_loss_{stage}.csv", index=False)
    (out / "training.json").write_text(json.dumps(trained["record"], indent=2) + "\n")
    return out


def train_companion(profile: dict, out=None, workdir=None, device=None, progress: bool = True,
                    time_budget: float | None = None):
    """Train the companion model from scratch on the profile's generator pool and save it as a diffusers folder
    at the profile's `[companion] output` (the smoke profile writes under results/, never over the shipped
    model). Resumes from `workdir`'s checkpoints when they were made with the same size, settings and images."""
    spec = profile["companion"]
    trained = train_pack(pack_training_data(profile), workdir or resolve(profile, spec["workdir"]), device, progress,
                         time_budget)
    return assemble_companion(trained, out or resolve(profile, spec["output"]))
