"""Speed settings: how a pipeline runs (dtype, attention kernel, memory format, torch.compile), not what it makes.

`benchmarks/throughput.py` times every setting against the plain path and records, per device, the default: the
fastest setting within tolerance whose gain exceeds the timing spread. `device_default` reads that record back, so
that generation on a benchmarked device runs its measured default; without a record a device runs its built-in
default (plain float32 on a CPU, float16 on a GPU, as the official code).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

@dataclass(frozen=True)
class Setting:
    """How the pipeline runs: dtype, attention kernel (PyTorch SDPA or diffusers' classic matmul + softmax), UNet
    and VAE in channels_last memory format, the attention's query/key/value projections fused into one matmul,
    torch.compile of the UNet (mode; `tuned`: inductor's convolution and tiling searches, as diffusers' guide)."""
    dtype: str = "float32"
    attention: str = "sdpa"
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: str | None = None
    tuned: bool = False


SETTINGS = {
    "plain": Setting(),
    "classic-attention": Setting(attention="classic"),
    "channels-last": Setting(channels_last=True),
    "fused-qkv": Setting(fuse_qkv=True),
    "compile": Setting(compile="default"),
    "bf16": Setting("bfloat16"),
    "fp16": Setting("float16"),
    "fp16-channels-last": Setting("float16", channels_last=True),
    "fp16-compile": Setting("float16", compile="default"),
    "fp16-cuda-graphs": Setting("float16", compile="reduce-overhead"),
    # diffusers' "accelerate inference" recipe: everything at once, compiled with autotuning (minutes to compile)
    "fp16-max-autotune": Setting("float16", channels_last=True, fuse_qkv=True, compile="max-autotune", tuned=True),
}
# Largest |pixel difference| to plain (pixels in [0, 1]): a float32 setting may move a saved 8-bit pixel by at most
# one grey level (what the plain path itself does across thread counts), a 16-bit one by about 13.
TOLERANCE = {"float32": 1 / 255, "bfloat16": 0.05, "float16": 0.05}


def check_setting(name: str, device: torch.device | None = None) -> str:
    """`name`, or an error when it is no setting or (given a device) one the device cannot run."""
    if name not in SETTINGS:
        raise ValueError(f"unknown speed setting {name!r}; known: {', '.join(SETTINGS)}")
    if device is not None and SETTINGS[name].dtype == "float16" and torch.device(device).type != "cuda":
        raise ValueError(f"speed setting {name} needs a GPU (float16 has no fast path on {torch.device(device).type}); "
                         "on a CPU use plain or channels-last")
    return name


def dtype_of(name: str) -> torch.dtype:
    return getattr(torch, SETTINGS[check_setting(name)].dtype)


def plain_setting(dtype: torch.dtype) -> str:
    """The setting that runs the plain path in `dtype` (float32: plain, float16: fp16, bfloat16: bf16)."""
    for name, setting in SETTINGS.items():
        if setting == Setting(str(dtype).replace("torch.", "")):
            return name
    raise ValueError(f"no speed setting runs {dtype}; use float32, float16 or bfloat16")


def builtin_default(device: torch.device) -> str:
    return "fp16" if torch.device(device).type == "cuda" else "plain"


def device_name(device: torch.device) -> str:
    """How benchmark records name a device: the GPU's name, or the CPU with its thread count."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def apply(pipe, name: str, device: torch.device):
    """`pipe` moved to `device` and set up as setting `name` (in place; returns it)."""
    setting = SETTINGS[check_setting(name, device)]
    dtype = getattr(torch, setting.dtype)
    pipe = pipe.to(torch.device(device))
    if pipe.unet.dtype != dtype:  # diffusers warns about every cast given a dtype, even a no-op
        pipe = pipe.to(dtype)
    if setting.attention == "classic":
        from diffusers.models.attention_processor import AttnProcessor

        pipe.unet.set_attn_processor(AttnProcessor())
        pipe.vae.set_attn_processor(AttnProcessor())
    if setting.fuse_qkv:
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
    if setting.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if setting.tuned:
        from torch._inductor import config

        config.conv_1x1_as_mm = True
        config.coordinate_descent_tuning = True
        config.epilogue_fusion = False
        config.coordinate_descent_check_all_directions = True
    if setting.compile:
        pipe.unet = torch.compile(pipe.unet, mode=setting.compile, fullgraph=setting.tuned)
    return pipe


def default_setting(table: pd.DataFrame) -> pd.Series:
    """A benchmark run's default: the fastest setting within tolerance whose slowest timing beats plain's fastest
    at the same batch size (a gain larger than the machine's drift between timings); plain when none does."""
    plain = table[table.setting == "plain"].set_index("batch_size")
    faster = table[table.within_tolerance & (table.setting != "plain")]
    faster = faster[faster.slowest > faster.batch_size.map(plain.fastest)]
    pool = faster if len(faster) else table[table.setting == "plain"]
    return pool.sort_values("images_per_second").iloc[-1]


def device_default(device: torch.device, benchmarks: str | os.PathLike | None = None,
                   model: str = "") -> tuple[str, str]:
    """(setting, why) for generating on `device`: the default of the newest `throughput-*.json` in the folder
    `benchmarks` recorded on this device (one timed on `model` first, else any model's), else the built-in
    default. A record whose default this device cannot run (or an unreadable one) is passed over."""
    device = torch.device(device)
    records = []
    for path in sorted(Path(benchmarks).glob("throughput-*.json")) if benchmarks else []:
        try:
            record = json.loads(path.read_text())
            setting = check_setting(record["default"]["setting"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if record.get("device") == device_name(device) and (dtype_of(setting) != torch.float16 or device.type == "cuda"):
            rows_model = {row.get("model") for row in record.get("rows", [])}
            records.append((model in rows_model, path.name, setting))
    if not records:
        return builtin_default(device), f"built-in default on {device.type} (no benchmark record for this device)"
    same_model, name, setting = max(records)
    return setting, f"the default {name} measured on this device" + ("" if same_model else " (another model)")
