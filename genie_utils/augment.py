"""Classic augmentations, the paper's baselines beside the generative ones: weak and strong random views of an
image, and MixUp / CutMix of two images.

Every random choice is seeded by the image's content hash, the view's kind and its index, so a view is the
same in every episode that uses its image (its features are computed once and cached), on every machine,
whatever the batch size or order. Views are PIL images at the backbone's input size (224 px); the backbone
then only normalises them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

VIEW_KINDS = ("centre", "weak", "strong")
MIX_METHODS = ("mixup", "cutmix")
MIX_ALPHA = 0.8  # lambda ~ Beta(0.8, 0.8), as the paper's MixUp and CutMix rows


def view_seed(*parts) -> int:
    """A 63-bit seed from any parts (image hashes, kinds, indices)."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


def _transforms(kind: str, size: int, resize: int):
    if kind == "centre":  # the query transform: resize the shorter side, centre-crop
        return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(size)])
    weak = [v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    if kind == "weak":
        return v2.Compose(weak)
    # strong: colour jitter, grayscale and blur on top of the weak crop and flip (SimCLR's settings)
    return v2.Compose(weak + [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                              v2.RandomGrayscale(p=0.2),
                              v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5)])


@dataclass(frozen=True)
class View:
    """One view of an image: `centre` (resize + centre crop, the query transform), or the `index`-th `weak`
    (RandomResizedCrop scale 0.2-1 + horizontal flip) or `strong` (weak + colour jitter, grayscale, blur)
    random view. `name` identifies it in the feature cache."""
    kind: str = "centre"
    index: int = 0

    def __post_init__(self):
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"unknown view kind {self.kind!r}; use one of {VIEW_KINDS}")

    @property
    def name(self) -> str:
        return self.kind if self.kind == "centre" else f"{self.kind}-{self.index}"

    def __call__(self, image: Image.Image, image_hash: str, size: int = 224, resize: int = 256) -> Image.Image:
        """The view of `image` (whose content hash seeds it) as a `size` x `size` RGB image."""
        transform = _transforms(self.kind, size, resize)
        if self.kind == "centre":
            return transform(image)
        with torch.random.fork_rng(devices=[]):  # torchvision draws from torch's global generator
            torch.manual_seed(view_seed(image_hash, self.kind, self.index))
            return transform(image)


def views(kind: str, count: int) -> list[View]:
    return [View(kind, i) for i in range(count)]


# --------------------------------------------------------------------------------------------------
# MixUp and CutMix


@dataclass(frozen=True)
class Mix:
    """How two images are mixed: `weight` is lambda, the share of the first image (its soft-label weight);
    CutMix pastes the box (top, left, height, width) of the second image into the first."""
    method: str
    weight: float
    box: tuple[int, int, int, int] | None = None


def mix_parameters(method: str, seed: int, size: int = 224) -> Mix:
    """lambda ~ Beta(0.8, 0.8); for CutMix a box of area (1 - lambda) at a uniform centre, clipped to the
    image, and lambda recomputed from the clipped box (Yun et al. 2019). Needs no pixels: a mixed sample's
    soft label is known without making it."""
    if method not in MIX_METHODS:
        raise ValueError(f"unknown mixing method {method!r}; use one of {MIX_METHODS}")
    rng = np.random.default_rng(seed)
    weight = float(rng.beta(MIX_ALPHA, MIX_ALPHA))
    if method == "mixup":
        return Mix(method, weight)
    cut = np.sqrt(1.0 - weight)
    centre_y, centre_x = rng.integers(size), rng.integers(size)
    half = int(size * cut) // 2
    top, bottom = max(centre_y - half, 0), min(centre_y + half, size)
    left, right = max(centre_x - half, 0), min(centre_x + half, size)
    weight = 1.0 - (bottom - top) * (right - left) / size**2
    return Mix(method, float(weight), (int(top), int(left), int(bottom - top), int(right - left)))


def mix_images(first: Image.Image, second: Image.Image, mix: Mix) -> Image.Image:
    """MixUp: the pixel-wise blend weight * first + (1 - weight) * second. CutMix: first with the box of second."""
    a = np.asarray(first.convert("RGB"), dtype=np.float32)
    b = np.asarray(second.convert("RGB"), dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"images to mix must have one size, got {first.size} and {second.size}")
    if mix.method == "mixup":
        out = mix.weight * a + (1.0 - mix.weight) * b
    else:
        top, left, height, width = mix.box
        out = a.copy()
        out[top:top + height, left:left + width] = b[top:top + height, left:left + width]
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


def mixed_sample(method: str, first: Image.Image, first_hash: str, second: Image.Image, second_hash: str,
                 views_per_image: int = 5, size: int = 224) -> tuple[Image.Image, Mix]:
    """One MixUp/CutMix sample of two images, as a classifier trains on it: a seeded weak view of each (the
    same view index for both), mixed by `mix_parameters`; everything seeded by the two images' hashes."""
    seed = view_seed(first_hash, second_hash, method)
    view = View("weak", seed % views_per_image)
    mix = mix_parameters(method, seed, size)
    return mix_images(view(first, first_hash, size), view(second, second_hash, size), mix), mix


def mix_weight(method: str, first_hash: str, second_hash: str, size: int = 224) -> float:
    """lambda of `mixed_sample` without making it: the soft label's weight on the first image's class."""
    return mix_parameters(method, view_seed(first_hash, second_hash, method), size).weight
