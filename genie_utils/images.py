"""Image files: decoded as RGB the way a photo viewer shows them, checked cheaply before a run, hashed, and
stacked as tensors. Every dataset is a table with one row per image file (COLUMNS)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# The raster formats Pillow decodes itself (those this Pillow build lacks, e.g. AVIF, drop out); other files in a
# class folder are skipped with a warning that names them.
IMAGE_EXTENSIONS = tuple(e for e in (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".webp",
                                     ".tif", ".tiff", ".gif", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".qoi", ".avif")
                         if Image.registered_extensions().get(e) in Image.OPEN)
# A dataset's columns: `image_id` (stable, unique), `class_name` (the label), `display_name` (the class as written
# in prompts), `identity` (images of one identity must never sit on both sides of a split), `name`, `path`.
COLUMNS = ["image_id", "class_name", "display_name", "identity", "name", "path"]


class ImageReadError(ValueError):
    """An image file that is missing, unreadable or corrupt."""


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


def images_tensor(images) -> torch.Tensor:
    """Image paths or PIL images as one float tensor in [-1, 1], (N, 3, H, W) (all of one size)."""
    pixels = np.stack([np.asarray(to_rgb(i) if isinstance(i, Image.Image) else load_image(i), dtype=np.float32)
                       for i in images])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2) / 127.5 - 1.0


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
