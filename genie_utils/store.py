"""The store: generated images on disk, each beside its manifest row.

Layout under a store root:
    images/<method>/<key>.png     the image
    rows/<key[:2]>/<key>.json     its manifest row, written last: a row exists only for a complete image
    claims/<key>                  a worker is making this image now (pid, its start time, host, time)
    methods/<method>.json         that method's settings beyond the recipe (GeNIe's noise ratio, GeNIe-Ada's
                                  backbone), as `genie generate` recorded them before its first image

The key is a hash of everything that determines the image (20 hex digits, `spec_key`), so a rerun finds what exists
and skips it; every method that takes a key refuses anything else, so that no key names a file outside the store.
Several processes can fill one store: each claims a key before making its image, so none makes another's,
and a row once written is never replaced (a resumed run cannot mix two versions of a key). An interrupted
run leaves at most temporary files and a claim; the next claim of that key removes both, and a rerun removes the
claims of every key whose row exists. A claim is stale, and taken over, when its process is gone (same host; a
process id reused by another process, or a claim that does not record its process's start time, counts as gone) or
when its holder has not refreshed it (`heartbeat`) for CLAIM_STALE_SECONDS, whichever host holds it. A row file that
is not a JSON object of its own key, a row that names no file or one outside the store, and an image that is gone,
empty or not a complete PNG are damage: `has` removes the row with a warning naming the file, so that the next run
makes the image again, and reading it names the file and the fix (`StoreDamageError`). A store lies outside the
dataset it is made from (`check_store_folder`) and holds one version of its images, one image of each pair per method
(`check_one_version`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
from PIL import Image

from .validation import UsageError, seconds_setting

TEMPORARY_PREFIX = ".tmp-"
HALF_WRITTEN_CLAIM_SECONDS = 10.0  # a claim file still empty after this long lost its writer
CLAIM_HEARTBEAT_SECONDS = 30.0  # how often a worker refreshes the claims it holds (their modification time), at most
CLAIM_STALE_SECONDS = 300.0  # a claim not refreshed for this long is taken over (GENIE_CLAIM_STALE_SECONDS)
SETTINGS_FOLDER = "methods"
_METHOD_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_KEY = re.compile(r"^[0-9a-f]{20}$")  # what `spec_key` makes
# A PNG file starts with its signature and ends with the IEND chunk (empty, so always these 12 bytes)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def claim_stale_seconds() -> float:
    """GENIE_CLAIM_STALE_SECONDS, or CLAIM_STALE_SECONDS when unset: a positive number of seconds. Workers refresh
    their claims at least three times within it (`heartbeat`), so that a live worker's claim is never taken over."""
    return seconds_setting("GENIE_CLAIM_STALE_SECONDS", os.environ.get("GENIE_CLAIM_STALE_SECONDS"), CLAIM_STALE_SECONDS)


def _is_complete_png(path: Path) -> bool:
    """Whether a file starts with PNG's signature and ends with its IEND chunk (two small reads, no decoding)."""
    with open(path, "rb") as f:
        start = f.read(len(PNG_SIGNATURE))
        f.seek(max(0, path.stat().st_size - len(PNG_END)))
        return start == PNG_SIGNATURE and f.read() == PNG_END


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux's /proc/<pid>/stat); None where unknown.
    A process id that the system gave to a new process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces
    except (OSError, ValueError, IndexError):
        return None


class _Heartbeat:
    def __init__(self, paths: list[Path], every: float):
        self.paths, self.every, self.stop = paths, every, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="claim-heartbeat")

    def _beat(self):
        while not self.stop.wait(self.every):
            for path in self.paths:
                try:
                    os.utime(path)
                except OSError:
                    pass  # released meanwhile

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class StoreDamageError(ValueError):
    """A store file that cannot be what it should (a row that is not JSON, an image gone or empty)."""


