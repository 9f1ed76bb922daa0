"""A user's dataset from local class folders (mini-/tiered-ImageNet episodes, ImageNet-LT) and class-name files,
checked at load time: every problem is named with its fix before any work starts."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pandas as pd

from .images import COLUMNS, IMAGE_EXTENSIONS, ImageReadError, check_image_file
from .validation import WORDNET_ID


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
