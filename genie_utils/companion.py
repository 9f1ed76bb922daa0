"""The companion model: a small Stable-Diffusion-style pipeline that loads exactly like SD v1.5.

This module builds its parts (CLIP BPE tokenizer from the vocabulary shipped in open-clip-torch, a
CLIP text encoder, a VAE and a cross-attention UNet, SD's noise schedule). Random-weight builds serve
the tests; training them into the shipped model is issue [B].
"""
from __future__ import annotations

import gzip
import importlib.resources
from dataclasses import asdict, dataclass

import torch

from .training import fit, step_generator

# SD v1.5's noise schedule; the scheduler is DPM-Solver++ as in GeNIe's official code.
SD15_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                     steps_offset=1, prediction_type="epsilon")
CLIP_MERGES = 49152 - 256 - 2  # CLIP's BPE uses the first 48,894 merges of the file


def clip_tokenizer(model_max_length: int = 77):
    """SD v1.5's tokenizer, rebuilt offline from open-clip-torch's `bpe_simple_vocab_16e6.txt.gz`.

    "a photo of a dog." -> [49406, 320, 1125, 539, 320, 1929, 269, 49407], as in SD v1.5.
    """
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    path = importlib.resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(str(path), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1:CLIP_MERGES + 1]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)},
                         merges=[tuple(m.split()) for m in merges], model_max_length=model_max_length)


@dataclass(frozen=True)
class CompanionSize:
    """Widths of the parts. `vae_channels` has one entry per resolution level: 3 levels = 4x downsampling."""
    unet_channels: tuple[int, ...] = (32, 64)
    unet_layers_per_block: int = 1
    attention_levels: tuple[int, ...] = (0,)   # UNet levels with cross-attention to the prompt
    attention_head_dim: int = 8
    vae_channels: tuple[int, ...] = (16, 32, 32)
    latent_channels: int = 4
    text_width: int = 32
    text_layers: int = 2
    text_heads: int = 4
    image_size: int = 64
    vae_layers_per_block: int = 1
    vae_scaling_factor: float = 0.18215


TINY = CompanionSize()
# The shipped model: 64x64 images, 16x16x4 latents. UNet 6.7M parameters (attention at 8x8 and 4x4), VAE
# about 1M, text encoder 6.7M (mostly its 49,408-token embedding): about 29 MB in half precision.
COMPANION = CompanionSize(unet_channels=(64, 128, 128), unet_layers_per_block=1, attention_levels=(1, 2),
                          attention_head_dim=8, vae_channels=(32, 64, 64), text_width=128, text_layers=3,
                          text_heads=4)


def build_pipeline(size: CompanionSize = TINY, seed: int = 0):
    """A random-weight StableDiffusionImg2ImgPipeline with SD v1.5's structure at `size`."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    levels = len(size.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=size.latent_channels,
        block_out_channels=size.vae_channels, layers_per_block=size.vae_layers_per_block,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        norm_num_groups=min(min(size.vae_channels), 32) // 2, sample_size=size.image_size,
        scaling_factor=size.vae_scaling_factor)
    latent_size = size.image_size // 2 ** (levels - 1)
    blocks = len(size.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=latent_size, in_channels=size.latent_channels, out_channels=size.latent_channels,
        block_out_channels=size.unet_channels, layers_per_block=size.unet_layers_per_block,
        down_block_types=tuple("CrossAttnDownBlock2D" if i in size.attention_levels else "DownBlock2D"
                               for i in range(blocks)),
        up_block_types=tuple("CrossAttnUpBlock2D" if blocks - 1 - i in size.attention_levels else "UpBlock2D"
                             for i in range(blocks)),
        cross_attention_dim=size.text_width, attention_head_dim=size.attention_head_dim,
        norm_num_groups=min(size.unet_channels) // 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=size.text_width, intermediate_size=4 * size.text_width,
        num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads, max_position_embeddings=77,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    scheduler = DPMSolverMultistepScheduler(**SD15_SCHEDULE, algorithm_type="dpmsolver++", solver_order=2)
    return StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


# --------------------------------------------------------------------------------------------------
# Training: the VAE first, then the UNet and text encoder jointly on pre-encoded latents.


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

    history = fit("vae", {"vae": vae}, list(vae.parameters()), loss_fn, settings.vae_steps,
                  settings.vae_learning_rate, settings.checkpoint_every, workdir, progress=progress)
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

    history = fit("denoiser", {"unet": unet, "text_encoder": text_encoder}, parameters, loss_fn,
                  settings.unet_steps, settings.unet_learning_rate, settings.checkpoint_every, workdir, ema=ema,
                  progress=progress)
    ema.copy_to(parameters)
    return unet, text_encoder, tokenizer, history


def training_images(profile: dict):
    """The generator pool's images as a tensor in [-1, 1] (N, 3, H, W), their prompts, and their rows."""
    from .data import images_tensor, load_dataset
    from .splits import GENERATOR, pool_images

    train = pool_images(profile, load_dataset(profile, progress=False), GENERATOR)
    template = profile["generation"]["prompt_template"]
    return images_tensor(train.path), [template.format(name) for name in train.display_name], train