def spec_key(spec: dict) -> str:
    """A 20-hex-digit key from a JSON-able specification (order of keys does not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def atomic_write(path: Path, write) -> None:
    """Write through `write(file_object)` into a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name starts with the final one, so that leftovers of a killed writer can be found
    descriptor, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):  # the raw message names no file
            raise OSError(error.errno, f"{error.strerror} while writing {path}: free space on that disk (or quota), "
                                       "or write somewhere else; nothing half-written was kept") from error
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Store:
    """A folder of generated images and their manifest rows."""

    def __init__(self, root: str | os.PathLike):
        if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
            raise ValueError(f"store root {root!r} is no folder path: give the folder the store keeps its images in "
                             "(it is made if missing)")
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"store root {self.root} is a file, not a folder: name a folder (it is made if "
                                     "missing), or move the file away")

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @staticmethod
    def check_key(key: str) -> str:
        """`key` if it is a store key (20 lower-case hex digits, as `spec_key` makes them), else a ValueError: a key
        names files inside the store, so nothing else may reach a path."""
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"{key!r} is not a store key: a key is 20 lower-case hex digits, as `spec_key` (and the "
                             "jobs of `genie_utils.jobs`) make them; pass the key such a function gave")
        return key

    def _row_path(self, key: str) -> Path:
        key = self.check_key(key)
        return self.root / "rows" / key[:2] / f"{key}.json"

    def image_path(self, method: str, key: str) -> Path:
        if not isinstance(method, str) or not _METHOD_NAME.match(method):
            raise ValueError(f"method {method!r} is not a valid store folder name (lower-case letters, digits and "
                             "underscores)")
        return self.root / "images" / method / f"{self.check_key(key)}.png"

    def has(self, key: str) -> bool:
        """Whether `key`'s image is complete: its row parses and names a non-empty image file. A damaged key's row
        is removed, with a warning naming the file, so that the key is made again (a row that another worker
        removes meanwhile is simply absent)."""
        path = self._row_path(key)
        if not path.is_file():
            return False
        try:
            self.image_file(key)
        except KeyError:  # removed between the two reads
            return False
        except StoreDamageError as damage:
            warnings.warn(f"{damage}; its row is removed and the image will be made again", stacklevel=2)
            path.unlink(missing_ok=True)
            return False
        return True

    def _claim_path(self, key: str) -> Path:
        return self.root / "claims" / self.check_key(key)

    def claim(self, key: str) -> bool:
        """Take the right to make `key`'s image; False if another live worker holds it.

        A claim whose process has died (same host) or that is older than CLAIM_STALE_SECONDS is taken over,
        and the temporary files its writer may have left are removed."""
        path = self._claim_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self._claim_is_stale(path):
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as f:
                json.dump({"pid": os.getpid(), "started": process_start(os.getpid()), "host": socket.gethostname(),
                           "time": time.time()}, f)
            for leftover in [*self.root.glob(f"images/*/{TEMPORARY_PREFIX}{key}.png.*"),
                             *self._row_path(key).parent.glob(f"{TEMPORARY_PREFIX}{key}.json.*")]:
                leftover.unlink(missing_ok=True)
            return True
        return False

    @staticmethod
    def _claim_is_stale(path: Path) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
            holder = json.loads(path.read_text())
        except OSError:
            return True  # gone meanwhile: claim again (O_EXCL decides who gets it)
        except ValueError:  # half-written: its writer is between creating and filling it, or died there
            return age > HALF_WRITTEN_CLAIM_SECONDS
        if age > claim_stale_seconds():
            return True  # its holder stopped refreshing it: dead, hung, or on a host that is gone
        if holder.get("host") == socket.gethostname():
            if holder.get("pid") == os.getpid():
                return True  # left by an interrupted run of this very process
            try:
                pid = int(holder["pid"])
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except (PermissionError, KeyError, ValueError, TypeError):
                return False
            started = holder.get("started")
            if started is None:  # its owner cannot be confirmed: stale where this host records start times
                return process_start(os.getpid()) is not None
            return process_start(pid) not in (None, started)  # the pid was reused
        return False

    def heartbeat(self, keys, every: float | None = None):
        """A context manager that refreshes the claims of `keys` every `every` seconds (default CLAIM_HEARTBEAT_SECONDS,
        or a third of `claim_stale_seconds()` when that is shorter) from a background thread while the caller makes
        their images, so that other workers never take them over."""
        every = min(CLAIM_HEARTBEAT_SECONDS, claim_stale_seconds() / 3) if every is None else every
        return _Heartbeat([self._claim_path(k) for k in keys], every)

    def claim_holder(self, key: str) -> str:
        """Who holds `key`'s claim, in words (for a worker that waits on it)."""
        try:
            holder = json.loads(self._claim_path(key).read_text())
            return f"process {holder.get('pid')} on {holder.get('host')}"
        except (OSError, ValueError):
            return "no one any more"

    def release(self, key: str) -> None:
        self._claim_path(key).unlink(missing_ok=True)

    def put(self, key: str, image: Image.Image, row: dict) -> dict:
        """Write the image, then its row (the row marks the pair complete). Returns the row as stored.

        A key already in the store is left as it is (its stored row is returned): one key, one version."""
        path = self.image_path(row.get("method"), key)  # checks the key and the method before anything is read
        if self.has(key):
            return self.row(key)
        atomic_write(path, lambda f: image.save(f, format="PNG"))
        return self.put_row(key, {**row, "file": str(path.relative_to(self.root))})

    def put_row(self, key: str, row: dict) -> dict:
        """Write a row for an image already in the store (`row["file"]`), e.g. GeNIe-Ada's choice among
        candidates: the selection is recorded without copying the image."""
        self.check_key(key)
        file = self.root / str(row.get("file", ""))
        if not file.resolve().is_relative_to(self.root.resolve()) or file.resolve() == self.root.resolve():
            raise ValueError(f"row {key} names the file {row.get('file')!r}, which is no file inside {self}")
        if not file.is_file():
            raise FileNotFoundError(f"row {key} points at {row['file']}, which is not in {self}")
        row = {**row, "key": key}
        atomic_write(self._row_path(key), lambda f: f.write((json.dumps(row, sort_keys=True) + "\n").encode()))
        return row

    def row(self, key: str) -> dict:
        return self._read_row(self._row_path(key), key)

    def _read_row(self, path: Path, key: str | None = None) -> dict:
        """A row file's row: a JSON object whose key is the file's name (else `StoreDamageError`)."""
        try:
            row = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyError(f"no image with key {key or path.stem} in {self}") from None
        except (ValueError, UnicodeDecodeError):
            raise StoreDamageError(f"store row {path} is damaged (not JSON): delete it, and the next run makes "
                                   "its image again") from None
        if not isinstance(row, dict) or row.get("key") != path.stem:
            what = (f"its key {row.get('key')!r} is not its file name" if isinstance(row, dict)
                    else f"a JSON {type(row).__name__}, not an object")
            raise StoreDamageError(f"store row {path} is damaged ({what}): delete it, and the next run makes its "
                                   "image again")
        return row

    def image_file(self, key: str) -> Path:
        """The path of `key`'s image, checked to lie inside the store and to be a complete PNG file (else
        `StoreDamageError`)."""
        row_path, file = self._row_path(key), self.row(key).get("file")
        if not isinstance(file, str) or not file:
            raise StoreDamageError(f"store row {row_path} is damaged (it names no image file): delete it, and the "
                                   "next run makes its image again")
        path = self.root / file
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise StoreDamageError(f"store row {row_path} names the file {file!r}, outside the store: delete the "
                                   "row, and the next run makes its image again")
        state = ("missing" if not path.is_file() else "empty (zero bytes)" if path.stat().st_size == 0
                 else None if _is_complete_png(path) else "not a complete PNG file (cut short or overwritten)")
        if state:
            raise StoreDamageError(f"store image {path} of key {key} is {state}: delete its row {row_path}, and the "
                                   "next run makes it again")
        return path

    def load_image(self, key: str) -> Image.Image:
        file = self.image_file(key)
        try:
            with Image.open(file) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError) as error:
            raise StoreDamageError(f"store image {file} of key {key} cannot be read ({error}): delete its row "
                                   f"{self._row_path(key)}, and the next run makes it again") from error

    def manifest(self) -> pd.DataFrame:
        """Every complete image's row, one per line, sorted by key (a tidy table; empty if none)."""
        rows = []
        for path in sorted((self.root / "rows").glob("*/*.json")):
            rows.append(self._read_row(path))
        table = pd.DataFrame(rows)
        return table.sort_values("key", ignore_index=True) if len(table) else table

    def settings(self) -> dict:
        """The settings recorded per method under `methods/` ({method: {setting: value}}, `write_settings`), empty
        for a store without records. A file that is not a JSON object is `StoreDamageError`, naming it."""
        folder = self.root / SETTINGS_FOLDER
        recorded = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                settings = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                settings = None
            if not isinstance(settings, dict):
                raise StoreDamageError(f"store file {path} is damaged (not a JSON object of the method's settings): "
                                       "delete it, and the next genie generate records them again from the rows")
            recorded[path.stem] = settings
        return recorded

    def write_settings(self, method: str, settings: dict) -> None:
        """Record one method's `settings` as `methods/<method>.json`, atomically. Each method has its own file, so
        that runs of two methods started at once never overwrite each other's record."""
        if not _METHOD_NAME.match(method):
            raise ValueError(f"method {method!r} is not a valid store folder name (lower-case letters, digits, _)")
        text = json.dumps(settings, sort_keys=True, indent=1) + "\n"
        atomic_write(self.root / SETTINGS_FOLDER / f"{method}.json", lambda f: f.write(text.encode()))

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


