"""The store: generated images on disk, each beside its manifest row.

Layout under a store root:
    images/<method>/<key>.png     the image
    rows/<key[:2]>/<key>.json     its manifest row, written last: a row exists only for a complete image

The key is a hash of everything that determines the image, so a rerun finds what exists and skips
it, many processes can fill one store without coordination (the same job writes the same bytes), and an
interrupted run leaves at most temporary files, which readers ignore and `clean` removes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

TEMPORARY_PREFIX = ".tmp-"


def spec_key(spec: dict) -> str:
    """A 20-hex-digit key from a JSON-able specification (order of keys does not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def atomic_write(path: Path, write) -> None:
    """Write through `write(file_object)` into a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Store:
    """A folder of generated images and their manifest rows."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def _row_path(self, key: str) -> Path:
        return self.root / "rows" / key[:2] / f"{key}.json"

    def image_path(self, method: str, key: str) -> Path:
        return self.root / "images" / method / f"{key}.png"

    def has(self, key: str) -> bool:
        return self._row_path(key).is_file()

    def put(self, key: str, image: Image.Image, row: dict) -> dict:
        """Write the image, then its row (the row marks the pair complete). Returns the row as stored."""
        path = self.image_path(row["method"], key)
        atomic_write(path, lambda f: image.save(f, format="PNG"))
        return self.put_row(key, {**row, "file": str(path.relative_to(self.root))})

    def put_row(self, key: str, row: dict) -> dict:
        """Write a row for an image already in the store (`row["file"]`), e.g. GeNIe-Ada's choice among
        candidates: the selection is recorded without copying the image."""
        if not (self.root / row["file"]).is_file():
            raise FileNotFoundError(f"row {key} points at {row['file']}, which is not in {self}")
        row = {**row, "key": key}
        atomic_write(self._row_path(key), lambda f: f.write((json.dumps(row, sort_keys=True) + "\n").encode()))
        return row

    def row(self, key: str) -> dict:
        try:
            return json.loads(self._row_path(key).read_text())
        except FileNotFoundError:
            raise KeyError(f"no image with key {key} in {self}") from None

    def load_image(self, key: str) -> Image.Image:
        with Image.open(self.root / self.row(key)["file"]) as image:
            return image.convert("RGB")

    def manifest(self) -> pd.DataFrame:
        """Every complete image's row, one per line, sorted by key (a tidy table; empty if none)."""
        rows = []
        for path in sorted((self.root / "rows").glob("*/*.json")):
            rows.append(json.loads(path.read_text()))
        table = pd.DataFrame(rows)
        return table.sort_values("key", ignore_index=True) if len(table) else table

    def export_manifest(self, path: str | os.PathLike | None = None) -> Path:
        """Write the manifest as one CSV (default `<root>/manifest.csv`), atomically."""
        path = Path(path) if path else self.root / "manifest.csv"
        table = self.manifest()
        atomic_write(path, lambda f: f.write(table.to_csv(index=False).encode()))
        return path

    def clean(self, older_than_seconds: float = 600.0) -> int:
        """Remove temporary files left by interrupted runs (only old ones: others may be in flight)."""
        removed = 0
        now = time.time()
        for path in self.root.rglob(f"{TEMPORARY_PREFIX}*"):
            if now - path.stat().st_mtime >= older_than_seconds:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