def _hardware(device) -> str:
    import os
    import platform
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
    folder in half precision (`save_pretrained`, shards under 16 MB). Resumes from `workdir`'s checkpoints."""
    import json
    import time
    from pathlib import Path

    import pandas as pd
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

    from .profiles import resolve

    spec = profile["companion"]
    size = CompanionSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["size"].items()})
    settings = TrainingSettings(**spec["training"])
    out = Path(out) if out else resolve(profile, profile["generation"]["model"])
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


# --------------------------------------------------------------------------------------------------
# Evidence: the oracle's judgement of GeNIe outputs, and the model card

JUDGE_RATIOS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def judge(profile: dict, folder=None, pairs: int = 120, ratios=JUDGE_RATIOS, seed: int = 0, progress: bool = True):
    """GeNIe outputs of `pairs` random (source, target) pairs at each r, scored by the oracle.

    Sources come from the evaluation pool (never seen by the generator), source and target classes from the
    few-shot eligible classes (1-shot), where GeNIe is used. Writes `judge_curve.csv` (means per r) into the
    model folder and the per-image table into `results/<profile>/companion/`. Returns the summary."""
    from pathlib import Path

    from .data import class_display_names, load_dataset
    from .generate import GenieGenerator, Recipe
    from .oracle import consistency_summary, label_consistency, load_oracle, random_pairs
    from .profiles import resolve
    from .splits import EVALUATION, load_splits, pool_images
    from .store import Store

    folder = Path(folder) if folder else resolve(profile, profile["generation"]["model"])
    dataset = load_dataset(profile, progress=False)
    eligible = load_splits(profile, dataset)["fewshot_classes.csv"]
    classes = list(eligible[eligible.eligible_1shot.astype(bool)].class_name)
    chosen = random_pairs(pool_images(profile, dataset, EVALUATION), classes, pairs, seed)
    settings = profile["generation"]
    recipe = Recipe(settings["num_inference_steps"], settings["guidance_scale"], settings["prompt_template"],
                    seed=settings["seed"])
    generator = GenieGenerator.from_pretrained(folder, recipe)
    results = resolve(profile, profile["paths"]["results"]) / "companion"
    table = label_consistency(generator, load_oracle(resolve(profile, profile["oracle"]["path"])), chosen, ratios,
                              Store(results / "judge-store"), class_display_names(dataset),
                              settings["batch_size"], progress)
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "judge_images.csv", index=False)
    summary = consistency_summary(table).assign(classes=len(classes), steps=recipe.num_inference_steps)
    summary.to_csv(folder / "judge_curve.csv", index=False)
    return summary


def model_files(folder) -> "pd.DataFrame":
    """Every file of a model folder with its size in MB (the limits: 40 MB in all, 16 MB per file)."""
    from pathlib import Path

    import pandas as pd
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return pd.DataFrame({"file": [str(p.relative_to(folder)) for p in files],
                         "megabytes": [p.stat().st_size / 1e6 for p in files]})