WAIT_MESSAGE_SECONDS = 60.0  # how often a worker waiting on others' claims says so


def claimed_batches(store: Store, items: list, key_of, batch_size: int, done=None, poll_seconds: float = 1.0):
    """Yield batches of `items` not yet done (default: `key_of(item)` in the store), each claimed first.

    Items another live worker has claimed are skipped, then waited for (polling the store), and taken over
    if that worker's claim goes stale: parallel workers on one store share the work and never duplicate it.
    The caller writes each item into the store; claims are released after each batch."""
    claim_stale_seconds()  # a bad GENIE_CLAIM_STALE_SECONDS is named before any work, not when a claim is first met
    done = done or (lambda item: store.has(key_of(item)))
    pending = []
    for item in items:
        if done(item):
            store.release(key_of(item))  # a claim left by a run killed after its rows were written
        else:
            pending.append(item)
    said = float("-inf")
    while pending:
        waiting, batch = [], []
        for item in pending:
            if done(item):
                continue
            if len(batch) < batch_size and store.claim(key_of(item)):
                if done(item):  # finished by another worker between the check above and the claim
                    store.release(key_of(item))
                    continue
                batch.append(item)
            else:
                waiting.append(item)
        if batch:
            try:
                with store.heartbeat([key_of(item) for item in batch]):  # so that no worker takes them over
                    yield batch
            finally:
                for item in batch:
                    store.release(key_of(item))
        elif waiting:  # every remaining job is being made by another worker
            if time.monotonic() - said > WAIT_MESSAGE_SECONDS:
                said = time.monotonic()
                print(f"waiting for {len(waiting)} image{'s' * (len(waiting) != 1)} that other workers are making (the first held by "
                      f"{store.claim_holder(key_of(waiting[0]))}); a claim not refreshed for {claim_stale_seconds():g} s "
                      "is taken over (GENIE_CLAIM_STALE_SECONDS)", file=sys.stderr, flush=True)
            time.sleep(poll_seconds)
        pending = waiting


