"""The same emoji in other styles, downloaded once from the npm registry: more renderings of the generator pool's
identities for the companion's fine-tuning (against copying). Never used for the evaluation pool, nor by any
classifier."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from .images import load_image

# style: (npm package, version, the tarball's sha512 as the registry lists it, the images' origin and licence)
EMOJI_STYLES = {
    "google": ("emoji-datasource-google", "16.0.0",
               "ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
               "Noto Emoji (Google), Apache-2.0"),
    "twitter": ("emoji-datasource-twitter", "16.0.0",
                "7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
                "Twemoji (Twitter), CC-BY 4.0"),
}
NPM_REGISTRY = "https://registry.npmjs.org"
# The styles' 64 px images fill their canvas (mean glyph span 61-64 px); scaled to 3/4 of the side and centred on
# white, they span about what the OpenMoji renders do (47 px of 64 on average).
STYLE_SCALE = 0.75


def _style_spec(style: str) -> tuple[str, str, str, str]:
    if style not in EMOJI_STYLES:
        raise ValueError(f"unknown emoji style {style!r}; use one of {sorted(EMOJI_STYLES)}")
    return EMOJI_STYLES[style]


def fetch_emoji_style(style: str, cache_dir: str | os.PathLike, progress: bool = True) -> Path:
    """The folder of `style`'s 64 px PNGs (`<code points, lower case>.png`, as emoji-datasource names them) and its
    LICENSE, under `cache_dir`: downloaded once from the npm registry (pinned version, checked against the
    registry's sha512), then read from there. The folder appears atomically: an interrupted download or
    extraction leaves no half-filled folder."""
    package, version, integrity, _ = _style_spec(style)
    final = Path(cache_dir) / f"{package}-{version}"
    if (final / "LICENSE").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    url = f"{NPM_REGISTRY}/{package}/-/{package}-{version}.tgz"
    work = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=final.parent))
    try:
        tarball, digest = work / "package.tgz", hashlib.sha512()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tarball, "wb") as out, \
                    tqdm(total=int(response.headers.get("Content-Length") or 0), unit="B", unit_scale=True,
                         desc=f"downloading {package} {version}", disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        except (urllib.error.URLError, OSError) as error:
            raise RuntimeError(f"cannot download the {style} emoji images from {url} ({error}). Retry with access to "
                               f"the npm registry, or unpack that file's package/img/{style}/64/ and package/LICENSE "
                               f"into {final}/ by hand.") from error
        if base64.b64encode(digest.digest()).decode() != integrity:
            raise RuntimeError(f"{url} does not have the pinned sha512 (a changed or damaged download); nothing was "
                               "kept. Retry; if it persists, the registry's file differs from the pinned one.")
        prefix = f"package/img/{style}/64/"
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and
                       (m.name == "package/LICENSE" or (m.name.startswith(prefix) and m.name.endswith(".png")))]
            for member in members:
                member.name = Path(member.name).name
            archive.extractall(work / "images", members=members, filter="data")
        if final.exists():
            shutil.rmtree(final)
        os.replace(work / "images", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def style_image(path: str | os.PathLike, resolution: int = 64) -> Image.Image:
    """One emoji-datasource image drawn like the OpenMoji renders: on white, scaled to STYLE_SCALE of a
    `resolution` side and centred, RGB."""
    size = round(resolution * STYLE_SCALE)
    canvas = Image.new("RGB", (resolution, resolution), "white")
    canvas.paste(load_image(path).resize((size, size), Image.Resampling.LANCZOS),
                 ((resolution - size) // 2, (resolution - size) // 2))
    return canvas


def style_renderings(rows: pd.DataFrame, style: str, cache_dir: str | os.PathLike, resolution: int = 64,
                     progress: bool = True) -> tuple[pd.DataFrame, list[Image.Image]]:
    """`rows`' emoji (dataset rows) as `style` draws them, where it has them: the rows with a `style` column and
    `path` pointing at the style's file, and the images (`style_image`). Same identities, classes and prompts."""
    folder = fetch_emoji_style(style, cache_dir, progress)
    files = [folder / f"{image_id.lower()}.png" for image_id in rows.image_id]
    have = np.array([f.is_file() for f in files], dtype=bool)
    kept = rows[have].assign(style=style, path=[str(f) for f, h in zip(files, have) if h])
    return kept.reset_index(drop=True), [style_image(path, resolution) for path in kept.path]
