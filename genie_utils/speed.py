"""Speed settings: how a pipeline runs (dtype, attention kernel, memory format, torch.compile), not what it makes.

`benchmarks/throughput.py` times settings against the plain path and records, per device and model, the default:
the fastest setting within tolerance whose gain over the built-in default exceeds the timing spread (`default_setting`).
`device_default` reads that record back, so that generation on a benchmarked device runs its measured default;
without a record a device runs its built-in default (plain float32 on a CPU, float16 on a GPU, as the official code).
The throughput CSV beside the records gives `genie generate --dry-run` its time estimate (`estimate_seconds`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .profiles import load_profile
from .recipe import kept_steps
from .run_files import BenchmarkFiles, RunFiles
from .validation import UsageError


@dataclass(frozen=True)
class Setting:
    """How the pipeline runs: dtype, attention kernel (PyTorch SDPA or diffusers' classic matmul + softmax), UNet
    and VAE in channels_last memory format, the attention's query/key/value projections fused into one matmul,
    torch.compile of the UNet (mode; `tuned`: with TUNED_INDUCTOR's options instead, as diffusers' guide)."""
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
    # diffusers' "accelerate inference" recipe: everything at once, compiled with TUNED_INDUCTOR (minutes to compile)
    "fp16-max-autotune": Setting("float16", channels_last=True, fuse_qkv=True, compile="max-autotune", tuned=True),
}
# diffusers' inference guide, as inductor options: max-autotune (kernel searches, CUDA graphs), 1x1 convolutions as
# matmuls, coordinate-descent tiling, no epilogue fusion
TUNED_INDUCTOR = {"max_autotune": True, "triton.cudagraphs": True, "conv_1x1_as_mm": True,
                  "coordinate_descent_tuning": True, "coordinate_descent_check_all_directions": True,
                  "epilogue_fusion": False}
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
        # here: the command line reads this module's settings, and `genie --help` should not load diffusers
        from diffusers.models.attention_processor import AttnProcessor

        pipe.unet.set_attn_processor(AttnProcessor())
        pipe.vae.set_attn_processor(AttnProcessor())
    if setting.fuse_qkv:
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
    if setting.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if setting.compile and setting.tuned:  # mode and options exclude each other: max-autotune spelled out, and
        # the inductor options given to this compile only (inductor's global config would reach later compiles)
        pipe.unet = torch.compile(pipe.unet, fullgraph=True, options=TUNED_INDUCTOR)
    elif setting.compile:
        pipe.unet = torch.compile(pipe.unet, mode=setting.compile)
    return pipe


def default_setting(table: pd.DataFrame, builtin: str) -> str | None:
    """A benchmark run's default for its device, from its rows (setting, batch_size, images_per_second, slowest,
    fastest, within_tolerance): of the settings within tolerance, not compiled, whose slowest timing beats the
    built-in default's fastest at every batch size both were timed at (a gain larger than the machine's drift
    between timings), the one with the largest mean speed-up; else the built-in default; None when the run did not
    time the built-in default (a partial run decides nothing).

    Compiled settings are left to be named: a compiled UNet compiles again for each new batch shape (a last,
    smaller batch; GeNIe-Ada's subsets), which warmed timings at fixed shapes do not show."""
    reference = table[table.setting == builtin].groupby("batch_size")
    if not len(reference):
        return None
    fastest, median = reference.fastest.max(), reference.images_per_second.median()
    gains = {}
    for name, rows in table[table.setting != builtin].groupby("setting"):
        rows = rows[rows.batch_size.isin(fastest.index)]
        if SETTINGS[name].compile or rows.empty or not rows.within_tolerance.all():
            continue
        if (rows.slowest.to_numpy() > fastest.loc[rows.batch_size].to_numpy()).all():
            gains[name] = float((rows.images_per_second.to_numpy() / median.loc[rows.batch_size].to_numpy()).mean())
    return max(gains, key=gains.get) if gains else builtin


def device_default(device: torch.device, benchmarks: str | os.PathLike | None = None,
                   model: str = "") -> tuple[str, str]:
    """(setting, why) for generating `model` (its folder's or hub id's last part, as the benchmark's rows name
    it) on `device`: the default of the newest `throughput-*.json` in the folder `benchmarks` that timed this model
    on this device, else the built-in default. Records without a default this device can run are passed over."""
    device = torch.device(device)
    here = device_name(device) if device.type != "cuda" or torch.cuda.is_available() else None
    for path in reversed(BenchmarkFiles(Path(benchmarks)).throughput_records()) if benchmarks and here else []:
        try:
            record = json.loads(path.read_text())
            setting = check_setting(record["default"], device)
        except (OSError, ValueError, KeyError, TypeError):  # unreadable, no default, or another device's
            continue
        if record.get("device") == here and model in {row.get("model") for row in record.get("rows", [])}:
            return setting, f"measured: {path.name}"
    return builtin_default(device), f"built-in default on {device.type}: no benchmark of {model or 'this model'} here"


def default_benchmark() -> Path:
    """The throughput.csv of the embedded profile's benchmarks (`genie generate`'s default --benchmark)."""
    return RunFiles.of(load_profile("embedded")).benchmarks.throughput


def chosen_setting(name: str, device: torch.device, benchmark: Path, model: str) -> tuple[str, str]:
    """(setting, why) for generating `model` (a folder or hub id) on `device`: `name` when it is a setting (checked
    against the device), or with `auto` the default recorded beside the throughput CSV `benchmark`
    (`device_default`)."""
    if name != "auto":
        return check_setting(name, device), "--speed"
    return device_default(device, benchmark.parent, Path(model).name)


BENCHMARK_COLUMNS = ("device", "batch_size", "images_per_second", "steps", "noise_ratio")


def check_benchmark(path: Path) -> Path:
    """A --benchmark file given by the user: its folder must exist (the speed records beside it set `--speed auto`)
    and the file, when there, must have the columns of benchmarks/throughput.py's CSV, with device names as text and
    numbers in the others."""
    if not path.parent.is_dir():
        raise UsageError(f"--benchmark {path}: no such folder {path.parent} (benchmarks/throughput.py writes "
                         "throughput.csv and its speed records into one folder): pass that throughput.csv, or leave "
                         "--benchmark out")
    if not path.is_file():
        return path  # no estimate for --dry-run, but the records beside it still count
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UsageError(f"--benchmark {path} is not a CSV file ({error})") from None
    missing = [c for c in BENCHMARK_COLUMNS if c not in table]
    if missing:
        raise UsageError(f"--benchmark {path} lacks the columns {', '.join(missing)} of benchmarks/throughput.py's "
                         "throughput.csv: pass that file, or leave --benchmark out")
    for column in BENCHMARK_COLUMNS:
        values = table[column].dropna()
        wrong = (values[~values.map(lambda v: isinstance(v, str))] if column == "device"
                 else values[pd.to_numeric(values, errors="coerce").isna()])
        if len(wrong):
            value = wrong.iloc[0]
            shown = repr(value) if isinstance(value, str) else value
            raise UsageError(f"--benchmark {path}: column {column} holds {shown}, not "
                             f"{'a device name' if column == 'device' else 'a number'}: pass the throughput.csv that "
                             "benchmarks/throughput.py wrote, or leave --benchmark out")
    return path


def estimate_seconds(benchmark: Path, steps_needed: int, device: str, batch_size: int,
                     model: str = "", setting: str = "") -> tuple[float, str] | None:
    """Seconds for `steps_needed` image-steps at the speed `benchmarks/throughput.py` measured on this kind of
    device (this model's rows when there are any, of them this speed setting's when there are any; the row with
    this batch size, else the fastest), with the row it used; None without a match."""
    if not benchmark.is_file():
        return None
    table = pd.read_csv(benchmark)
    if "within_tolerance" in table:  # a setting whose outputs differ from the plain path does not count
        table = table[table.within_tolerance.fillna(True).astype(bool)]
    on_device = table[table.device.str.startswith("CPU") == (device == "cpu")]
    for column, value in (("model", model), ("setting", setting)):
        if column in on_device and (on_device[column] == value).any():
            on_device = on_device[on_device[column] == value]
    if on_device.empty:
        return None
    same = on_device[on_device.batch_size == batch_size]
    row = (same if len(same) else on_device).sort_values("images_per_second").iloc[-1]
    per_second = row.images_per_second * kept_steps(int(row.steps), float(row.noise_ratio))
    measured = row.get("model") if isinstance(row.get("model"), str) else "an unnamed model"
    return steps_needed / per_second, (f"{row.images_per_second:.1f} images/s at batch {int(row.batch_size)}, "
                                       f"{int(row.steps)} steps, r = {row.noise_ratio:g} on {row.device}, "
                                       f"model {measured}" + ("" if measured == model else ": another model"))


def estimate_text(benchmark: Path, steps_needed: int, device: str, batch_size: int, model: str = "",
                  setting: str = "") -> str:
    """`estimate_seconds` as a line for a person: minutes on one process and the measurement they rest on, or how to
    get an estimate."""
    estimate = estimate_seconds(benchmark, steps_needed, device, batch_size, model, setting)
    if estimate is None:
        return ("estimated time: unknown (no benchmark for this device: run benchmarks/throughput.py, "
                "or pass --benchmark FILE.csv)")
    return f"estimated time: {estimate[0] / 60:.1f} min on one process (from {estimate[1]})"