def check_store_folder(store: Path, dataset: Path) -> None:
    """A store is a folder (new or not), outside the dataset folder: inside it (or the folder itself) it would be read
    as a class by the next run."""
    if store.exists() and not store.is_dir():
        raise UsageError(f"--store {store} is a file, not a store folder: give a new folder, or one genie generate "
                         "wrote")
    store, dataset = store.resolve(), dataset.resolve()
    if store == dataset or store.is_relative_to(dataset):
        raise UsageError(f"--store {store} lies inside the dataset folder {dataset}: the next run would read the store "
                         "as a class folder; give a --store outside the dataset")


# --------------------------------------------------------------------------------------------------
# One version per store

SETTING_NAMES = {"noise_ratio": "--noise-ratio", "backbone": "--backbone", "backbone_key": "backbone weights"}


def _setting(name: str, value) -> str:
    shown = " and ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in (value if isinstance(value, list)
                                                                                 else [value]))
    return f"{SETTING_NAMES.get(name, name)} {shown}"


def method_settings(store: Store, manifest: pd.DataFrame | None = None) -> dict:
    """The settings beyond the recipe each method's images in the store were made with ({method: {setting: value}}:
    GeNIe's `noise_ratio`, GeNIe-Ada's `backbone`): those `genie generate` recorded (`Store.settings`); for a method
    without a record (images written by the library), what its rows show: the ratio of the genie rows that no
    genie_ada row lists as a candidate (a list when there are several), the genie_ada rows' backbone. `manifest`: the
    store's, when read already."""
    recorded = store.settings()
    manifest = store.manifest() if manifest is None else manifest
    if manifest.empty:
        return recorded
    settings = {}
    listed = {k for keys in manifest.get("candidate_keys", pd.Series(dtype=object)).dropna() for k in keys}
    plain = manifest[(manifest.method == "genie") & ~manifest.key.isin(listed)]
    ratios = sorted(set(plain.get("noise_ratio", pd.Series(dtype=float)).dropna()))
    if ratios:
        settings["genie"] = {"noise_ratio": ratios[0] if len(ratios) == 1 else ratios}
    backbones = sorted(set(manifest[manifest.method == "genie_ada"].get("backbone", pd.Series(dtype=object))
                           .dropna()))
    if backbones:
        settings["genie_ada"] = {"backbone": backbones[0] if len(backbones) == 1 else backbones}
    return {**settings, **recorded}


