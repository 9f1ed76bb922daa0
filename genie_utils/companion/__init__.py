"""The companion model: a small Stable-Diffusion-style pipeline that loads exactly like SD v1.5.

`tokenizer` (SD's CLIP BPE tokenizer, rebuilt offline), `architecture` (the parts at laptop size),
`train` (VAE, then UNet + text encoder, resumable), `card` (the oracle's judgement and the model card);
`python -m genie_utils.companion` runs them (`make companion`).
"""
from .architecture import SD15_SCHEDULE, TINY, CompanionSize, build_pipeline
from .card import JUDGE_RATIOS, judge, model_files, write_model_card
from .tokenizer import clip_tokenizer
from .train import (TrainingSettings, assemble_companion, encode_latents, pack_training_data, read_pack, read_weights,
                    train_companion, train_denoiser, train_pack, train_vae, write_pack, write_weights)

__all__ = ["SD15_SCHEDULE", "TINY", "CompanionSize", "build_pipeline", "JUDGE_RATIOS", "judge", "model_files",
           "write_model_card", "clip_tokenizer", "TrainingSettings", "assemble_companion", "encode_latents",
           "pack_training_data", "read_pack", "read_weights", "train_companion", "train_denoiser", "train_pack",
           "train_vae", "write_pack", "write_weights"]
