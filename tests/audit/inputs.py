"""The inputs the cases build (datasets drawn in PIL, PNGs written byte by byte, class-name files, copies of the
world's store) and the checks of an accepted command-line run's result."""
from __future__ import annotations

import csv
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .harness import Outcome, generate

# The opening of a library case that generates: the world's tiny model, 4 steps, batches of 2.
GENERATOR = '''
from genie_utils.generate import GenieGenerator, genie, img2img, txt2img
from genie_utils.recipe import Recipe
generator = GenieGenerator.from_pretrained(V["model"], Recipe(num_inference_steps=4), device="cpu", batch_size=2)
'''
COLOURS = {"apple": "red", "boat": "blue", "cloud": "grey"}


def draw(colour, size=(64, 64), n=0) -> Image.Image:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).ellipse((8 + 8 * n, 8, size[0] - 8, size[1] - 8 - 8 * n), fill=colour)
    return image


def make_dataset(folder: Path, classes=("apple", "boat"), per_class: int = 2, suffix: str = ".png") -> Path:
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            draw(COLOURS.get(name, "green"), n=n).save(folder / name / f"{n}{suffix}")
    return folder


def read_rows(store: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((store / "rows").glob("*/*.json"))]


def process_start(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def copy_data(world, folder: Path, three: bool = False) -> Path:
    return Path(shutil.copytree(world.data3 if three else world.data, folder / "data"))


def copy_store(world, folder: Path) -> Path:
    return Path(shutil.copytree(world.store, folder / "store"))


def out_path(folder: Path) -> Path:
    """An export folder two levels down, so that a path that climbs out of it stays inside the case folder."""
    (folder / "x" / "y").mkdir(parents=True, exist_ok=True)
    return folder / "x" / "y" / "out"


def names_file(f: Path, text, name="names.txt", encoding="utf-8") -> Path:
    path = f / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


def wordnet(w, f, names=True):
    """`genie generate` on a dataset of two WordNet-id folders, with a class-names file for them unless `names` is
    False."""
    data = f / "data"
    for wnid, colour in (("n01234567", "red"), ("n07654321", "blue")):
        (data / wnid).mkdir(parents=True)
        for n in range(2):
            draw(colour, n=n).save(data / wnid / f"{n}.png")
    extra = ["--class-names", names_file(f, "n01234567 house finch, linnet\nn07654321 canoe\n")] if names else []
    return generate(w, data, f / "store", *extra)


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gradient16(width=64, height=64, channels=1, alpha=False) -> bytes:
    """A 16-bit PNG whose grey levels run 0 ... 65535 across each row (mean 127.5 in 8 bits)."""
    values = np.round(np.linspace(0, 65535, width))
    row = np.stack([values] * channels + ([np.full(width, 65535)] if alpha else []), axis=1).astype(">u2").tobytes()
    colour_type = {(1, False): 0, (1, True): 4, (3, False): 2, (3, True): 6}[(channels, alpha)]
    return png_bytes(width, height, 16, colour_type, [row] * height)


def edit_json(path: Path, edit):
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


# --------------------------------------------------------------------------------------------------
# Checks of accepted command-line runs


def rows_check(count: int, method: str | None = None, prompt: str | None = None, field_values: dict | None = None):
    def check(folder: Path, outcome: Outcome) -> str | None:
        rows = read_rows(folder / "store")
        if method:
            rows = [r for r in rows if r.get("method") == method]
        if len(rows) != count:
            return f"{len(rows)} {method or ''} rows, expected {count}"
        for row in rows:
            image = folder / "store" / row["file"]
            try:
                with Image.open(image) as opened:
                    opened.load()
                    if opened.size != (64, 64):
                        return f"{image.name} is {opened.size}"
            except Exception as error:  # noqa: BLE001 - any unreadable image is the finding
                return f"{image} unreadable: {error}"
            if row.get("source_class") == row.get("target_class") and row.get("method") == "genie":
                return f"row {row['key']} pairs a class with itself"
            if prompt and prompt not in row.get("prompt", ""):
                return f"prompt {row.get('prompt')!r} lacks {prompt!r}"
            for key, value in (field_values or {}).items():
                if row.get(key) != value:
                    return f"row {row['key']}: {key} = {row.get(key)!r}, expected {value!r}"
        return None
    return check


def export_check(count: int):
    def check(folder: Path, outcome: Outcome) -> str | None:
        out = folder / "x" / "y" / "out"
        files = sorted(p for p in out.rglob("*.png"))
        if len(files) != count:
            return f"{len(files)} images exported, expected {count}"
        bad = [p for p in files if p.parent.parent != out]
        if bad:
            return f"{bad[0]} is not OUT/<class>/<key>.png"
        with open(out / "manifest.csv") as f:
            rows = list(csv.DictReader(f))
        if len(rows) != count:
            return f"manifest.csv lists {len(rows)} rows for {count} images"
        extra = [p for p in out.rglob("*") if p.is_file() and p.suffix not in (".png", ".csv")
                 and p.name != ".genie-export"]
        return f"stray files {extra[:3]}" if extra else None
    return check


def unchanged_rows(folder: Path, outcome: Outcome) -> str | None:
    changed = [p for p in outcome.written if p.startswith("store/rows/") or p.startswith("store/images/")]
    return f"changed {changed[:3]}" if changed else rows_check(4)(folder, outcome)