def check_one_version(store: Store, version: dict, prompts: dict[str, str] | None = None, method: str | None = None,
                      settings: dict | None = None) -> dict:
    """A store holds one version of its images (`jobs.version_spec`: model, recipe, size, dtype, base seed, and
    the prompt of each class, `prompts`: class -> prompt, which the template and the class names make), and of each
    method one image per (source, target) pair: `method`'s `settings` beyond the recipe (GeNIe's noise ratio,
    GeNIe-Ada's backbone) must be those its images in the store were made with (`method_settings`). A run that
    would add a second version, or a second image of each pair, is refused before any image is made, so that export
    never ships a pair twice. Returns the store's settings per method (`method_settings`)."""
    fields = sorted(set(version) | {"guidance_timesteps"})  # set only for a limited guidance interval

    def plain(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    mine = {f: version.get(f) for f in fields}
    manifest = store.manifest()
    for row in manifest.to_dict("records"):
        differing = [f for f in fields if plain(row.get(f)) != mine[f]]
        if differing:
            shown = ", ".join(f"{f} {plain(row.get(f))!r} there, {mine[f]!r} now" for f in differing)
            raise UsageError(f"the store {store.root} holds images of another version ({shown}): generate into "
                             "another --store, so that one store never holds a pair twice")
        target = row.get("target_class")
        if prompts and target in prompts and row.get("prompt") != prompts[target]:
            raise UsageError(f"the store {store.root} holds images of another version (prompt {row.get('prompt')!r} "
                             f"there for class {target}, {prompts[target]!r} now: another --prompt-template or "
                             "--class-names): generate into another --store, so that one store never holds a pair twice")
    known = method_settings(store, manifest)
    there = known.get(method, {})
    differing = [f for f in (settings or {}) if f in there and there[f] != settings[f]]
    options = [f for f in differing if SETTING_NAMES.get(f, "").startswith("--")]  # the others follow from them
    if differing:
        differing = options or differing
        made, now = (", ".join(_setting(f, values[f]) for f in differing) for values in (there, settings))
        hint = (f" (or give {made} to add to this one)"
                if options and not any(isinstance(there[f], list) for f in differing) else "")
        raise UsageError(f"the store {store.root} holds {method} images made with {made}, not {now}: this run would "
                         f"add a second {method} image of each (source, target) pair; generate into another --store"
                         + hint)
    return known
