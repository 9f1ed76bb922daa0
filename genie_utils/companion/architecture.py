"""The companion model's architecture: SD v1.5's pipeline structure (AutoencoderKL, cross-attention UNet,
CLIP text encoder, SD's noise schedule) at a size that trains and samples on a laptop CPU."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel

from .tokenizer import clip_tokenizer

# SD v1.5's noise schedule; the scheduler is DPM-Solver++ as in GeNIe's official code.
SD15_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                     steps_offset=1, prediction_type="epsilon")
# A 16x16 latent keeps 16x less signal to noise at image scale than SD's 64x64 at the same timestep: a log-SNR gap
# of 2 ln 4 = 2.77 (Hoogeboom et al. 2023, "simple diffusion"; Chen 2023). Zero-terminal-SNR rescaling (Lin et al.
# 2024) then lowers the upper half of the schedule again; a shift of 3.5 before it puts log-SNR at t = 500-800
# within 0.25 of SD's + 2.77 (tests/test_companion.py checks this).
RESOLUTION_GAP = 2 * math.log(4)
SCHEDULE_SHIFT = 3.5


def sd15_alphas_cumprod() -> torch.Tensor:
    """SD v1.5's alpha-bar per timestep (scaled_linear betas 0.00085-0.012, 1000 steps), float64."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def noise_schedule(shift: float = 0.0, zero_terminal_snr: bool = False) -> dict:
    """The scheduler config of a noise schedule: SD v1.5's with its log-SNR raised by `shift` at every timestep,
    stored as `trained_betas` so that a model folder still loads with stock diffusers. `zero_terminal_snr` adds
    diffusers' `rescale_betas_zero_snr` (the last timestep is pure noise, as text-to-image starts) and then
    v-prediction, since epsilon is no target at zero signal. No shift and no rescaling is SD15_SCHEDULE itself."""
    if not shift and not zero_terminal_snr:
        return dict(SD15_SCHEDULE)
    alphas_cumprod = torch.sigmoid(torch.logit(sd15_alphas_cumprod()) + shift)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    betas = 1 - alphas_cumprod / previous
    return dict(num_train_timesteps=1000, trained_betas=[float(b) for b in betas], steps_offset=1,
                rescale_betas_zero_snr=zero_terminal_snr,
                prediction_type="v_prediction" if zero_terminal_snr else "epsilon")


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


def build_parts(size: CompanionSize = TINY, seed: int = 0):
    """The random-weight VAE, UNet and CLIP text encoder of SD v1.5's structure at `size`, seeded."""
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
    return vae, unet, text_encoder


def build_pipeline(size: CompanionSize = TINY, seed: int = 0, parts=None, schedule: dict | None = None):
    """A StableDiffusionImg2ImgPipeline with SD v1.5's structure at `size`: random weights, or `parts`
    (vae, unet, text_encoder) when given. The scheduler is DPM-Solver++ as in GeNIe's official code, on
    `schedule` (a `noise_schedule` config; default SD v1.5's)."""
    vae, unet, text_encoder = parts if parts is not None else build_parts(size, seed)
    scheduler = DPMSolverMultistepScheduler(**(schedule or SD15_SCHEDULE), algorithm_type="dpmsolver++",
                                            solver_order=2)
    return StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
