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
    attention_head_dim: int = 8
    vae_channels: tuple[int, ...] = (16, 32, 32)
    latent_channels: int = 4
    text_width: int = 32
    text_layers: int = 2
    text_heads: int = 4
    image_size: int = 64
    vae_scaling_factor: float = 0.18215


TINY = CompanionSize()


def build_pipeline(size: CompanionSize = TINY, seed: int = 0):
    """A random-weight StableDiffusionImg2ImgPipeline with SD v1.5's structure at `size`."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    levels = len(size.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=size.latent_channels,
        block_out_channels=size.vae_channels, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        norm_num_groups=min(size.vae_channels + (32,)) // 2 or 1, sample_size=size.image_size,
        scaling_factor=size.vae_scaling_factor)
    latent_size = size.image_size // 2 ** (levels - 1)
    blocks = len(size.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=latent_size, in_channels=size.latent_channels, out_channels=size.latent_channels,
        block_out_channels=size.unet_channels, layers_per_block=size.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1),
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


def size_as_dict(size: CompanionSize) -> dict:
    return asdict(size)
