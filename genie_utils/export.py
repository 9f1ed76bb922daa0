"""Export: a store's images as a dataset, `out/<target class>/<key>.png` with a `manifest.csv`, the layout
torchvision's ImageFolder reads, one image per (source, target, method). GeNIe-Ada's images are the candidates it
chose; the rest of its sweep goes out only when asked for."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from .store import Store, atomic_write, method_settings
from .validation import UsageError

EXPORT_MARK = ".genie-export"  # in every folder `export` wrote: only such a folder, or an empty one, is written again


def ada_candidates(manifest: pd.DataFrame, settings: dict) -> pd.Series:
    """Which rows of a store's manifest are GeNIe-Ada's candidates rather than GeNIe's images: the genie rows at a
    noise ratio other than the store's GeNIe ratio (`method_settings`; every genie row in a store where GeNIe ran
    only as GeNIe-Ada's sweep)."""
    ratio = settings.get("genie", {}).get("noise_ratio", [])
    ratios = manifest.get("noise_ratio", pd.Series(float("nan"), index=manifest.index))
    return (manifest.method == "genie") & ratios.notna() & ~ratios.isin(ratio if isinstance(ratio, list) else [ratio])


def export(store_root: str | Path, out: str | Path, methods: list[str] | None = None,
           candidates: bool = False) -> pd.DataFrame:
    """Copy the store's images into `out/<target class>/<key>.png` (one folder per label, as torchvision's
    ImageFolder reads), one per (source, target, method), for the given methods (default all); returns the exported
    rows, with a `candidate` column, and the number of candidates left out in `.attrs["candidates_left_out"]`.
    GeNIe-Ada rows point at the candidate they chose; the other images of its sweep (`ada_candidates`) are exported
    only with `candidates` (and genie among the methods). A rerun overwrites nothing that is already there.

    Checked before anything is written: `out` is new, empty or an earlier export whose images are all this store's
    and all among the rows exported now (a dataset folder, another store's export, or an export of other methods is
    none of these), every row's target class is one folder name and every row's image is a complete file inside the
    store (`Store.image_file`). Each image is copied atomically: a full disk names the file and leaves no part of it."""
    if not Path(store_root).is_dir():
        raise UsageError(f"no store folder {store_root}: name the folder that `genie generate --store` wrote into")
    store = Store(store_root)
    manifest = store.manifest()
    if manifest.empty:
        raise UsageError(f"the store {store.root} holds no images: run `genie generate` into it first")
    keys = set(manifest.key)
    candidate = ada_candidates(manifest, method_settings(store, manifest))
    if methods:
        unknown = sorted(set(methods) - set(manifest.method))
        if unknown:
            raise UsageError(f"no {unknown} images in {store.root}; it holds {sorted(manifest.method.unique())}")
        chosen = manifest.method.isin(methods)
    else:
        chosen = pd.Series(True, index=manifest.index)
    if candidates and not (chosen & candidate).any():
        among = f" among its {' and '.join(methods)} images" if candidate.any() else ""
        raise UsageError(f"--candidates: {store.root} holds no GeNIe-Ada candidates (genie images of its sweep)"
                         f"{among}: leave --candidates out" + (", or add genie to --method" if among else ""))
    if not candidates and not (chosen & ~candidate).any():
        ratios = ", ".join(f"{r:g}" for r in sorted(set(manifest.noise_ratio[chosen & candidate])))
        raise UsageError(f"the {' and '.join(methods or ['genie'])} images of {store.root} are all GeNIe-Ada's "
                         f"candidates (r = {ratios}), none of them GeNIe's own image or GeNIe-Ada's choice: add "
                         "--candidates to export them, or finish the GeNIe-Ada run (genie generate --method "
                         "genie_ada) and export its choices")
    left_out = int((chosen & candidate).sum()) if not candidates else 0
    manifest = manifest[chosen & (candidates | ~candidate)].assign(candidate=candidate)
    manifest.attrs["candidates_left_out"] = left_out
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / EXPORT_MARK).is_file())):
        raise UsageError(f"{out} is not empty and was not written by `genie export`: export into a new or empty "
                         "folder (a dataset folder would take the images in as real ones)")
    root = store.root.resolve()
    if (out / EXPORT_MARK).is_file():  # an earlier export: of this store (moved or copied alike), by its images' keys
        present = sorted(out.glob("*/*.png"))
        foreign = [p for p in present if p.stem not in keys]
        if foreign:
            raise UsageError(f"{out} holds images of another store (e.g. {foreign[0]}, not in {store.root}): export "
                             "into a new or empty folder, so that the manifest.csv of each export lists every image "
                             "in it")
        unlisted = [p for p in present if p.stem not in set(manifest.key)]
        if unlisted:
            raise UsageError(f"{out} holds {len(unlisted)} images of an earlier export of {store.root} that this one "
                             f"would not list (e.g. {unlisted[0]}: other --method or --candidates than then): export "
                             "into a new or empty folder, or with the earlier export's options, so that its "
                             "manifest.csv lists every image in it")
    files = {}
    for row in manifest.itertuples():
        label = row.target_class
        if not isinstance(label, str) or label in ("", ".", "..") or "/" in label or "\\" in label \
                or Path(label).name != label:
            raise UsageError(f"row {row.key} of {store.root} has target class {label!r}, which is not a folder name: "
                             "the store is damaged; delete that row and generate again")
        files[row.key] = store.image_file(row.key)  # inside the store, a complete PNG, else StoreDamageError
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_MARK).write_text(json.dumps({"store": str(root)}) + "\n")
    for row in manifest.itertuples():
        target = out / row.target_class / f"{row.key}.png"
        if not target.exists():
            atomic_write(target, _copy_of(files[row.key]))
    atomic_write(out / "manifest.csv", lambda f: manifest.to_csv(f, index=False))
    return manifest


def _copy_of(source: Path):
    """A writer (for `atomic_write`) that copies `source`'s bytes."""
    def write(f):
        with open(source, "rb") as original:
            shutil.copyfileobj(original, f)
    return write


def summary(rows: pd.DataFrame, out: str | Path) -> str:
    """One line on what `export` wrote into `out` (its returned `rows`): images, class folders, images per method,
    and the GeNIe-Ada candidates it left out."""
    kinds = rows.groupby(rows.method.where(~rows.candidate, "genie_ada candidate"), sort=True).size()
    left_out = rows.attrs["candidates_left_out"]
    return (f"{len(rows)} images in {rows.target_class.nunique()} class folders under {out}: "
            + ", ".join(f"{n} {kind}" for kind, n in kinds.items())
            + (f"; {left_out} GeNIe-Ada candidates left out (--candidates exports them)" if left_out else ""))
