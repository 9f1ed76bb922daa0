"""The oracle: an independent classifier that judges which class an image shows.

It measures label consistency of augmentations: P(target) and P(source) of GeNIe outputs as the noise ratio r
grows, and whether each augmentation shows the class it is trained with. A profile's `[oracle]` names one of two:
- `path`: the embedded profiles' own judge, a small CNN trained from scratch on the generator pool's real images
  only (never on the evaluation pool, never on generated images, and unrelated to the few-shot backbone);
- `architecture` and `weights`: an ImageNet-1k classifier (a timm architecture; a torchvision ResNet's weights fit
  timm's ResNet of that depth) from a local weights file, for datasets of ImageNet classes named by WordNet ids.
  Its 1,000 outputs are mapped to WordNet ids by timm's ImageNet synset list.
A profile with neither has no oracle: notebook 05 skips label consistency and says so.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .data import load_dataset
from .images import images_tensor
from .jobs import Job, run_jobs
from .profiles import resolve
from .splits import EVALUATION, GENERATOR, pool_images
from .store import atomic_write
from .training import fit, step_generator, tensor_digest


@dataclass(frozen=True)
class OracleSettings:
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 2e-3
    checkpoint_every: int = 250
    seed: int = 0


def oracle_network(classes: int, width: int = 32) -> nn.Module:
    """Four conv blocks (64 -> 4 px), global average pooling, a linear layer: about 1.2M parameters."""
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)]
    widths = [3, width, 2 * width, 4 * width, 8 * width]
    layers = sum((block(a, b) for a, b in zip(widths, widths[1:])), [])
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(widths[-1], classes))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random zoom (0.8-1.25), shift (15%) on a white background, and a blur on half the images, so that
    the oracle does not reject generated images for being slightly soft or off-centre."""
    count = len(images)
    scale = torch.empty(count).uniform_(0.8, 1.25, generator=generator)
    shift = torch.empty(count, 2).uniform_(-0.15, 0.15, generator=generator)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    moved = nn.functional.grid_sample(images - 1, grid, align_corners=False) + 1  # outside = white
    blurred = nn.functional.avg_pool2d(nn.functional.pad(moved, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    soft = torch.rand(count, generator=generator) < 0.5
    return torch.where(soft[:, None, None, None], blurred, moved)


class Oracle:
    """An oracle: class probabilities for images, on `device` (the CPU unless given)."""
    def __init__(self, network: nn.Module, classes: Sequence[str], record: dict | None = None,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.network = network.eval().to(self.device)
        self.classes = list(classes)
        self.record = record or {}

    @torch.inference_mode()
    def probabilities(self, images, batch_size: int = 256) -> np.ndarray:
        """(N, classes) softmax probabilities for a tensor in [-1, 1] or a list of PIL images / paths (read
        `batch_size` at a time)."""
        parts = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            batch = batch if isinstance(batch, torch.Tensor) else images_tensor(batch)
            parts.append(self.network(batch.to(self.device)).softmax(-1).cpu())
        return torch.cat(parts).numpy() if parts else np.zeros((0, len(self.classes)), np.float32)

    def index(self, class_name: str) -> int:
        """The oracle's output for `class_name`; a ValueError naming the class when the oracle does not know it."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise ValueError(f"the oracle knows no class {class_name!r}: it judges its {len(self.classes)} classes "
                             f"({', '.join(self.classes[:5])}, ...). Give the profile an oracle of this dataset's "
                             "classes ([oracle] path, or [oracle] architecture and weights for ImageNet classes).") \
                from None

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        payload = {"state_dict": {k: v.half() if v.is_floating_point() else v
                                  for k, v in self.network.state_dict().items()},
                   "classes": self.classes, "record": self.record}
        atomic_write(path, lambda f: torch.save(payload, f))
        return path


def load_oracle(path: str | os.PathLike) -> Oracle:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no oracle at {path}: train one with genie_utils.oracle.train_oracle(profile).")
    payload = torch.load(path, weights_only=False)
    network = oracle_network(len(payload["classes"]))
    network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    return Oracle(network, payload["classes"], payload["record"])


def imagenet_classes() -> list[str]:
    """ImageNet-1k's WordNet ids in the order of a classifier's 1,000 outputs (timm's synset list)."""
    from timm.data import ImageNetInfo
    return list(ImageNetInfo().label_names())


class ImageNetInput(nn.Module):
    """Images in [-1, 1] at any size as an ImageNet classifier takes them: resized (`interpolation`: bilinear or
    bicubic) so that the centre crop of `crop_pct` is `size` px, centre-cropped, normalised with the classifier's
    mean and std."""
    def __init__(self, size: int, crop_pct: float, mean: Sequence[float], std: Sequence[float],
                 interpolation: str = "bilinear"):
        super().__init__()
        self.size, self.resized = size, round(size / crop_pct)
        self.interpolation = interpolation if interpolation in ("bilinear", "bicubic") else "bilinear"
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = nn.functional.interpolate((images + 1) / 2, size=(self.resized, self.resized),
                                           mode=self.interpolation, antialias=True, align_corners=False)
        top = (self.resized - self.size) // 2
        return (images[:, :, top:top + self.size, top:top + self.size] - self.mean) / self.std


def _state_dict(path: Path) -> dict:
    """The tensors of a weights file (.safetensors, or a torch file holding a state dict, possibly under
    "state_dict" or "model" and with DataParallel's "module." prefix)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def imagenet_oracle(architecture: str, weights: str | os.PathLike, device: str | torch.device = "cpu") -> Oracle:
    """An ImageNet-1k classifier as an oracle: timm's `architecture`, its weights from the local file `weights`,
    its classes ImageNet's WordNet ids."""
    import timm
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"no weights for the {architecture} oracle at {weights}: save an ImageNet-1k "
                                f"checkpoint of timm's {architecture} there (e.g. timm.create_model({architecture!r}, "
                                "pretrained=True) on a machine with internet, then safetensors.torch.save_file of its "
                                "state_dict()), or set [oracle] weights to where it is")
    if not timm.is_model(architecture):  # a name timm knows, with or without a pretrained tag (resnet50.a1_in1k)
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        raise ValueError(f"timm has no architecture {architecture!r} for the oracle"
                         + (f"; did you mean {close}?" if close else "") + " Set [oracle] architecture to a timm name.")
    network = timm.create_model(architecture, pretrained=False, num_classes=1000)
    try:
        network.load_state_dict(_state_dict(weights))
    except Exception as error:  # a pickle that is not a state dict, or tensors of another network
        raise ValueError(f"the weights at {weights} do not fit timm's {architecture} with 1,000 ImageNet classes "
                         f"({' '.join(str(error).split())[:300]}...): use that architecture's ImageNet-1k weights, or set "
                         "[oracle] architecture to theirs") from None
    config = timm.data.resolve_data_config({}, model=network)
    first = ImageNetInput(config["input_size"][-1], config["crop_pct"], config["mean"], config["std"],
                          config["interpolation"])
    return Oracle(nn.Sequential(first, network), imagenet_classes(),
                  {"architecture": architecture, "weights": weights.name, "input_size": config["input_size"][-1]},
                  device)


def profile_oracle(profile: dict) -> Oracle | None:
    """The profile's oracle: `[oracle] architecture` and `weights` (an ImageNet classifier, on the GPU when there
    is one), else `[oracle] path` (a trained oracle of this project), else None (no oracle)."""
    spec = profile.get("oracle", {})
    if spec.get("architecture"):
        if not spec.get("weights"):
            raise ValueError(f"[oracle] architecture = {spec['architecture']!r} needs [oracle] weights, the path of "
                             "its ImageNet-1k weights file")
        return imagenet_oracle(spec["architecture"], resolve(profile, spec["weights"]),
                               "cuda" if torch.cuda.is_available() else "cpu")
    if spec.get("path"):
        return load_oracle(resolve(profile, spec["path"]))
    return None


NO_ORACLE = ("Label consistency is skipped: the profile names no oracle. Set [oracle] architecture and weights (an "
             "ImageNet-1k classifier from a local file) or [oracle] path (a trained oracle) to judge it.")


def train_oracle(profile: dict, path: str | os.PathLike, settings: OracleSettings = OracleSettings(),
                 workdir: str | os.PathLike | None = None, progress: bool = True) -> Oracle:
    """Train on the generator pool, report top-1 accuracy on the (unseen) evaluation pool, save to `path`."""
    dataset = load_dataset(profile, progress=False)
    train = pool_images(profile, dataset, GENERATOR)
    classes = sorted(dataset.class_name.unique())
    images = images_tensor(train.path)
    labels = torch.tensor([classes.index(c) for c in train.class_name])
    torch.manual_seed(settings.seed)
    network = oracle_network(len(classes))

    def loss_fn(step):
        g = step_generator(settings.seed, 3, step)
        index = torch.randint(len(images), (settings.batch_size,), generator=g)
        return nn.functional.cross_entropy(network(augment(images[index], g)), labels[index], label_smoothing=0.1)

    workdir = Path(workdir) if workdir else Path(path).parent
    workdir.mkdir(parents=True, exist_ok=True)
    fingerprint = {"settings": asdict(settings), "classes": classes, "images": tensor_digest(images)}
    history = fit("oracle", {"network": network}, list(network.parameters()), loss_fn, settings.steps,
                  settings.learning_rate, settings.checkpoint_every, workdir, fingerprint, progress=progress)
    oracle = Oracle(network, classes)
    held_out = pool_images(profile, dataset, EVALUATION)
    predicted = oracle.probabilities(images_tensor(held_out.path)).argmax(1)
    accuracy = float(np.mean([oracle.classes[p] == c for p, c in zip(predicted, held_out.class_name)]))
    oracle.record = {"settings": asdict(settings), "training_images": len(train), "classes": len(classes),
                     "evaluation_images": len(held_out), "evaluation_top1": round(accuracy, 4),
                     "seconds": round(history[-1]["seconds"], 1)}
    oracle.save(path)
    (Path(path).with_suffix(".json")).write_text(json.dumps(oracle.record, indent=2) + "\n")
    write_card(Path(path))
    return oracle


def write_card(path: Path) -> Path:
    """README.md beside the oracle's weights, from its JSON record."""
    record = json.loads(path.with_suffix(".json").read_text())
    settings = record["settings"]
    card = path.parent / "README.md"
    card.write_text(f"""# oracle: an independent judge of emoji classes

A small CNN (four conv blocks, about 1.2M parameters, `genie_utils.oracle.oracle_network`) trained from scratch
on the {record["training_images"]} real images of the embedded dataset's generator pool ({record["classes"]}
classes): never on the evaluation pool, never on generated images, and unrelated to the few-shot backbone.
Augmentation: random zoom and shift on white, blur on half the images. {settings["steps"]} steps of batch
{settings["batch_size"]}, AdamW at {settings["learning_rate"]:g} with a cosine schedule, label smoothing 0.1:
{record["seconds"] / 60:.1f} min on the CPU that ran `make companion`.

Top-1 accuracy on the {record["evaluation_images"]} evaluation-pool images (identities it never saw):
**{record["evaluation_top1"]:.3f}** over {record["classes"]} classes.

It scores the label consistency of generated images (P(target), P(source)); see
`models/genie-companion/README.md`. Weights in half precision (`oracle.pt`); load with
`genie_utils.oracle.load_oracle`. Trained on OpenMoji (CC BY-SA 4.0).
""")
    return card


# --------------------------------------------------------------------------------------------------
# Label consistency of GeNIe outputs versus r


def label_consistency(generator, oracle: Oracle, pairs: pd.DataFrame, noise_ratios: Sequence[float], store,
                      class_names: dict[str, str], batch_size: int | None = None, progress: bool = True) -> pd.DataFrame:
    """GeNIe outputs of every pair at every r (one noise draw per pair), judged by the oracle.

    Returns one row per image: source and target class, r, P(target), P(source), the oracle's class."""
    jobs = [Job("genie", row.image_id, row.path, row.class_name, row.target_class, float(r))
            for r in noise_ratios for row in pairs.itertuples()]
    rows = run_jobs(generator, jobs, store, class_names, batch_size, progress)
    probabilities = oracle.probabilities([store.root / f for f in rows.file])
    return pd.DataFrame({
        "source_id": rows.source_id, "source_class": rows.source_class, "target_class": rows.target_class,
        "noise_ratio": rows.noise_ratio, "key": rows.key,
        "p_target": probabilities[np.arange(len(rows)), [oracle.index(c) for c in rows.target_class]],
        "p_source": probabilities[np.arange(len(rows)), [oracle.index(c) for c in rows.source_class]],
        "oracle_class": [oracle.classes[i] for i in probabilities.argmax(1)],
    })


def consistency_summary(table: pd.DataFrame, per_target_class: bool = False) -> pd.DataFrame:
    """Per r: mean P(target), mean P(source), the share the oracle labels target / source, and pairs.

    `per_target_class`: average within each target class first, then over classes (every class weighs the
    same, however many pairs it has)."""
    table = table.assign(says_target=table.oracle_class == table.target_class,
                         says_source=table.oracle_class == table.source_class)
    values = {"p_target": "mean", "p_source": "mean", "says_target": "mean", "says_source": "mean"}
    keys = ["noise_ratio", "target_class"] if per_target_class else ["noise_ratio"]
    means = table.groupby(keys).agg(values).assign(pairs=table.groupby(keys).size())
    if per_target_class:
        means = means.groupby("noise_ratio").agg({**values, "pairs": "sum"})
    return means.rename(columns={"says_target": "oracle_target", "says_source": "oracle_source"}).reset_index()


def crossover(summary: pd.DataFrame) -> float | None:
    """The first r at which mean P(target) exceeds mean P(source), linearly interpolated; None if never."""
    r, gap = summary.noise_ratio.to_numpy(), (summary.p_target - summary.p_source).to_numpy()
    for i in range(len(r)):
        if gap[i] > 0:
            return float(r[i]) if i == 0 else float(r[i - 1] + (r[i] - r[i - 1]) * -gap[i - 1] / (gap[i] - gap[i - 1]))
    return None
