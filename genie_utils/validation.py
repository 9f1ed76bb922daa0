"""Checks of what a user passes in: each returns the value in its canonical form, or raises a ValueError (a
KeyError for an unknown class) naming the problem and the fix, so that a bad setting fails before any work."""
from __future__ import annotations

import difflib
import math
import numbers
import re
import string
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

WORDNET_ID = re.compile(r"^n\d{8}$")  # ImageNet's class names (n01532829): a prompt needs their words instead


class UsageError(ValueError):
    """A bad argument: the message says what was wrong and how to fix it."""


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


def check_seed(seed, name: str = "seed") -> int:
    """A seed: a non-negative integer (every image's seed derives from it)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}: every image's seed derives from it "
                         "(0 by default)")
    return int(seed)


def check_count(count, name: str, minimum: int = 1) -> int:
    """A count of things (images, variants): an integer of at least `minimum`."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {count!r}")
    return int(count)


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


def check_device(name: str) -> torch.device:
    """The device a user named, checked before any work: it must parse and be usable on this machine."""
    import torch  # here, not at the top: profiles check their settings with this module, without torch

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


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """(index, count) of one worker among `count`; None means the only worker, (0, 1)."""
    index, count = shard if shard is not None else (0, 1)
    if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    return index, count


def check_class(class_name: str, class_names: dict[str, str] | None) -> str:
    """The display name of a class, or an error listing the closest known classes. Without `class_names` the class
    is its own name, unless it is a WordNet id, which no prompt should read."""
    if not isinstance(class_name, str) or not class_name.strip():
        raise ValueError(f"class {class_name!r} is no class name: the prompt would read 'a photo of a {class_name}.'"
                         + (f" The classes: {sorted(class_names)[:20]}" if class_names else
                            " Use a class of the dataset (its folder name)"))
    if class_names is None:
        if WORDNET_ID.match(str(class_name)):
            raise ValueError(f"class {class_name!r} is a WordNet id and no class_names were given: the prompt would "
                             f"read 'a photo of a {class_name}'. Pass class_names (data.class_display_names(dataset), "
                             "or class_folders.read_class_names(FILE) of lines '<wnid> <words>')")
        return class_name
    if class_name not in class_names:
        close = difflib.get_close_matches(str(class_name), list(class_names), n=3)
        raise KeyError(f"unknown class {class_name!r}" + (f"; did you mean {close}?" if close else "")
                       + f" The dataset has {len(class_names)} classes (see its class_name column): use one of them, "
                       "or add the class to class_names.")
    return class_names[class_name]


INTERRUPTED = "interrupted; the store is consistent, rerun to continue"


def run_command(main, name: str) -> int:
    """A command line's `main()`, Ctrl-C said in one line (exit status 130) instead of a traceback: every store
    and result file is written atomically, so a rerun continues where it stopped."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{name}: {INTERRUPTED}", file=sys.stderr)
        return 130


def seconds_setting(name: str, text: str | None, default: float) -> float:
    """A time bound from the environment variable `name` (whose value is `text`): `default` when unset or empty,
    else a positive, finite number of seconds, or a ValueError naming the variable and the values it takes."""
    if text is None or not text.strip():
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (0 < seconds < float("inf")):
        raise ValueError(f"{name}={text!r} is not a timeout: set it to a positive number of seconds ({default:g} "
                         f"when unset), e.g. {name}=60, or unset it.")
    return seconds
