"""The generator pool: the images the companion model trains on.

The embedded dataset's generator-pool images (`splits.GENERATOR`; the evaluation pool is never trained on), and,
where a profile asks for them, the same emoji drawn in other emoji styles. The companion's training packs these
images, and the editing benchmark's copy test compares every output with them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data import load_dataset
from .emoji_styles import style_renderings
from .images import images_tensor
from .profiles import resolve
from .splits import GENERATOR, pool_images


def captioned_images(profile: dict, renderings=(), style_captions: bool = False):
    """The generator pool's images as a tensor in [-1, 1] (N, 3, H, W), their prompts, and their rows (with a
    `style` column). `renderings`: other emoji styles (`emoji_styles.EMOJI_STYLES`) whose drawings of the same emoji follow
    the dataset's own, with the same identities and classes (`emoji_styles.style_renderings`), and the same prompts; with
    `style_captions`, their class names (and so every caption) start with the style's name ("twitter face
    smiling"), so that the plain prompts of the recipe ask for the dataset's own style."""
    if renderings and profile["dataset"]["kind"] != "openmoji":
        raise ValueError(f"profile {profile['name']!r}: emoji renderings {list(renderings)} need the openmoji dataset, "
                         f"not {profile['dataset']['kind']!r}; remove `renderings` from its [companion] tables")
    train = pool_images(profile, load_dataset(profile, progress=False), GENERATOR)
    images, rows = list(train.path), [train.assign(style=profile["dataset"]["kind"])]
    for style in renderings:
        more, drawn = style_renderings(train, style, styles_cache(resolve(profile, profile["dataset"]["cache_dir"])),
                                       profile["dataset"]["resolution"])
        if style_captions:
            more = more.assign(display_name=[f"{style} {name}" for name in more.display_name])
        rows.append(more)
        images += drawn
    train = pd.concat(rows, ignore_index=True)
    template = profile["generation"]["prompt_template"]
    return images_tensor(images), [template.format(name) for name in train.display_name], train


def styles_cache(dataset_cache: Path) -> Path:
    """Where the other emoji styles are downloaded: beside the dataset's renders, in its cache folder
    `dataset_cache` (a profile's `[dataset] cache_dir`)."""
    return Path(dataset_cache) / "styles"


def companion_renderings(profile: dict) -> list[str]:
    """Every emoji style the profile's companion trains on, in the training or the fine-tuning (in order, once)."""
    spec = profile.get("companion", {})
    return list(dict.fromkeys([*spec.get("training", {}).get("renderings", ()),
                               *spec.get("finetune", {}).get("renderings", ())]))