def write_model_card(profile: dict, folder=None, samples: int = 6) -> "Path":
    """README.md of the model folder, from its result files (training.json, loss CSVs, judge_curve.csv), with
    the loss curve, the judge curve and sample outputs as PNGs beside it."""
    import json
    from pathlib import Path

    import pandas as pd

    from . import plots
    from .oracle import crossover
    from .profiles import resolve
    from .store import Store

    folder = Path(folder) if folder else resolve(profile, profile["generation"]["model"])
    record = json.loads((folder / "training.json").read_text())
    oracle = json.loads(resolve(profile, profile["oracle"]["path"]).with_suffix(".json").read_text())
    curve = pd.read_csv(folder / "judge_curve.csv")
    results = resolve(profile, profile["paths"]["results"]) / "companion"
    plots.loss_curves(folder / "training_loss_vae.csv", folder / "training_loss_denoiser.csv").savefig(
        folder / "loss.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plots.class_probability_curve(folder / "judge_curve.csv", "oracle on GeNIe outputs").savefig(
        folder / "judge.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    images = pd.read_csv(results / "judge_images.csv")
    store = Store(results / "judge-store")
    rows = pd.DataFrame([store.row(k) for k in images.key])
    plots.pairs_by_noise_ratio(store, rows, samples).savefig(folder / "samples.png", dpi=90, bbox_inches="tight",
                                                             metadata={"Software": None})
    at = curve.set_index("noise_ratio")
    cross = crossover(curve)
    parameters = record["parameters"]
    files = model_files(folder)
    table = "\n".join(f"| {r:g} | {at.p_target[r]:.3f} | {at.p_source[r]:.3f} | {at.oracle_target[r]:.2f} |"
                      for r in at.index)
    minutes = lambda s: f"{s / 60:.1f} min"  # noqa: E731
    text = f"""# genie-companion: a small latent-diffusion model for the embedded profile

A Stable-Diffusion-v1.5-shaped text-to-image pipeline (`StableDiffusionImg2ImgPipeline`: AutoencoderKL,
UNet2DConditionModel with cross-attention, CLIPTextModel, SD's CLIP BPE tokenizer), trained from scratch on
64x64 OpenMoji emoji so that GeNIe runs offline. It loads exactly like SD v1.5:
`StableDiffusionImg2ImgPipeline.from_pretrained("models/genie-companion")`.

## Data
- {record["training_images"]} images of the **generator pool** ({record["classes"]} classes), never the evaluation
  pool (genie_utils/splits/openmoji). Prompts `a photo of a {{class name}}.` (the Unicode subgroup, hyphens as spaces),
  10% empty prompts for classifier-free guidance.
- OpenMoji emoji (openmoji.org) are CC BY-SA 4.0; this model is trained on them and shared under the same licence.

## Model
| part | parameters | note |
| --- | ---: | --- |
| VAE (AutoencoderKL) | {parameters["vae"] / 1e6:.2f}M | 64x64x3 -> 16x16x4 (f = 4), scaling factor {record["vae_scaling_factor"]:.4f} (1 / latent std) |
| UNet2DConditionModel | {parameters["unet"] / 1e6:.2f}M | channels {record["size"]["unet_channels"]}, cross-attention at levels {record["size"]["attention_levels"]} |
| CLIPTextModel | {parameters["text_encoder"] / 1e6:.2f}M | width {record["size"]["text_width"]}, {record["size"]["text_layers"]} layers; trained jointly with the UNet |

SD's noise schedule (scaled_linear 0.00085-0.012, 1000 steps), epsilon prediction; sampled with DPM-Solver++ (order 2).
Stored in half precision: {files.megabytes.sum():.1f} MB in {len(files)} files, largest {files.megabytes.max():.1f} MB.

## Training (`make companion`)
| stage | steps | batch | learning rate | wall time |
| --- | ---: | ---: | ---: | ---: |
| VAE (L1 + MSE + {record["settings"]["kl_weight"]:g} KL) | {record["settings"]["vae_steps"]} | {record["settings"]["vae_batch_size"]} | {record["settings"]["vae_learning_rate"]:g} | {minutes(record["vae_seconds"])} |
| UNet + text encoder (min-SNR-{record["settings"]["snr_gamma"]:g}, EMA) | {record["settings"]["unet_steps"]} | {record["settings"]["unet_batch_size"]} | {record["settings"]["unet_learning_rate"]:g} | {minutes(record["denoiser_seconds"])} |

Hardware: {record["hardware"]}, {record["torch_threads"]} torch threads. AdamW, cosine schedule, checkpoints every
{record["settings"]["checkpoint_every"]} steps (an interrupted `make companion` resumes).

![loss](loss.png)

## Does GeNIe work with it? The oracle's judgement
An independent classifier (the oracle: a small CNN trained only on real generator-pool images; top-1
{oracle["evaluation_top1"]:.3f} on the {oracle["evaluation_images"]} unseen evaluation-pool images) scores GeNIe
outputs of {int(at.pairs.iloc[0])} random (source, target) pairs: sources from the evaluation pool, classes from
the {int(curve.classes.iloc[0])} few-shot eligible classes, {int(curve.steps.iloc[0])} DPM-Solver++ steps, guidance 7.5.

| r | mean P(target) | mean P(source) | oracle says target |
| ---: | ---: | ---: | ---: |
{table}

P(target) crosses P(source) at r = {"%.2f" % cross if cross is not None else "(never)"}.

![judge](judge.png)

Sample outputs (source, then GeNIe at each r):

![samples](samples.png)
"""
    (folder / "README.md").write_text(text)
    return folder / "README.md"


def main(argv=None) -> int:
    import argparse

    from .oracle import OracleSettings, train_oracle
    from .profiles import available_profiles, load_profile, resolve

    parser = argparse.ArgumentParser(description="The companion model: train it (resumable), train the oracle, "
                                                 "judge GeNIe outputs, write the model card.")
    parser.add_argument("stage", nargs="?", default="all", choices=["train", "oracle", "judge", "card", "all"])
    parser.add_argument("--profile", default="embedded", choices=available_profiles())
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    if args.stage in ("train", "all"):
        print(train_companion(profile, device=args.device))
    if args.stage in ("oracle", "all"):
        spec = profile["oracle"]
        train_oracle(profile, resolve(profile, spec["path"]), OracleSettings(**spec.get("training", {})),
                     resolve(profile, spec["workdir"]))
    if args.stage in ("judge", "all"):
        print(judge(profile).to_string(index=False))
    if args.stage in ("card", "all"):
        print(write_model_card(profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
