"""Your own data, audited: every entry point a new user calls, fed the inputs that go wrong, one subprocess each.

    python benchmarks/own_data_audit.py                                  # every case (about 20 min on 2 CPU cores)
    python benchmarks/own_data_audit.py --categories export hangs        # some categories
    python benchmarks/own_data_audit.py --cases export-key-escape --keep # one case, its folder kept
    python benchmarks/own_data_audit.py --list                           # the cases, with what each expects

The kinds of input a user with their own data gives, in ten categories plus the normal, accepted ones: hangs (stale
claims, a hub that stalls), `genie export` into the wrong folder or from damaged rows, a store mixing versions,
sources read wrong (16-bit, EXIF orientation, formats, nested folders), bad images, unchecked settings, broken model
folders, command-line options, store damage and the rest (class-name files, disk full, unknown classes). Each case
builds its inputs in its own folder under a temporary root (removed at the end unless --keep), then runs one entry
point in a fresh Python process with a hard timeout: the library functions a user calls, `python -m genie_utils.cli
generate` / `export` (the `genie` command) and `python -m genie_utils.reproduce`, with GENIE_PROFILE=smoke, a tiny
random-weight SD-shaped model (`companion.build_pipeline(companion.TINY)`, as the tests build it) or the shipped
one, 4 denoising steps and two to six 64 px images. Hang cases run with small user-set bounds
(GENIE_HUB_TIMEOUT_SECONDS=3, GENIE_CLAIM_STALE_SECONDS=2 or 12) against a local fake hub served from this process.

Each outcome is classified as
  clear-before-work    exit status 2 (command line) or a genie_utils exception (library) whose message names the
                       thing at fault (file, option, variable) and a fix, no traceback (command line), nothing written
  accepted-correctly   exit 0 and the result checked (the images, the rows, the export folder, the pixels), with the
                       warning the case needs (a skipped file named, a damaged row named)
  late                 an error after something was written (rows, images, export files, the dataset)
  unclear              an error that does not name the thing or a fix, or a usage error with an exit status other than 2
  crash                a traceback (command line) or an exception from another library (library)
  hang                 killed at the timeout, or slower than the case's bound (the user's bound with a margin)
  silent               bad input accepted without a word, or a wrong result
and compared with the class the case expects. Writes `audit.csv` (case, category, expected, observed, seconds,
message, detail) and `unexpected.txt` (the command, its environment and output for every case that is not as
expected) into --out (default results/benchmarks/own-data-audit-<time>/), and prints the count per category and
observed class. One case runs at a time.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLASSES = ("clear-before-work", "accepted-correctly", "late", "unclear", "crash", "hang", "silent")
CATEGORIES = ("normal", "hangs", "export", "versions", "sources", "bad-images", "settings", "model-folders",
              "cli-options", "store-damage", "other", "values")
STEPS = "4"
FIX_WORDS = re.compile(r"\b(use|give|set|unset|delete|remove|rename|replace|restore|add|check|pass|leave|write|save|"
                       r"run|free|generate|export|choose|move|point|retry|download|keep|did you mean|expected|must|"
                       r"should|needs?|one of|known|valid|at least|e\.g\.|instead|only|install)\b", re.I)


# --------------------------------------------------------------------------------------------------
# What a case runs and how it came out


@dataclass
class Run:
    argv: list[str]                      # after `python`
    kind: str                            # "cli" or "lib"
    env: dict = field(default_factory=dict)
    allowed: tuple[str, ...] = ("store", "x")   # accepted runs may write only here (relative to the case folder)
    ignore: tuple[str, ...] = ()         # files whose writing does not count as work (relative, prefixes)
    cleanup: list[Callable] = field(default_factory=list)


@dataclass
class Case:
    name: str
    category: str
    expected: str
    what: str
    setup: Callable[["World", Path], Run]
    names: tuple[str, ...] = ()          # a clear message contains each (case-insensitive)
    warn: tuple[str, ...] = ()           # an accepted run's output contains each
    check: Callable[[Path, "Outcome"], str | None] | None = None   # accepted command-line runs: None when right
    max_seconds: float | None = None     # slower than this: hang
    timeout: float = 60.0
    waits: bool = False                  # killed at the timeout while saying what it waits for: accepted


@dataclass
class Outcome:
    rc: int | None
    seconds: float
    stdout: str
    stderr: str
    timed_out: bool
    written: list[str]
    observed: str = ""
    message: str = ""
    detail: str = ""


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (symbolic links as links) with its size and modification time."""
    files = {}
    for directory, names, filenames in os.walk(folder):
        names[:] = [n for n in names if n not in ("claims", "__pycache__")]
        for name in filenames:
            path = Path(directory) / name
            info = path.lstat()
            files[os.fsencode(path.relative_to(folder)).decode("utf-8", "backslashreplace")] = \
                (info.st_size, info.st_mtime_ns)
    return files


def written_between(before: dict, after: dict, ignore: tuple[str, ...]) -> list[str]:
    changed = [p for p in after if before.get(p) != after[p]] + [f"(deleted) {p}" for p in before if p not in after]
    return sorted(p for p in changed if not any(p.replace("(deleted) ", "").startswith(i) for i in ignore))


def execute(run: Run, folder: Path, logs: Path, timeout: float, name: str) -> tuple[int | None, float, str, str, bool]:
    env = {**os.environ, "GENIE_PROFILE": "smoke", "GENIE_HEADLESS": "1", "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), **run.env}
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    began = time.perf_counter()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen([PYTHON, *run.argv], cwd=folder, env=env, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc, timed_out = process.wait(timeout), False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc, timed_out = None, True
    seconds = time.perf_counter() - began
    return rc, seconds, out.read_text(errors="replace"), err.read_text(errors="replace"), timed_out


LIB_HARNESS = '''\
import json, sys, traceback, warnings
warnings.simplefilter("always")
V = {values!r}
def audit_ok():
    print("AUDIT-CHECK ok", flush=True)
def audit_fail(why):
    print("AUDIT-CHECK fail: " + str(why), flush=True)
try:
{code}
except BaseException as error:
    frames = traceback.extract_tb(error.__traceback__)
    sys.stderr.flush()
    print("AUDIT-EXC " + json.dumps({{"type": type(error).__module__ + "." + type(error).__qualname__,
                                      "message": str(error), "origin": frames[-1].filename if frames else ""}}),
          file=sys.stderr, flush=True)
    sys.exit(3)
'''


def lib(code: str, **values) -> Run:
    """Python run as a user would, in a fresh process; `V` holds `values` (paths as strings). An exception is
    reported with its type and the file it was raised in; `audit_ok()` / `audit_fail(why)` report a checked result."""
    body = "\n".join("    " + line for line in code.strip("\n").splitlines())
    return Run(["-c", LIB_HARNESS.format(values={k: str(v) if isinstance(v, Path) else v for k, v in values.items()},
                                          code=body)], "lib")


def cli(*args, env: dict | None = None) -> Run:
    return Run(["-m", "genie_utils.cli", *map(str, args)], "cli", dict(env or {}))


def reproduce(*args, env: dict | None = None) -> Run:
    return Run(["-m", "genie_utils.reproduce", *map(str, args)], "cli", dict(env or {}))


def generate(world: "World", data, store, *extra, model=None, batch: int = 2, env: dict | None = None) -> Run:
    """`genie generate` with the tiny model, 4 steps, no benchmark records (`--speed plain`); `extra` options come
    last, so that they override these."""
    return cli("generate", data, "--store", store, "--model", model or world.model, "--steps", STEPS,
               "--batch-size", batch, "--no-progress", "--speed", "plain", *extra, env=env)


DISK_FULL_SHIM = '''\
import errno, os, runpy, sys
FULL = {full!r}
def _full(fd):
    try:
        return os.readlink(f"/proc/self/fd/{{fd}}").startswith(FULL)
    except OSError:
        return False
_fsync, _sendfile = os.fsync, os.sendfile
def fsync(fd):
    if _full(fd if isinstance(fd, int) else fd.fileno()):
        raise OSError(errno.ENOSPC, "No space left on device")
    return _fsync(fd)
def sendfile(out_fd, in_fd, offset, count):
    if _full(out_fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    return _sendfile(out_fd, in_fd, offset, count)
os.fsync, os.sendfile = fsync, sendfile
sys.argv = ["genie", *{args!r}]
runpy.run_module("genie_utils.cli", run_name="__main__", alter_sys=True)
'''


def disk_full(full: Path, run: Run) -> Run:
    """`run` (a `genie` command) on a disk that is full under `full`: writing a file there fails with ENOSPC (at its
    fsync, or at the sendfile of a copy), as the kernel answers when the disk fills."""
    return Run(["-c", DISK_FULL_SHIM.format(full=str(full), args=run.argv[2:])], "cli", run.env)


# --------------------------------------------------------------------------------------------------
# Classification


def error_message(outcome: Outcome, kind: str) -> tuple[str, dict | None]:
    if kind == "lib":
        for line in reversed(outcome.stderr.splitlines()):
            if line.startswith("AUDIT-EXC "):
                record = json.loads(line[len("AUDIT-EXC "):])
                message = record["message"]
                if record["type"] == "builtins.KeyError" and len(message) > 1 and message[0] == message[-1] in "'\"":
                    message = message[1:-1]
                return message, record
        return "", None
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    if errors:
        return errors[-1].split(": error: ", 1)[1], None
    return (lines[-1] if lines else outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else ""), None


def first_word(outcome: Outcome) -> str:
    """The first user warning (or waiting notice) a run printed, else its last line of output."""
    for pattern in ("UserWarning: ", "waiting for "):
        for line in outcome.stderr.splitlines():
            if pattern in line:
                return line.split("Warning: ", 1)[-1].strip()
    lines = [line for line in (outcome.stdout + outcome.stderr).splitlines() if line.strip()
             and not line.startswith("AUDIT-CHECK ok")]
    return lines[-1].strip() if lines else ""


PYTHON_OWN = re.compile(r"object is not subscriptable|unsupported operand|has no attribute|object is not callable|"
                        r"positional argument|unexpected keyword|object is not iterable|division by zero")


def is_project_error(record: dict) -> bool:
    """An exception the library raised on purpose: its own type, or a built-in one raised in its code with a message
    of its own (not Python's wording for a bug, such as "'NoneType' object is not subscriptable")."""
    library = str(ROOT / "genie_utils")
    if record["type"] in ("builtins.AttributeError", "builtins.IndexError", "builtins.ZeroDivisionError",
                          "builtins.RecursionError", "builtins.NameError", "builtins.UnboundLocalError",
                          "builtins.AssertionError") or PYTHON_OWN.search(record["message"]):
        return False
    return record["type"].startswith("genie_utils.") or (record["type"].startswith("builtins.")
                                                        and record["origin"].startswith(library))


def classify(case: Case, run: Run, outcome: Outcome, folder: Path) -> None:
    text = outcome.stdout + outcome.stderr
    if outcome.timed_out:
        if case.waits and all(w.lower() in text.lower() for w in case.warn):
            outcome.observed, outcome.detail = "accepted-correctly", "waited within its bound, saying so"
        else:
            outcome.observed, outcome.detail = "hang", f"killed after {case.timeout:g} s"
        outcome.message = first_word(outcome)
        return
    if case.max_seconds is not None and outcome.seconds > case.max_seconds:
        outcome.observed = "hang"
        outcome.detail = f"took {outcome.seconds:.0f} s, past its bound of {case.max_seconds:g} s"
        outcome.message = error_message(outcome, run.kind)[0] or first_word(outcome)
        return
    if outcome.rc == 0:
        outcome.message = first_word(outcome)
        if case.expected == "clear-before-work":
            outcome.observed = "silent"
            outcome.detail = "exit 0" + (f"; wrote {len(outcome.written)} files, e.g. {outcome.written[0]}"
                                         if outcome.written else "")
            return
        problems = []
        if run.kind == "lib":
            checked = re.findall(r"^AUDIT-CHECK (ok|fail: .*)$", outcome.stdout, re.M)
            if not checked:
                problems.append("the snippet reported no check")
            elif checked[-1] != "ok":
                problems.append(checked[-1][len("fail: "):])
        elif case.check is not None:
            why = case.check(folder, outcome)
            if why:
                problems.append(why)
        outside = [p for p in outcome.written if not any(p.replace("(deleted) ", "").startswith(a + "/")
                                                         for a in run.allowed)]
        if outside:
            problems.append(f"wrote outside {', '.join(run.allowed)}: {', '.join(outside[:3])}")
        missing = [w for w in case.warn if w.lower() not in text.lower()]
        if missing:
            problems.append(f"no word of {missing}")
        outcome.observed = "silent" if problems else "accepted-correctly"
        outcome.detail = "; ".join(problems)
        return
    message, record = error_message(outcome, run.kind)
    outcome.message = message
    if run.kind == "lib" and (record is None or not is_project_error(record)):
        outcome.observed = "crash"
        outcome.detail = (f"{record['type']} raised in {record['origin']}" if record
                          else f"exit {outcome.rc} without a reported exception")
        return
    if run.kind == "cli" and "Traceback (most recent call last)" in outcome.stderr:
        outcome.observed = "crash"
        last = [line for line in outcome.stderr.splitlines() if line.strip()]
        outcome.message, outcome.detail = (last[-1] if last else ""), "traceback"
        return
    if outcome.written:
        outcome.observed = "late"
        outcome.detail = f"wrote {len(outcome.written)} files first, e.g. {', '.join(outcome.written[:3])}"
        return
    problems = []
    if run.kind == "cli" and outcome.rc != 2:
        problems.append(f"exit status {outcome.rc}, not 2")
    missing = [n for n in case.names if n.lower() not in message.lower()]
    if missing:
        problems.append(f"does not name {missing}")
    if not (FIX_WORDS.search(message) or outcome.stderr.lstrip().startswith("usage:")):
        problems.append("names no fix")
    outcome.observed = "unclear" if problems else "clear-before-work"
    outcome.detail = "; ".join(problems)


# --------------------------------------------------------------------------------------------------
# Shared inputs: the tiny models, a dataset, a store made from it, an export of that store, a fake hub

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


class FakeHub(BaseHTTPRequestHandler):
    """A Hugging Face hub for repositories `audit/<mode>`: `silent` never answers; `stall-files` answers the model
    info and never a file; `files-404` / `files-500` answer files with that status; `info-not-json` and `info-401`
    answer the model info so; `stall-mid-file` sends half of model_index.json and then nothing."""
    protocol_version = "HTTP/1.1"
    release = threading.Event()
    body = json.dumps({"_class_name": "StableDiffusionImg2ImgPipeline", "_diffusers_version": "0.42.1",
                       "unet": ["diffusers", "UNet2DConditionModel"]}).encode() * 20

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)

    def send(self, status, body=b"", headers=None, content=True):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if content:
            self.wfile.write(body)

    def answer(self, content: bool):
        parts = self.path.split("?")[0].strip("/").split("/")
        info = parts[:2] == ["api", "models"]
        mode = parts[3] if info and len(parts) > 3 else parts[1] if len(parts) > 1 else ""
        if mode == "silent" or (not info and mode == "stall-files"):
            self.release.wait(150)
            return
        if info:
            if mode == "info-not-json":
                return self.send(200, b"<html>maintenance</html>", {"Content-Type": "application/json"}, content)
            if mode == "info-401":
                return self.send(401, b'{"error": "Invalid credentials in Authorization header"}',
                                 {"Content-Type": "application/json"}, content)
            body = json.dumps({"id": f"audit/{mode}", "modelId": f"audit/{mode}", "sha": "0" * 40,
                               "siblings": [{"rfilename": "model_index.json"}]}).encode()
            return self.send(200, body, {"Content-Type": "application/json"}, content)
        if mode == "files-404":
            return self.send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound"}, content)
        if mode == "files-500":
            return self.send(500, b"Internal Error", {}, content)
        if mode == "stall-mid-file":
            headers = {"ETag": '"audit-etag"', "X-Repo-Commit": "0" * 40, "Content-Type": "application/json"}
            if not content:
                return self.send(200, self.body, headers, False)
            self.send_response(200)
            for key, value in {"Content-Length": str(len(self.body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(self.body[: len(self.body) // 2])
            self.wfile.flush()
            self.release.wait(150)
            return
        self.send(404, b"no such mode")


class World:
    """The shared inputs, built once under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.cases = root / "cases"
        self.logs = root / "logs"
        self.cases.mkdir(parents=True)
        self.logs.mkdir()
        self.model = root / "tiny-model"
        self.model_b = root / "tiny-model-seed1"
        self.data = make_dataset(root / "data")
        self.data3 = make_dataset(root / "data3", ("apple", "boat", "cloud"))
        self.store = root / "store"
        self.export = root / "export"
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
        self.hub.daemon_threads = True
        threading.Thread(target=self.hub.serve_forever, daemon=True).start()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        self.closed_port = closed.getsockname()[1]
        closed.close()

    def build(self):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "GENIE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1"}
        for folder, seed in ((self.model, 0), (self.model_b, 1)):
            subprocess.run([PYTHON, "-c", "import sys; from genie_utils import companion; companion.build_pipeline("
                            "companion.TINY, seed=int(sys.argv[2])).save_pretrained(sys.argv[1])", str(folder),
                            str(seed)], check=True, env=env, capture_output=True, cwd=self.root)
        for run in (generate(self, self.data, self.store), cli("export", self.store, self.export)):
            result = subprocess.run([PYTHON, *run.argv], env=env, capture_output=True, text=True, cwd=self.root)
            if result.returncode:
                raise RuntimeError(f"building the shared store failed: {result.stderr[-2000:]}")
        self.keys = [row["key"] for row in read_rows(self.store)]
        assert len(self.keys) == 4, self.keys

    def hub_env(self, name: str, endpoint: str | None = None) -> dict:
        return {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint or f"http://127.0.0.1:{self.hub.server_port}",
                "HF_HOME": str(self.root / "hf" / name), "GENIE_HUB_TIMEOUT_SECONDS": "3"}

    def close(self):
        FakeHub.release.set()
        self.hub.shutdown()


def copy_data(world: World, folder: Path, three: bool = False) -> Path:
    return Path(shutil.copytree(world.data3 if three else world.data, folder / "data"))


def copy_store(world: World, folder: Path) -> Path:
    return Path(shutil.copytree(world.store, folder / "store"))


def out_path(folder: Path) -> Path:
    """An export folder two levels down, so that a path that climbs out of it stays inside the case folder."""
    (folder / "x" / "y").mkdir(parents=True, exist_ok=True)
    return folder / "x" / "y" / "out"


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


# --------------------------------------------------------------------------------------------------
# The cases


CASES: list[Case] = []


def case(name, category, expected, what, names=(), warn=(), check=None, max_seconds=None, timeout=60.0,
         waits=False):
    def register(setup):
        CASES.append(Case(name, category, expected, what, setup, tuple(names), tuple(warn), check, max_seconds,
                          timeout, waits))
        return setup
    return register


CLEAR, ACCEPT = "clear-before-work", "accepted-correctly"
GENERATOR = '''
from genie_utils.generate import GenieGenerator, genie, img2img, txt2img
from genie_utils.recipe import Recipe
generator = GenieGenerator.from_pretrained(V["model"], Recipe(num_inference_steps=4), device="cpu", batch_size=2)
'''


def simple(name, category, expected, what, build, names=(), warn=(), check=None, **kw):
    """A case whose setup is `build(world, folder)`."""
    case(name, category, expected, what, names, warn, check, **kw)(build)


# ---- normal: valid inputs, results checked

simple("normal-generate-genie", "normal", ACCEPT, "genie generate, 2 classes x 2 PNGs",
       lambda w, f: generate(w, copy_data(w, f), f / "store"), check=rows_check(4, "genie"))
simple("normal-generate-txt2img-variants", "normal", ACCEPT, "--method txt2img --target-classes apple --variants 2",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "txt2img", "--target-classes", "apple",
                             "--variants", "2"), check=rows_check(4, "txt2img", field_values={"target_class": "apple"}))
simple("normal-generate-img2img-low", "normal", ACCEPT, "--method img2img_low",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "img2img_low"),
       check=rows_check(4, "img2img_low", field_values={"noise_ratio": 0.3}))
simple("normal-generate-genie-ada", "normal", ACCEPT, "--method genie_ada --target-classes boat (EfficientNet-Lite0)",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--target-classes", "boat"),
       check=rows_check(2, "genie_ada", field_values={"target_class": "boat"}), timeout=120)
simple("normal-rerun-resumes", "normal", ACCEPT, "the same genie generate again on its store: nothing new",
       lambda w, f: generate(w, copy_data(w, f), copy_store(w, f)), check=unchanged_rows)
simple("normal-export", "normal", ACCEPT, "genie export STORE OUT (new folder)",
       lambda w, f: cli("export", copy_store(w, f), out_path(f)), check=export_check(4))


def _export_again(w, f):
    shutil.copytree(w.export, out_path(f))
    return cli("export", copy_store(w, f), out_path(f))


simple("normal-export-again", "normal", ACCEPT, "genie export into its own earlier export", _export_again,
       check=export_check(4))


def _export_empty(w, f):
    out_path(f).mkdir()
    return cli("export", copy_store(w, f), out_path(f))


simple("normal-export-into-empty-folder", "normal", ACCEPT, "genie export into an existing empty folder",
       _export_empty, check=export_check(4))
simple("normal-dry-run", "normal", ACCEPT, "--dry-run: counts, writes nothing",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--dry-run"),
       check=lambda f, o: None if "genie: 4 images" in o.stdout and not (f / "store").exists() else "wrong dry run")
simple("normal-generate-help", "normal", ACCEPT, "genie generate --help", lambda w, f: cli("generate", "--help"),
       check=lambda f, o: None if "--prompt-template" in o.stdout else "no help")
simple("normal-reproduce-help", "normal", ACCEPT, "python -m genie_utils.reproduce --help",
       lambda w, f: reproduce("--help"), check=lambda f, o: None if "--only" in o.stdout else "no help")


def _names_file(f: Path, text, name="names.txt", encoding="utf-8") -> Path:
    path = f / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


simple("normal-class-names-text", "normal", ACCEPT, "--class-names with lines '<folder> <display name>'",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--class-names",
                             _names_file(f, "apple red apple\nboat sail boat\n")),
       check=rows_check(4, prompt="a photo of a "))
simple("normal-class-names-json", "normal", ACCEPT, "--class-names with a JSON object",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--class-names",
                             _names_file(f, '{"apple": "red apple", "boat": "sail boat"}', "names.json")),
       check=lambda f, o: rows_check(4)(f, o) or (None if {r["prompt"] for r in read_rows(f / "store")} ==
                                                  {"a photo of a red apple.", "a photo of a sail boat."} else
                                                  "prompts do not use the display names"))
simple("normal-prompt-template", "normal", ACCEPT, "--prompt-template 'an emoji of a {}'",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--prompt-template", "an emoji of a {}"),
       check=rows_check(4, prompt="an emoji of a "))
simple("normal-shipped-model", "normal", ACCEPT, "--model models/genie-companion (the shipped model), 2 steps",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", "models/genie-companion", "--steps", "2"),
       check=rows_check(4, "genie"))
simple("normal-guidance-zero", "normal", ACCEPT, "--guidance 0 (guidance off)",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--guidance", "0"),
       check=rows_check(4, field_values={"guidance_scale": 0.0}))


def _wordnet(w, f, names=True):
    data = f / "data"
    for wnid, colour in (("n01234567", "red"), ("n07654321", "blue")):
        (data / wnid).mkdir(parents=True)
        for n in range(2):
            draw(colour, n=n).save(data / wnid / f"{n}.png")
    extra = ["--class-names", _names_file(f, "n01234567 house finch, linnet\nn07654321 canoe\n")] if names else []
    return generate(w, data, f / "store", *extra)


simple("normal-wordnet-with-class-names", "normal", ACCEPT, "WordNet-id folders with a class-names file", _wordnet,
       check=lambda f, o: rows_check(4)(f, o) or (None if {r["prompt"] for r in read_rows(f / "store")} ==
                                                  {"a photo of a house finch, linnet.", "a photo of a canoe."}
                                                  else "prompts do not use the display names"))


def _unicode_class(w, f):
    data = make_dataset(f / "data", ("café crème", "boat"))
    return generate(w, data, f / "store")


simple("normal-unicode-class-folder", "normal", ACCEPT, "a class folder named 'café crème'", _unicode_class,
       check=rows_check(4, prompt="a photo of a "))


def _spaces(w, f):
    data = Path(shutil.copytree(w.data, f / "my data"))
    return Run(generate(w, data, f / "my store").argv, "cli", allowed=("my store",))


simple("normal-spaces-in-paths", "normal", ACCEPT, "dataset and store paths with spaces", _spaces,
       check=lambda f, o: None if len(read_rows(f / "my store")) == 4 else "not 4 rows")
simple("normal-jpeg-dataset", "normal", ACCEPT, "a dataset of JPEG files",
       lambda w, f: generate(w, make_dataset(f / "data", suffix=".jpg"), f / "store"), check=rows_check(4))


def _two_workers(w, f):
    data = copy_data(w, f)
    return lib('''
import subprocess, sys, json, pathlib
argv = [sys.executable, "-m", "genie_utils.cli", "generate", V["data"], "--store", V["store"], "--model", V["model"],
        "--steps", "4", "--batch-size", "1", "--no-progress", "--speed", "plain"]
workers = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
codes = [p.wait(90) for p in workers]
rows = list(pathlib.Path(V["store"]).glob("rows/*/*.json"))
keys = [json.loads(r.read_text())["key"] for r in rows]
if codes != [0, 0] or len(keys) != 4 or len(set(keys)) != 4:
    audit_fail(f"exit {codes}, {len(keys)} rows")
else:
    audit_ok()
''', data=data, store=f / "store", model=w.model)


simple("normal-two-workers", "normal", ACCEPT, "two genie generate processes on one store at once", _two_workers,
       timeout=120)
simple("normal-lib-load-class-folders", "normal", ACCEPT, "data.load_class_folders on a JPEG dataset",
       lambda w, f: lib('''
from genie_utils import data
table = data.load_class_folders(V["data"])
audit_ok() if len(table) == 4 and sorted(table.class_name.unique()) == ["apple", "boat"] else audit_fail(table)
''', data=make_dataset(f / "data", suffix=".jpg")))
simple("normal-lib-genie", "normal", ACCEPT, "generate.genie(generator, paths, 'boat', class_names=...)",
       lambda w, f: lib(GENERATOR + '''
import glob
images = genie(generator, sorted(glob.glob(V["data"] + "/apple/*.png")), "boat", class_names={"apple": "apple", "boat": "boat"})
audit_ok() if len(images) == 2 and images[0].size == (64, 64) else audit_fail(images)
''', model=w.model, data=copy_data(w, f)))
simple("normal-lib-img2img", "normal", ACCEPT, "generate.img2img(generator, paths, 'apple')",
       lambda w, f: lib(GENERATOR + '''
import glob
images = img2img(generator, sorted(glob.glob(V["data"] + "/apple/*.png")), "apple", noise_ratio=0.7)
audit_ok() if len(images) == 2 and images[0].size == (64, 64) else audit_fail(images)
''', model=w.model, data=copy_data(w, f)))
simple("normal-lib-txt2img", "normal", ACCEPT, "generate.txt2img(generator, 'apple', 2)",
       lambda w, f: lib(GENERATOR + '''
images = txt2img(generator, "apple", 2)
audit_ok() if len(images) == 2 and images[0].size == (64, 64) else audit_fail(images)
''', model=w.model))
simple("normal-lib-run-jobs", "normal", ACCEPT, "run_jobs(generator, hard_negative_jobs(dataset), Store, names)",
       lambda w, f: lib(GENERATOR + '''
from genie_utils import data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = data.load_class_folders(V["data"])
rows = run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), data.class_display_names(dataset), progress=False)
audit_ok() if len(rows) == 4 and len(Store(V["store"]).manifest()) == 4 else audit_fail(rows)
''', model=w.model, data=copy_data(w, f), store=f / "store"))
simple("normal-lib-export", "normal", ACCEPT, "export.export(store, out) from Python",
       lambda w, f: lib('''
from genie_utils.export import export
rows = export(V["store"], V["out"])
import pathlib
audit_ok() if len(rows) == 4 and len(list(pathlib.Path(V["out"]).glob("*/*.png"))) == 4 else audit_fail(rows)
''', store=copy_store(w, f), out=out_path(f)))
simple("model-bin-weights", "model-folders", ACCEPT, "a model folder saved with .bin (pickle) weights",
       lambda w, f: (subprocess.run([PYTHON, "-c", "import sys; from diffusers import StableDiffusionImg2ImgPipeline as P; "
                                     "P.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2], safe_serialization=False)",
                                     str(w.model), str(f / "model")], check=True, capture_output=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}),
                     generate(w, copy_data(w, f), f / "store", "--model", f / "model"))[1],
       check=rows_check(4))


# ---- hangs: stale claims, a hub that stalls

def _claims(w, f, holder: dict, keys=None, age: float = 0.0, raw: str | None = None) -> Path:
    claims = f / "store" / "claims"
    claims.mkdir(parents=True)
    for key in (w.keys if keys is None else keys):
        path = claims / key
        path.write_text(raw if raw is not None else json.dumps({"time": time.time() - age, **holder}))
        if age:
            os.utime(path, (time.time() - age, time.time() - age))
    return claims


HOST = socket.gethostname()


def _claim_case(name, what, holder, keys=None, age=0.0, raw=None, env=None, max_seconds=45.0, warn=(),
                waits=False, timeout=60.0, spawn=False):
    def build(w, f):
        cleanup = []
        held = dict(holder(w) if callable(holder) else holder)
        if spawn:
            sleeper = subprocess.Popen(["sleep", "300"])
            cleanup.append(lambda: (sleeper.kill(), sleeper.wait()))
            held.update(pid=sleeper.pid, started=process_start(sleeper.pid))
        _claims(w, f, held, (w.keys if keys is None else w.keys[:keys]), age, raw)
        run = generate(w, copy_data(w, f), f / "store", env=env)
        run.cleanup = cleanup
        return run
    case(name, "hangs", ACCEPT, what, (), warn, rows_check(4), max_seconds, timeout, waits)(build)


_claim_case("hangs-claim-pid-reused", "every key claimed by a live process of this host that reused the pid",
            lambda w: {"pid": os.getpid(), "host": HOST, "started": (process_start(os.getpid()) or 1) - 1})
_claim_case("hangs-claim-pid-reused-half-the-keys", "half the keys claimed under a reused pid (stopped at 50%)",
            lambda w: {"pid": os.getpid(), "host": HOST, "started": (process_start(os.getpid()) or 1) - 1}, keys=2)
_claim_case("hangs-claim-pid-reused-no-start-time", "claims under a reused pid without a start time, an hour old",
            lambda w: {"pid": os.getpid(), "host": HOST}, age=3600)


def _dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


_claim_case("hangs-claim-dead-pid", "claims of a process of this host that is gone",
            lambda w: {"pid": _dead_pid(), "host": HOST, "started": 1})
_claim_case("hangs-claim-other-host-small-bound", "claims from another host, GENIE_CLAIM_STALE_SECONDS=12 (longer than "
            "the start-up, so that it waits)", {"pid": 1234, "host": "another-host"},
            env={"GENIE_CLAIM_STALE_SECONDS": "12"},
            warn=("waiting for", "another-host", "GENIE_CLAIM_STALE_SECONDS"))
_claim_case("hangs-claim-other-host-an-hour-ago", "claims from another host, not refreshed for an hour",
            {"pid": 1234, "host": "another-host"}, age=3600)
_claim_case("hangs-claim-other-host-default-bound", "fresh claims from another host, default bound (300 s): waits, "
            "saying what for", {"pid": 1234, "host": "another-host"},
            warn=("waiting for", "another-host", "GENIE_CLAIM_STALE_SECONDS"), waits=True, timeout=25.0,
            max_seconds=None)
_claim_case("hangs-claim-live-holder-not-refreshing", "claims of a live process that never refreshes them, "
            "GENIE_CLAIM_STALE_SECONDS=12", {"host": HOST}, env={"GENIE_CLAIM_STALE_SECONDS": "12"}, spawn=True,
            warn=("waiting for",))
_claim_case("hangs-claim-half-written", "empty claim files (a writer killed between creating and filling them)",
            {}, raw="")
_claim_case("hangs-claim-not-json-an-hour-ago", "claim files that are not JSON, an hour old", {}, raw="{garbage",
            age=3600)


def _live_claim_small_bound(w, f):
    run = lib('''
import subprocess, sys, time
from genie_utils.store import Store
worker = "\\n".join(["import sys, time", "from genie_utils.store import Store", "store = Store(sys.argv[1])",
                    "assert store.claim('e' * 20)", "print('held', flush=True)",
                    "with store.heartbeat(['e' * 20]):", "    time.sleep(6)"])
holder = subprocess.Popen([sys.executable, "-c", worker, V["store"]], stdout=subprocess.PIPE, text=True)
started = holder.stdout.readline().strip() == "held"
time.sleep(4)
taken = Store(V["store"]).claim("e" * 20)
holder.communicate()
if not started or holder.returncode:
    audit_fail(f"the worker holding the claim failed (exit {holder.returncode})")
elif taken:
    audit_fail("a claim its live worker refreshes was taken over after 4 s with GENIE_CLAIM_STALE_SECONDS=2")
else:
    audit_ok()
''', store=f / "store")
    run.env = {"GENIE_CLAIM_STALE_SECONDS": "2"}
    return run


simple("hangs-live-claim-small-bound", "hangs", ACCEPT, "GENIE_CLAIM_STALE_SECONDS=2: a claim its live worker "
       "holds (and refreshes) is not taken over", _live_claim_small_bound)


def _hub_cli(mode, endpoint=None):
    def build(w, f):
        run = generate(w, copy_data(w, f), f / "store", "--model", f"audit/{mode}")
        run.env = w.hub_env(f.name, endpoint(w) if endpoint else None)
        return run
    return build


def _hub_lib(mode):
    def build(w, f):
        run = lib('''
from genie_utils import pipeline
pipeline.load_pipeline(V["model"], device="cpu")
audit_fail("loaded")
''', model=f"audit/{mode}")
        run.env = w.hub_env(f.name)
        return run
    return build


for _mode, _what in (("stall-files", "a hub that answers the model info, then never a file"),
                     ("silent", "a hub that accepts the connection and never answers"),
                     ("files-404", "a hub that answers the model info, then 404 for the files"),
                     ("files-500", "a hub that answers the model info, then 500 for the files"),
                     ("info-not-json", "a hub whose model info is an HTML page"),
                     ("info-401", "a hub that refuses the model info (401)"),
                     ("stall-mid-file", "a hub that sends half of model_index.json, then nothing")):
    simple(f"hangs-hub-{_mode}", "hangs", CLEAR, f"genie generate --model audit/{_mode}: {_what}, "
           "GENIE_HUB_TIMEOUT_SECONDS=3", _hub_cli(_mode), names=(f"audit/{_mode}",), max_seconds=30)
for _mode in ("stall-files", "stall-mid-file"):
    simple(f"hangs-hub-{_mode}-lib", "hangs", CLEAR, f"pipeline.load_pipeline('audit/{_mode}'), "
           "GENIE_HUB_TIMEOUT_SECONDS=3", _hub_lib(_mode), names=(f"audit/{_mode}",), max_seconds=30)
simple("hangs-hub-refused", "hangs", CLEAR, "a hub address where nothing listens",
       _hub_cli("anything", lambda w: f"http://127.0.0.1:{w.closed_port}"), names=("audit/anything",), max_seconds=30)
simple("hangs-hub-offline-not-cached", "hangs", CLEAR, "a hub id with HF_HUB_OFFLINE=1, not in the cache",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", "example-org/not-cached",
                             env={"HF_HOME": str(w.root / "hf" / f.name)}),
       names=("example-org/not-cached", "HF_HUB_OFFLINE"), max_seconds=30)


# ---- export: only into its own folder, only from rows that make sense

def _damaged_store(w, f, edit) -> Path:
    """A copy of the shared store with the row of its first key edited by `edit(row)` (None: the row file removed)."""
    store = copy_store(w, f)
    path = store / "rows" / w.keys[0][:2] / f"{w.keys[0]}.json"
    row = edit(json.loads(path.read_text()))
    path.write_text(json.dumps(row) if not isinstance(row, str) else row)
    (store / "manifest.csv").unlink(missing_ok=True)
    return store


def _export_row(edit, **kw):
    return lambda w, f: cli("export", _damaged_store(w, f, edit), out_path(f))


def _export_into_dataset(w, f):
    data = copy_data(w, f)
    return cli("export", copy_store(w, f), data)


simple("export-into-dataset", "export", CLEAR, "genie export STORE DATA (the dataset folder)", _export_into_dataset,
       names=("data", "empty"))


def _export_over_manifest(w, f):
    out = out_path(f)
    out.mkdir()
    (out / "manifest.csv").write_text("image,label\na.png,cat\n")
    return cli("export", copy_store(w, f), out)


simple("export-over-another-manifest", "export", CLEAR, "OUT holds another tool's manifest.csv",
       _export_over_manifest, names=("out", "empty"))
simple("export-target-class-dotdot", "export", CLEAR, "a row with target_class '../..'",
       _export_row(lambda r: {**r, "target_class": "../.."}), names=("target class", "../.."))
simple("export-target-class-slash", "export", CLEAR, "a row with target_class 'a/b'",
       _export_row(lambda r: {**r, "target_class": "a/b"}), names=("a/b",))
simple("export-target-class-empty", "export", CLEAR, "a row with target_class ''",
       _export_row(lambda r: {**r, "target_class": ""}), names=("target class",))
simple("export-target-class-null", "export", CLEAR, "a row with target_class null",
       _export_row(lambda r: {**r, "target_class": None}), names=("target class",))
simple("export-target-class-absolute", "export", CLEAR, "a row with target_class '/tmp'",
       _export_row(lambda r: {**r, "target_class": "/tmp"}), names=("target class",))
simple("export-file-absolute", "export", CLEAR, "a row whose file is /etc/os-release",
       _export_row(lambda r: {**r, "file": "/etc/os-release"}), names=("/etc/os-release",))
simple("export-file-climbs-out", "export", CLEAR, "a row whose file is ../../../etc/os-release",
       _export_row(lambda r: {**r, "file": "../../../../../../../../etc/os-release"}), names=("etc/os-release",))


def _export_symlink(w, f):
    store = copy_store(w, f)
    row = json.loads((store / "rows" / w.keys[0][:2] / f"{w.keys[0]}.json").read_text())
    (store / row["file"]).unlink()
    (store / row["file"]).symlink_to("/etc/os-release")
    return cli("export", store, out_path(f))


simple("export-file-symlink-out-of-store", "export", CLEAR, "a row's image is a symbolic link to /etc/os-release",
       _export_symlink, names=(".png",))
simple("export-key-climbs-out", "export", CLEAR, "a row whose key is '../../escaped'",
       _export_row(lambda r: {**r, "key": "../../escaped"}), names=("escaped",))


def _export_out_file(w, f):
    out_path(f).write_text("not a folder")
    return cli("export", copy_store(w, f), out_path(f))


simple("export-out-is-a-file", "export", CLEAR, "OUT is an existing file", _export_out_file, names=("out",))
simple("export-out-is-the-store", "export", CLEAR, "genie export STORE STORE",
       lambda w, f: cli("export", copy_store(w, f), f / "store"), names=("store",))
simple("export-empty-store", "export", CLEAR, "an empty store folder",
       lambda w, f: ((f / "store").mkdir(), cli("export", f / "store", out_path(f)))[1], names=("store",))
simple("export-missing-store", "export", CLEAR, "a store path that does not exist (typo)",
       lambda w, f: cli("export", f / "stoer", out_path(f)), names=("stoer",))
simple("export-store-is-dataset", "export", CLEAR, "genie export DATA OUT (a dataset, not a store)",
       lambda w, f: cli("export", copy_data(w, f), out_path(f)), names=("data",))
simple("export-unknown-method", "export", CLEAR, "--method txt2img on a store of genie images",
       lambda w, f: cli("export", copy_store(w, f), out_path(f), "--method", "txt2img"), names=("txt2img",))
simple("export-method-without-value", "export", CLEAR, "--method with no value",
       lambda w, f: cli("export", copy_store(w, f), out_path(f), "--method"), names=("--method",))


def _export_image(damage):
    def build(w, f):
        store = copy_store(w, f)
        rows = sorted(read_rows(store), key=lambda r: r["key"])
        damage(store / rows[-1]["file"])  # the last key: the copy loop reaches it after the others
        return cli("export", store, out_path(f))
    return build


simple("export-image-missing", "export", CLEAR, "a row whose image file was deleted",
       _export_image(lambda p: p.unlink()), names=(".png",))
simple("export-image-empty", "export", CLEAR, "a row whose image file is zero bytes",
       _export_image(lambda p: p.write_bytes(b"")), names=(".png",))
simple("export-image-not-an-image", "export", CLEAR, "a row whose image file holds text",
       _export_image(lambda p: p.write_text("not a png" * 20)), names=(".png",))
simple("export-row-without-file", "export", CLEAR, "a row without its file field",
       _export_row(lambda r: {k: v for k, v in r.items() if k != "file"}), names=("file",))
simple("export-row-not-json", "export", CLEAR, "a truncated row file",
       _export_row(lambda r: json.dumps(r)[:40]), names=(".json",))


def _export_second_store(w, f):
    out = out_path(f)
    shutil.copytree(w.export, out)  # an export of the shared store
    other = Path(shutil.copytree(w.store, f / "store"))
    for row in read_rows(other)[:2]:  # another store: two of its rows, re-keyed
        path = other / "rows" / row["key"][:2] / f"{row['key']}.json"
        path.unlink()
    return cli("export", other, out)


simple("export-second-store-into-an-export", "export", CLEAR, "OUT is the export of another store",
       _export_second_store, names=("out",))
def _ada_store(w, f) -> Path:
    run = generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--target-classes", "boat")
    subprocess.run([PYTHON, *run.argv], check=True, capture_output=True, cwd=f,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "GENIE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1"})
    return f / "store"


simple("export-after-genie-ada", "export", ACCEPT, "genie export of a GeNIe-Ada store (2 pairs): the 2 chosen images",
       lambda w, f: cli("export", _ada_store(w, f), out_path(f)), check=export_check(2), timeout=90)
simple("export-after-genie-ada-method", "export", ACCEPT, "genie export --method genie_ada of a GeNIe-Ada store",
       lambda w, f: cli("export", _ada_store(w, f), out_path(f), "--method", "genie_ada"), check=export_check(2),
       timeout=90)
simple("export-lib-into-dataset", "export", CLEAR, "export.export(store, dataset folder) from Python",
       lambda w, f: lib('''
from genie_utils.export import export
export(V["store"], V["data"])
''', store=copy_store(w, f), data=copy_data(w, f)), names=("data", "empty"))


# ---- versions: one store, one version of its images

def _second_run(*extra, model=None):
    return lambda w, f: generate(w, copy_data(w, f), copy_store(w, f), *extra, model=model)


simple("versions-other-steps", "versions", CLEAR, "a second run with --steps 6", _second_run("--steps", "6"),
       names=("num_inference_steps",))
simple("versions-other-model", "versions", CLEAR, "a second run with another model (other weights)",
       lambda w, f: generate(w, copy_data(w, f), copy_store(w, f), model=w.model_b), names=("model",))
simple("versions-other-guidance", "versions", CLEAR, "a second run with --guidance 5", _second_run("--guidance", "5"),
       names=("guidance",))
simple("versions-other-seed", "versions", CLEAR, "a second run with --seed 1", _second_run("--seed", "1"),
       names=("seed",))
simple("versions-other-dtype", "versions", CLEAR, "a second run with --speed bf16", _second_run("--speed", "bf16"),
       names=("dtype",))
simple("versions-other-prompt-template", "versions", CLEAR, "a second run with --prompt-template 'a picture of a {}'",
       _second_run("--prompt-template", "a picture of a {}"), names=("prompt",))
simple("versions-other-class-names", "versions", CLEAR, "a second run with --class-names (other prompt words)",
       lambda w, f: generate(w, copy_data(w, f), copy_store(w, f), "--class-names",
                             _names_file(f, "apple red apple\nboat sail boat\n")), names=("prompt",))
simple("versions-other-noise-ratio", "versions", CLEAR, "a second genie run with --noise-ratio 0.5 (a second image "
       "per pair)", _second_run("--noise-ratio", "0.5"), names=("noise",))
simple("versions-same-recipe-other-batch", "versions", ACCEPT, "a second run with --batch-size 1 (same images)",
       _second_run("--batch-size", "1"), check=unchanged_rows)
simple("versions-other-method-same-recipe", "versions", ACCEPT, "txt2img into a store of genie images, same recipe",
       _second_run("--method", "txt2img"), check=lambda f, o: rows_check(4, "txt2img")(f, o) or rows_check(4, "genie")(f, o))


# ---- sources: read as a photo viewer shows them

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


def _mean_case(name, what, make, mean=127.5, tolerance=1.5, colour=None):
    def build(w, f):
        path = make(f)
        return lib('''
import numpy as np
from genie_utils import data
image = data.load_image(V["path"])
pixels = np.asarray(image, dtype=float)
mean = pixels.mean() if V["colour"] is None else pixels.reshape(-1, 3).mean(axis=0)
wanted = V["mean"] if V["colour"] is None else np.array(V["colour"], dtype=float)
if image.mode == "RGB" and np.all(np.abs(mean - wanted) <= V["tolerance"]):
    audit_ok()
else:
    audit_fail(f"mode {image.mode}, mean {np.round(mean, 1)}, expected {wanted}")
''', path=path, mean=mean, tolerance=tolerance, colour=colour)
    simple(name, "sources", ACCEPT, what, build)


def _write(name, content):
    def make(f: Path) -> Path:
        path = f / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content(path)
        return path
    return make


_mean_case("sources-16bit-grey-png", "a 16-bit grey PNG, levels 0-65535 (mean 127.5)", _write("g16.png", gradient16()))
_mean_case("sources-16bit-rgb-png", "a 16-bit RGB PNG (48 bits per pixel)", _write("rgb16.png", gradient16(channels=3)))
_mean_case("sources-16bit-grey-alpha-png", "a 16-bit grey PNG with opaque alpha",
           _write("la16.png", gradient16(alpha=True)))
_mean_case("sources-16bit-tiff", "a 16-bit grey TIFF (I;16)", _write("g16.tif", lambda p: Image.fromarray(
    np.tile(np.round(np.linspace(0, 65535, 64)).astype(np.uint16), (64, 1))).save(p)))
_mean_case("sources-32bit-int-tiff", "a 32-bit integer TIFF holding 16-bit levels", _write("i32.tif", lambda p: Image.fromarray(
    np.tile(np.round(np.linspace(0, 65535, 64)).astype(np.int32), (64, 1))).save(p)))
_mean_case("sources-float-tiff", "a float TIFF with values in [0, 1]", _write("f.tif", lambda p: Image.fromarray(
    np.tile(np.linspace(0, 1, 64).astype(np.float32), (64, 1))).save(p)))
_mean_case("sources-cmyk-jpeg", "a CMYK JPEG of pure red", _write("cmyk.jpg", lambda p: Image.new(
    "CMYK", (64, 64), (0, 255, 255, 0)).save(p, quality=95)), colour=(255, 0, 0), tolerance=12)
_mean_case("sources-palette-transparent-png", "a palette PNG whose background index is transparent",
           _write("p.png", lambda p: _palette_transparent(p)), colour=(255, 255, 255), tolerance=1)
_mean_case("sources-rgba-half-transparent-png", "an RGBA PNG, black at 50% alpha (on white: grey 127.5)",
           _write("rgba.png", lambda p: Image.new("RGBA", (64, 64), (0, 0, 0, 128)).save(p)), mean=127.0,
           tolerance=1.5)
_mean_case("sources-1bit-png", "a 1-bit PNG, half black", _write("b.png", lambda p: _half_black("1", p)),
           mean=127.5, tolerance=0.5)
_mean_case("sources-grey-jpeg", "a greyscale JPEG, half black", _write("l.jpg", lambda p: _half_black("L", p, True)),
           mean=127.5, tolerance=3)


def _palette_transparent(path):
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.save(path, transparency=0)


def _half_black(mode, path, jpeg=False):
    image = Image.new(mode, (64, 64), 255 if mode != "1" else 1)
    ImageDraw.Draw(image).rectangle((0, 0, 31, 63), fill=0)
    image.save(path, quality=100) if jpeg else image.save(path)


QUADRANTS = ((255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 255, 0))   # top left, top right, bottom left, bottom right
INVERSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_270}   # stored pixels = upright ones transformed by this


def upright(size=(64, 48)) -> Image.Image:
    image = Image.new("RGB", size)
    w, h = size
    for (x, y), colour in zip(((0, 0), (1, 0), (0, 1), (1, 1)), QUADRANTS):
        ImageDraw.Draw(image).rectangle((x * w // 2, y * h // 2, (x + 1) * w // 2 - 1, (y + 1) * h // 2 - 1), fill=colour)
    return image


def exif_file(path: Path, orientation: int, kind: str = "JPEG") -> Path:
    stored = upright().transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format=kind, exif=exif, **({"quality": 95} if kind == "JPEG" else {}))
    return path


def _exif_case(orientation, kind="JPEG"):
    suffix = ".jpg" if kind == "JPEG" else ".png"
    simple(f"sources-exif-orientation-{orientation}{'-png' if kind == 'PNG' else ''}", "sources", ACCEPT,
           f"a {kind} with EXIF orientation {orientation}: loaded upright", lambda w, f: lib('''
import numpy as np
from genie_utils import data
image = data.load_image(V["path"])
pixels = np.asarray(image, dtype=float)
h, w = pixels.shape[:2]
found = [pixels[y * h // 2 + 4:(y + 1) * h // 2 - 4, x * w // 2 + 4:(x + 1) * w // 2 - 4].reshape(-1, 3).mean(axis=0)
         for y in (0, 1) for x in (0, 1)]
ok = image.size == (64, 48) and all(np.abs(f - np.array(q)).max() < 40 for f, q in zip(found, V["quadrants"]))
audit_ok() if ok else audit_fail(f"size {image.size}, quadrant colours {[tuple(np.round(f)) for f in found]}")
''', path=exif_file(f / f"photo{suffix}", orientation, kind), quadrants=QUADRANTS))


for _orientation in (2, 3, 5, 6, 8):
    _exif_case(_orientation)
_exif_case(6, "PNG")


def _same_images_case(name, what, make_pair):
    def build(w, f):
        first, second = make_pair(f)
        return lib(GENERATOR + '''
import numpy as np
names = {"boat": "boat"}
a = genie(generator, [V["first"]], "boat", class_names=names, source_ids=["s"])[0]
b = genie(generator, [V["second"]], "boat", class_names=names, source_ids=["s"])[0]
difference = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max()
audit_ok() if difference <= 2 else audit_fail(f"the images differ by up to {difference} grey levels")
''', model=w.model, first=first, second=second)
    simple(name, "sources", ACCEPT, what, build)


def _exif_pair(f):
    exif_file(f / "rotated.png", 6, "PNG")
    upright().save(f / "upright.png")
    return f / "rotated.png", f / "upright.png"


def _sixteen_pair(f):
    (f / "g16.png").write_bytes(gradient16())
    Image.fromarray(np.tile(np.round(np.linspace(0, 255, 64)).astype(np.uint8), (64, 1))).save(f / "g8.png")
    return f / "g16.png", f / "g8.png"


_same_images_case("sources-exif-genie-end-to-end", "genie() on an EXIF-rotated PNG gives the image of its upright copy",
                  _exif_pair)
_same_images_case("sources-16bit-genie-end-to-end", "genie() on a 16-bit PNG gives the image of its 8-bit copy",
                  _sixteen_pair)


def _folder_case(name, what, extra_files, count, warn=(), expected=ACCEPT, names=()):
    """load_class_folders on the shared dataset plus `extra_files(folder)`; `count` images expected."""
    def build(w, f):
        data = copy_data(w, f)
        extra_files(data)
        return lib('''
from genie_utils import data
table = data.load_class_folders(V["data"])
if len(table) == V["count"]:
    audit_ok()
else:
    audit_fail(f"{len(table)} images read, expected {V['count']}: {sorted(table.image_id)}")
''', data=data, count=count)
    simple(name, "sources", expected, what, build, names=names, warn=warn)


def _save(relative, image=None, **kw):
    def make(data: Path):
        path = data / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (image or draw("green")).save(path, **kw)
    return make


for _suffix, _kw in ((".tif", {}), (".TIF", {"format": "TIFF"}), (".webp", {}), (".bmp", {}), (".gif", {}),
                     (".tga", {})):
    _folder_case(f"sources-format-{_suffix[1:]}", f"a {_suffix} image in a class folder is read",
                 _save(f"apple/extra{_suffix}", **_kw), 5)
_folder_case("sources-animated-gif", "an animated GIF is read (its first frame)",
             _save("apple/anim.gif", draw("red"), save_all=True, append_images=[draw("blue")]), 5)
_folder_case("sources-jpeg-named-png", "a JPEG file named .png", _save("apple/jpeg.png", format="JPEG"), 5)
_folder_case("sources-symlinked-image", "a symbolic link to an image",
             lambda d: (d / "apple" / "link.png").symlink_to(d / "boat" / "0.png"), 5)
_folder_case("sources-jpeg2000-named", "a JPEG 2000 (.jp2) file: skipped, and named",
             _save("apple/photo.jp2", format="JPEG2000"), 4, warn=("photo.jp2",))
_folder_case("sources-heic-named", "a .heic file (no decoder): skipped, and named",
             lambda d: (d / "apple" / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64), 4,
             warn=("IMG_0001.heic",))
_folder_case("sources-nested-folder", "images in a folder inside a class folder: skipped, and named",
             _save("apple/more/0.png"), 4, warn=("more",))
_folder_case("sources-text-file", "a notes.txt in a class folder: skipped, and named",
             lambda d: (d / "apple" / "notes.txt").write_text("shot in May"), 4, warn=("notes.txt",))
_folder_case("sources-hidden-file", "a macOS ._ file: skipped, and named",
             lambda d: (d / "apple" / "._0.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60), 4, warn=("._0.png",))
_folder_case("sources-images-beside-class-folders", "images directly under DATA beside the class folders: skipped, "
             "and named", _save("loose.png"), 4, warn=("loose.png",))


def _jpeg_trailer(data: Path):
    path = data / "apple" / "motion.jpg"
    draw("red").save(path, quality=90)
    with open(path, "ab") as f:  # a phone's motion photo: a video after the JPEG's end marker
        f.write(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)


_folder_case("sources-jpeg-with-trailer", "a JPEG followed by other data (a phone's motion photo): read",
             _jpeg_trailer, 5)


def _cli_source(name, what, make):
    def build(w, f):
        data = copy_data(w, f)
        make(data)
        return generate(w, data, f / "store")
    simple(name, "sources", ACCEPT, what, build, check=rows_check(5))  # apple 3 images, boat 2


_cli_source("sources-cli-16bit-png", "genie generate with a 16-bit PNG source", lambda d: (d / "apple" / "g16.png").write_bytes(gradient16()))
_cli_source("sources-cli-exif-jpeg", "genie generate with an EXIF-rotated JPEG source",
            lambda d: exif_file(d / "apple" / "rotated.jpg", 6))


# ---- bad images: found when the dataset loads, with their path

def _noise_image(size=(64, 64)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _truncated(suffix, **kw):
    def make(data: Path) -> Path:
        path = data / "apple" / f"cut{suffix}"
        _noise_image().save(path, **kw)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    return make


def _bad_crc(data: Path) -> Path:
    path = data / "apple" / "crc.png"
    _noise_image().save(path)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    return path


def _huge(data: Path) -> Path:
    path = data / "apple" / "huge.png"
    path.write_bytes(png_bytes(20000, 20000, 1, 0, []))
    return path


def _non_utf8_name(data: Path) -> Path:
    path = os.fsencode(data / "apple") + b"/caf\xe9.png"
    with open(path, "wb") as f:
        draw("red").save(f, format="PNG")
    return data / "apple"


def _non_utf8_folder(data: Path) -> Path:
    folder = os.fsencode(data) + b"/\xff\xfeclass"
    os.mkdir(folder)
    with open(folder + b"/0.png", "wb") as f:
        draw("red").save(f, format="PNG")
    return data


BAD_FILES = {
    "truncated-jpeg": (_truncated(".jpg", quality=95), ("cut.jpg",)),
    "truncated-png": (_truncated(".png"), ("cut.png",)),
    "truncated-webp": (_truncated(".webp", quality=95), ("cut.webp",)),
    "truncated-tiff": (_truncated(".tif"), ("cut.tif",)),
    "truncated-gif": (_truncated(".gif"), ("cut.gif",)),
    "truncated-bmp": (_truncated(".bmp"), ("cut.bmp",)),
    "png-bad-checksum": (_bad_crc, ("crc.png",)),
    "png-20000x20000": (_huge, ("huge.png",)),
    "non-utf8-file-name": (_non_utf8_name, ("caf",)),
    "non-utf8-class-folder": (_non_utf8_folder, ("\\xff\\xfeclass",)),
    "zero-byte-png": (lambda d: (d / "apple" / "empty.png").write_bytes(b""), ("empty.png",)),
    "text-named-jpg": (lambda d: (d / "apple" / "page.jpg").write_text("<html>404</html>"), ("page.jpg",)),
    "dangling-symlink": (lambda d: (d / "apple" / "gone.png").symlink_to(d / "nowhere.png"), ("gone.png",)),
}
for _bad, (_make, _names) in BAD_FILES.items():
    simple(f"bad-{_bad}", "bad-images", CLEAR, f"load_class_folders with a {_bad.replace('-', ' ')} image",
           lambda w, f, make=_make: lib('''
from genie_utils import data
data.load_class_folders(V["data"])
''', data=(lambda d: (make(d), d)[1])(copy_data(w, f))), names=_names)
for _bad in ("truncated-jpeg", "truncated-png", "truncated-webp", "truncated-tiff", "png-20000x20000",
             "non-utf8-file-name"):
    def _bad_cli(w, f, make=BAD_FILES[_bad][0]):
        data = copy_data(w, f, three=True)
        make(data)
        return generate(w, data, f / "store", batch=1)
    simple(f"bad-{_bad}-cli", "bad-images", CLEAR, f"genie generate (3 classes, batch 1) with a {_bad.replace('-', ' ')} "
           "image", _bad_cli, names=BAD_FILES[_bad][1], timeout=90)
simple("bad-empty-class-folder", "bad-images", CLEAR, "a class folder without images",
       lambda w, f: ((copy_data(w, f) / "cloud").mkdir(), generate(w, f / "data", f / "store"))[1], names=("cloud",))
simple("bad-dataset-missing", "bad-images", CLEAR, "DATA does not exist",
       lambda w, f: generate(w, f / "dtaa", f / "store"), names=("dtaa",))
def _no_class_folders(w, f):
    (f / "data").mkdir()
    for n in range(3):
        draw("red").save(f / "data" / f"{n}.png")
    return generate(w, f / "data", f / "store")


simple("bad-no-class-folders", "bad-images", CLEAR, "DATA holds images but no class folders", _no_class_folders,
       names=("class",))
simple("bad-genie-truncated-source", "bad-images", CLEAR, "genie() on a truncated JPEG path",
       lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "boat", class_names={"boat": "boat"})
''', model=w.model, path=_truncated(".jpg", quality=95)((f / "apple").mkdir() or f)), names=("cut.jpg",))
simple("bad-genie-missing-source", "bad-images", CLEAR, "genie() on a path that does not exist",
       lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "boat", class_names={"boat": "boat"})
''', model=w.model, path=f / "nope.png"), names=("nope.png",))


def _run_jobs_bad_source(damage):
    def build(w, f):
        data = copy_data(w, f, three=True)
        run = lib(GENERATOR + '''
from genie_utils import data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = data.load_class_folders(V["data"])
damage = V["damage"]
path = [p for p in dataset.path if "/cloud/" in p][0]
if damage == "truncate":
    import os; os.truncate(path, os.path.getsize(path) // 2)
else:
    import os; os.remove(path)
run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), data.class_display_names(dataset),
         batch_size=1, progress=False)
''', model=w.model, data=data, store=f / "store", damage=damage)
        run.ignore = ("data/",)  # the damage the snippet itself does to the dataset
        return run
    return build


simple("bad-run-jobs-truncated-source", "bad-images", CLEAR, "run_jobs whose source file was cut short after loading",
       _run_jobs_bad_source("truncate"), names=("cloud",), timeout=90)
simple("bad-run-jobs-missing-source", "bad-images", CLEAR, "run_jobs whose source file was removed after loading",
       _run_jobs_bad_source("remove"), names=("cloud",), timeout=90)


# ---- settings: checked before any work

for _name, _args, _names in (
        ("template-two-fields", ["--prompt-template", "{0} {1}"], ("prompt template",)),
        ("template-no-field", ["--prompt-template", "a photo"], ("prompt template",)),
        ("template-unclosed", ["--prompt-template", "a photo of a {"], ("prompt template",)),
        ("steps-zero", ["--steps", "0"], ("steps",)),
        ("steps-text", ["--steps", "ten"], ("--steps",)),
        ("steps-one", ["--steps", "1"], ("1",)),
        ("steps-one-dry-run", ["--steps", "1", "--dry-run"], ("1",)),
        ("noise-ratio-runs-no-step", ["--noise-ratio", "0.1"], ("0.1",)),
        ("guidance-nan", ["--guidance", "nan"], ("guidance",)),
        ("guidance-negative", ["--guidance", "-1"], ("guidance",)),
        ("noise-ratio-zero", ["--noise-ratio", "0"], ("noise ratio",)),
        ("noise-ratio-above-one", ["--noise-ratio", "1.5"], ("noise ratio",)),
        ("noise-ratio-nan", ["--noise-ratio", "nan"], ("noise ratio",)),
        ("batch-size-zero", ["--batch-size", "0"], ("--batch-size",)),
        ("variants-zero", ["--method", "txt2img", "--variants", "0"], ("--variants",)),
        ("speed-fp16-on-cpu", ["--speed", "fp16"], ("fp16",))):
    simple(f"settings-{_name}", "settings", CLEAR, f"genie generate {' '.join(_args)}",
           lambda w, f, args=_args: generate(w, copy_data(w, f), f / "store", *args), names=_names)
for _variable, _value in (("GENIE_HUB_TIMEOUT_SECONDS", "abc"), ("GENIE_HUB_TIMEOUT_SECONDS", "0"),
                          ("GENIE_HUB_TIMEOUT_SECONDS", "nan"), ("GENIE_CLAIM_STALE_SECONDS", "soon"),
                          ("GENIE_CLAIM_STALE_SECONDS", "0")):
    simple(f"settings-{_variable.lower().replace('_', '-')}-{_value}", "settings", CLEAR,
           f"genie generate with {_variable}={_value}",
           lambda w, f, v=_variable, x=_value: generate(w, copy_data(w, f), f / "store", env={v: x}),
           names=(_variable,))
simple("settings-hub-timeout-abc-library", "settings", CLEAR, "import genie_utils.generate with "
       "GENIE_HUB_TIMEOUT_SECONDS=abc", lambda w, f: Run(lib("import genie_utils.generate\naudit_fail('imported')").argv,
                                                           "lib", {"GENIE_HUB_TIMEOUT_SECONDS": "abc"}),
       names=("GENIE_HUB_TIMEOUT_SECONDS",))
simple("settings-claim-stale-abc-library", "settings", CLEAR, "run_jobs with GENIE_CLAIM_STALE_SECONDS=soon",
       lambda w, f: Run(lib(GENERATOR + '''
from genie_utils import data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = data.load_class_folders(V["data"])
run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), data.class_display_names(dataset), progress=False)
''', model=w.model, data=copy_data(w, f), store=f / "store").argv, "lib", {"GENIE_CLAIM_STALE_SECONDS": "soon"}),
       names=("GENIE_CLAIM_STALE_SECONDS",))
for _name, _code, _names in (
        ("recipe-steps-zero", "Recipe(num_inference_steps=0)", ("steps",)),
        ("recipe-guidance-nan", "Recipe(guidance_scale=float('nan'))", ("guidance",)),
        ("recipe-height-63", "Recipe(height=63)", ("height",)),
        ("recipe-template", "Recipe(prompt_template='{0} {1}')", ("prompt template",)),
        ("recipe-guidance-interval", "Recipe(guidance_timesteps=(600, 100))", ("guidance_timesteps",))):
    simple(f"settings-lib-{_name}", "settings", CLEAR, _code, lambda w, f, code=_code: lib(
        f"from genie_utils.recipe import Recipe\n{code}"), names=_names)
for _name, _code, _names in (
        ("genie-ratio-zero", "genie(generator, [V['path']], 'boat', noise_ratio=0.0)", ("noise ratio",)),
        ("genie-ratio-nan", "genie(generator, [V['path']], 'boat', noise_ratio=float('nan'))", ("noise ratio",)),
        ("genie-ratio-text", "genie(generator, [V['path']], 'boat', noise_ratio='0.8')", ("noise ratio",)),
        ("genie-no-sources", "genie(generator, [], 'boat')", ("source",)),
        ("generator-batch-zero", "GenieGenerator(generator.pipe, batch_size=0)", ("batch_size",)),
        ("txt2img-count-zero", "txt2img(generator, 'apple', 0)", ("count",))):
    simple(f"settings-lib-{_name}", "settings", CLEAR, _code, lambda w, f, code=_code: lib(
        GENERATOR + code, model=w.model, path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=_names)


def _profile_file(f: Path, text: str, name="mine.toml") -> Path:
    (f / name).write_text(text)
    return f / name


_PROFILE_HEAD = 'name = "mine"\nextends = "smoke"\n'
for _name, _text, _names, _extra in (
        ("extends-loop", None, ("extends", "loop"), ()),
        ("extends-itself", 'name = "mine"\nextends = "SELF"\n', ("extends",), ()),
        ("unknown-key", _PROFILE_HEAD + "[generation]\nnum_inference_step = 4\n", ("num_inference_step",), ()),
        ("wrong-type", _PROFILE_HEAD + '[generation]\nnum_inference_steps = "ten"\n', ("num_inference_steps",), ()),
        ("syntax-error", _PROFILE_HEAD + "[generation\n", ("mine.toml",), ()),
        ("steps-zero", _PROFILE_HEAD + "[generation]\nnum_inference_steps = 0\n", ("num_inference_steps",), ())):
    def _build(w, f, name=_name, text=_text):
        if name == "extends-loop":
            _profile_file(f, 'name = "a"\nextends = "' + str(f / "b.toml") + '"\n', "a.toml")
            path = _profile_file(f, 'name = "b"\nextends = "' + str(f / "a.toml") + '"\n', "b.toml")
        else:
            path = _profile_file(f, text.replace("SELF", str(f / "mine.toml")))
        return reproduce("--profile", path, "--only", "zz-no-notebook")
    simple(f"settings-reproduce-profile-{_name}", "settings", CLEAR, f"reproduce --profile (a profile: {_name})",
           _build, names=_names)
simple("settings-reproduce-unknown-profile", "settings", CLEAR, "reproduce --profile embeded",
       lambda w, f: reproduce("--profile", "embeded"), names=("embeded",))
simple("settings-reproduce-only-without-value", "settings", CLEAR, "reproduce --only",
       lambda w, f: reproduce("--only"), names=("--only",))
simple("settings-reproduce-only-no-match", "settings", CLEAR, "reproduce --only 99 (no such notebook)",
       lambda w, f: reproduce("--profile", "smoke", "--only", "99"), names=("99",))
simple("settings-reproduce-record-checks-not-smoke", "settings", CLEAR, "reproduce --record-checks without smoke",
       lambda w, f: reproduce("--record-checks", "--only", "00"), names=("smoke",))
simple("settings-reproduce-unknown-option", "settings", CLEAR, "reproduce --profiles smoke",
       lambda w, f: reproduce("--profiles", "smoke"), names=("--profiles",))
for _name, _text, _names in (
        ("guidance-nan", "[generation]\nguidance_scale = nan\n", ("guidance",)),
        ("resolution-63", "[dataset]\nresolution = 63\n", ("63",)),
        ("template-two-fields", '[generation]\nprompt_template = "{0} {1}"\n', ("prompt",)),
        ("guidance-interval-reversed", "[generation]\nguidance_timesteps = [600, 100]\n", ("guidance_timesteps",))):
    simple(f"settings-profile-{_name}", "settings", CLEAR, f"a profile with {_text.strip()!r}, loaded as reproduce "
           "--profile loads it (profiles.load_profile; no notebook is run)", lambda w, f, text=_text: lib('''
from genie_utils.profiles import load_profile
load_profile(V["path"])
''', path=_profile_file(f, _PROFILE_HEAD + text)), names=_names)
simple("settings-lib-load-profile-loop", "settings", CLEAR, "profiles.load_profile on profiles that extend each other",
       lambda w, f: (_profile_file(f, 'name = "a"\nextends = "' + str(f / "b.toml") + '"\n', "a.toml"),
                     lib("from genie_utils.profiles import load_profile\nload_profile(V['path'])",
                         path=_profile_file(f, 'name = "b"\nextends = "' + str(f / "a.toml") + '"\n', "b.toml")))[1],
       names=("extends",))
simple("settings-lib-profile-resolution-63", "settings", CLEAR, "GenieGenerator.from_profile with resolution 63",
       lambda w, f: lib('''
from genie_utils import profiles
from genie_utils.generate import GenieGenerator
profile = profiles.load_profile("smoke")
profile["dataset"]["resolution"] = 63
GenieGenerator.from_profile(profile, device="cpu")
'''), names=("63",))


# ---- model folders: refused before any work, naming the file

def _model_copy(w, f) -> Path:
    return Path(shutil.copytree(w.model, f / "model"))


def _swap(model: Path, a: str, b: str):
    first = model / a / "diffusion_pytorch_model.safetensors"
    second = model / b / ("model.safetensors" if b == "text_encoder" else "diffusion_pytorch_model.safetensors")
    temporary = model / "swap"
    first.rename(temporary)
    second.rename(first)
    temporary.rename(second)


def _edit_json(path: Path, edit):
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


MODEL_DAMAGE = {
    "swapped-unet-vae": (lambda m: _swap(m, "unet", "vae"), ("unet",)),
    "swapped-vae-text-encoder": (lambda m: _swap(m, "vae", "text_encoder"), ("vae",)),
    "index-empty-object": (lambda m: (m / "model_index.json").write_text("{}"), ("model_index.json",)),
    "index-not-json": (lambda m: (m / "model_index.json").write_text("{\"_class_name\": "), ("model_index.json",)),
    "index-lists-no-unet": (lambda m: _edit_json(m / "model_index.json", lambda d: {k: v for k, v in d.items()
                                                                                   if k != "unet"}), ("unet",)),
    "no-tokenizer-folder": (lambda m: shutil.rmtree(m / "tokenizer"), ("tokenizer",)),
    "tokenizer-without-vocabulary": (lambda m: [p.unlink() for p in (m / "tokenizer").iterdir()
                                                if p.name != "tokenizer_config.json"], ("tokenizer",)),
    "no-unet-weights": (lambda m: [p.unlink() for p in (m / "unet").glob("*.safetensors")], ("unet",)),
    "truncated-unet-weights": (lambda m: [p.write_bytes(p.read_bytes()[:1000]) for p in (m / "unet").glob("*.safetensors")],
                               ("unet",)),
    "unet-config-not-json": (lambda m: (m / "unet" / "config.json").write_text("{"), ("config.json",)),
    "unet-config-other-widths": (lambda m: _edit_json(m / "unet" / "config.json", lambda d: {
        **d, "block_out_channels": [c * 2 for c in d["block_out_channels"]]}), ("unet",)),
    "no-scheduler-config": (lambda m: (m / "scheduler" / "scheduler_config.json").unlink(), ("scheduler",)),
    "empty-folder": (lambda m: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in m.iterdir()],
                     ("model_index.json",)),
}
for _damage, (_edit, _names) in MODEL_DAMAGE.items():
    def _model_case(w, f, edit=_edit):
        model = _model_copy(w, f)
        edit(model)
        return generate(w, copy_data(w, f), f / "store", "--model", model)
    simple(f"model-{_damage}", "model-folders", CLEAR, f"genie generate --model FOLDER with {_damage.replace('-', ' ')}",
           _model_case, names=_names)
for _damage in ("swapped-unet-vae", "index-empty-object"):
    def _model_lib(w, f, edit=MODEL_DAMAGE[_damage][0]):
        model = _model_copy(w, f)
        edit(model)
        return lib("from genie_utils import pipeline\npipeline.load_pipeline(V['model'], device='cpu')", model=model)
    simple(f"model-{_damage}-library", "model-folders", CLEAR, f"pipeline.load_pipeline on a folder with "
           f"{_damage.replace('-', ' ')}", _model_lib, names=MODEL_DAMAGE[_damage][1])
simple("model-folder-missing", "model-folders", CLEAR, "--model ./my-sd (no such folder)",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", "./my-sd"), names=("my-sd",))
simple("model-is-a-file", "model-folders", CLEAR, "--model pointing at a .safetensors file",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--model",
                             w.model / "unet" / "diffusion_pytorch_model.safetensors"), names=("safetensors",))
simple("model-empty-string", "model-folders", CLEAR, "--model ''",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", ""), names=("model",))


# ---- command-line options: an option the command does not use, or cannot use, is refused

def _dry(*args):
    """A real run (not --dry-run) with `args`: an option refused only by a real run is refused too late."""
    return lambda w, f: generate(w, copy_data(w, f), f / "store", *args)


def _benchmark(text: str | bytes):
    def build(w, f):
        path = f / "throughput.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return generate(w, copy_data(w, f), f / "store", "--dry-run", "--device", "cpu", "--benchmark", path)
    return build


_ROW = "device,batch_size,images_per_second,steps,noise_ratio\n"
for _name, _build, _names in (
        ("source-classes-with-txt2img", _dry("--method", "txt2img", "--source-classes", "apple"), ("--source-classes",)),
        ("variants-with-genie", _dry("--variants", "2"), ("--variants",)),
        ("variants-with-genie-ada", _dry("--method", "genie_ada", "--variants", "2"), ("--variants",)),
        ("backbone-checkpoint-with-genie", _dry("--backbone-checkpoint", "x.pth"), ("--backbone-checkpoint",)),
        ("backbone-with-txt2img", _dry("--method", "txt2img", "--backbone", "resnet18"), ("--backbone",)),
        ("noise-ratio-with-txt2img", _dry("--method", "txt2img", "--noise-ratio", "0.5"), ("--noise-ratio",)),
        ("ada-resnet-without-checkpoint", _dry("--method", "genie_ada", "--backbone", "resnet18"), ("--backbone-checkpoint",)),
        ("ada-checkpoint-missing", _dry("--method", "genie_ada", "--backbone", "resnet18", "--backbone-checkpoint",
                                        "unisiam.pth"), ("unisiam.pth",)),
        ("benchmark-other-columns", _benchmark("when,speed\n2026-11-30,3.1\n"), ("--benchmark",)),
        ("benchmark-not-csv", _benchmark(bytes(range(256)) * 4), ("--benchmark",)),
        ("benchmark-text-speed", _benchmark(_ROW + "CPU,8,fast,20,0.8\n"), ("images_per_second",)),
        ("benchmark-text-steps", _benchmark(_ROW + "CPU,8,2.0,twenty,0.8\n"), ("steps",)),
        ("benchmark-numeric-device", _benchmark(_ROW + "0,8,2.0,20,0.8\n"), ("device",)),
        ("benchmark-folder-missing", _dry("--benchmark", "nowhere/throughput.csv"), ("nowhere",)),
        ("device-cuda", _dry("--device", "cuda"), ("cuda",)),
        ("device-unknown", _dry("--device", "gpu0"), ("gpu0",)),
        ("unknown-option", _dry("--noise_ratio", "0.5"), ("--noise_ratio",)),
        ("unknown-method", _dry("--method", "genie-ada"), ("--method",)),
        ("unknown-target-class", _dry("--target-classes", "boats"), ("boats",)),
        ("same-single-class", _dry("--source-classes", "apple", "--target-classes", "apple"), ("--source-classes",))):
    simple(f"cli-{_name}", "cli-options", CLEAR, f"genie generate {_name.replace('-', ' ')}", _build, names=_names)
simple("cli-ada-checkpoint-not-a-checkpoint", "cli-options", CLEAR, "--backbone-checkpoint notes.txt (a text file)",
       lambda w, f: ((f / "notes.txt").write_text("not a checkpoint"),
                     generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--backbone", "resnet18",
                              "--backbone-checkpoint", f / "notes.txt"))[1], names=("notes.txt",))
simple("cli-no-command", "cli-options", CLEAR, "genie (no command)", lambda w, f: cli(), names=("command",))
simple("cli-generate-without-store", "cli-options", CLEAR, "genie generate DATA (no --store)",
       lambda w, f: cli("generate", copy_data(w, f)), names=("--store",))


def _store_is_file(w, f):
    (f / "store").write_text("a file")
    return generate(w, copy_data(w, f), f / "store")


simple("cli-store-is-a-file", "cli-options", CLEAR, "--store names an existing file", _store_is_file,
       names=("store",))
simple("cli-store-is-the-dataset", "cli-options", CLEAR, "--store DATA (the dataset folder itself)",
       lambda w, f: generate(w, copy_data(w, f), f / "data"), names=("data",))
simple("cli-store-inside-the-dataset", "cli-options", CLEAR, "--store DATA/store (read as a class next time)",
       lambda w, f: generate(w, copy_data(w, f), f / "data" / "store"), names=("store",))
simple("cli-dry-run-missing-model", "cli-options", CLEAR, "--dry-run with --model ./my-sd (no such folder)",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--dry-run", "--model", "./my-sd"), names=("my-sd",))


# ---- store damage: named, and made again

def _rerun_damaged(damage):
    def build(w, f):
        store = copy_store(w, f)
        damage(store, w)
        return generate(w, copy_data(w, f), store)
    return build


def _first(store: Path, w) -> tuple[Path, Path]:
    row = store / "rows" / w.keys[0][:2] / f"{w.keys[0]}.json"
    return row, store / json.loads(row.read_text())["file"]


def remade(folder: Path, outcome: Outcome) -> str | None:
    return rows_check(4)(folder, outcome)


for _name, _damage, _warn, _expected, _names in (
        ("image-deleted", lambda s, w: _first(s, w)[1].unlink(), (".png",), ACCEPT, ()),
        ("image-zero-bytes", lambda s, w: _first(s, w)[1].write_bytes(b""), (".png",), ACCEPT, ()),
        ("image-not-an-image", lambda s, w: _first(s, w)[1].write_text("garbage" * 10), (".png",), ACCEPT, ()),
        ("image-truncated", lambda s, w: _first(s, w)[1].write_bytes(_first(s, w)[1].read_bytes()[:200]), (".png",),
         ACCEPT, ()),
        ("row-without-file", lambda s, w: _edit_json(_first(s, w)[0], lambda r: {k: v for k, v in r.items()
                                                                                 if k != "file"}), (".json",), ACCEPT, ()),
        ("row-file-outside-store", lambda s, w: _edit_json(_first(s, w)[0], lambda r: {**r, "file": "/etc/os-release"}),
         (".json",), ACCEPT, ()),
        ("temporary-leftovers", lambda s, w: (s / "images" / "genie" / f".tmp-{w.keys[0]}.png.abc").write_bytes(b"x"),
         (), ACCEPT, ()),
        ("manifest-deleted", lambda s, w: (s / "manifest.csv").unlink(), (), ACCEPT, ()),
        ("row-truncated", lambda s, w: _first(s, w)[0].write_text(_first(s, w)[0].read_text()[:40]), (), CLEAR, (".json",)),
        ("row-json-list", lambda s, w: _first(s, w)[0].write_text("[1, 2]"), (), CLEAR, (".json",)),
        ("row-latin1", lambda s, w: _first(s, w)[0].write_bytes(b'{"key": "caf\xe9"}'), (), CLEAR, (".json",))):
    simple(f"damage-{_name}", "store-damage", _expected, f"genie generate again on a store with {_name.replace('-', ' ')}",
           _rerun_damaged(_damage), names=_names, warn=_warn, check=remade if _expected == ACCEPT else None)
simple("damage-lib-load-image-not-an-image", "store-damage", CLEAR, "Store.load_image of a key whose image is garbage",
       lambda w, f: lib("from genie_utils.store import Store\nStore(V['store']).load_image(V['key'])",
                        store=(lambda s: (_first(s, w)[1].write_text("garbage"), s)[1])(copy_store(w, f)),
                        key=w.keys[0]), names=(".png",))
simple("damage-lib-has-image-not-an-image", "store-damage", ACCEPT, "Store.has of a key whose image is garbage: not "
       "done, and named", lambda w, f: lib('''
from genie_utils.store import Store
audit_fail("counted as done") if Store(V["store"]).has(V["key"]) else audit_ok()
''', store=(lambda s: (_first(s, w)[1].write_text("garbage"), s)[1])(copy_store(w, f)), key=w.keys[0]), warn=(".png",))
simple("damage-lib-manifest-row-truncated", "store-damage", CLEAR, "Store.manifest with a truncated row file",
       lambda w, f: lib("from genie_utils.store import Store\nStore(V['store']).manifest()",
                        store=(lambda s: (_first(s, w)[0].write_text("{\"key\":"), s)[1])(copy_store(w, f))),
       names=(".json",))


# ---- other: class-name files, unknown classes, disk full

for _name, _content, _file, _names in (
        ("empty", "", "names.txt", ("names.txt",)),
        ("blank-lines-only", "\n\n  \n", "names.txt", ("names.txt",)),
        ("duplicate-line", "apple red apple\nboat boat\napple green apple\n", "names.txt", ("names.txt", "apple")),
        ("line-without-name", "apple\nboat boat\n", "names.txt", ("names.txt",)),
        ("malformed-json", '{"apple": "red apple",}', "names.json", ("names.json",)),
        ("json-list", '["apple", "boat"]', "names.json", ("names.json",)),
        ("json-number-value", '{"apple": 1, "boat": "boat"}', "names.json", ("names.json",)),
        ("latin1", "apple pomme d'api\nboat bateau à voile\n".encode("latin-1"), "names.txt", ("names.txt",)),
        ("missing-a-class", "apple red apple\n", "names.txt", ("boat",))):
    simple(f"other-class-names-{_name}", "other", CLEAR, f"--class-names: {_name.replace('-', ' ')}",
           lambda w, f, content=_content, file=_file: generate(w, copy_data(w, f), f / "store", "--class-names",
                                                             _names_file(f, content, file)), names=_names)
simple("other-class-names-missing-file", "other", CLEAR, "--class-names names.txt that does not exist",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--class-names", f / "names.txt"), names=("names.txt",))
for _name, _description, _content in (
        ("utf8-bom", "saved as UTF-8 with a byte-order mark (Notepad)", "\ufeffapple red apple\nboat sail boat\n"),
        ("crlf", "with Windows line ends", "apple red apple\r\nboat sail boat\r\n")):
    simple(f"other-class-names-{_name}", "other", ACCEPT, f"--class-names {_description}",
           lambda w, f, content=_content: generate(w, copy_data(w, f), f / "store", "--class-names",
                                                   _names_file(f, content)),
           check=lambda f, o: rows_check(4)(f, o) or (None if {r["prompt"] for r in read_rows(f / "store")} ==
                                                      {"a photo of a red apple.", "a photo of a sail boat."}
                                                      else "prompts do not use the display names"))
simple("other-wordnet-without-class-names", "other", CLEAR, "WordNet-id folders and no --class-names",
       lambda w, f: _wordnet(w, f, names=False), names=("class",))
simple("other-lib-wordnet-without-class-names", "other", CLEAR, "load_class_folders of WordNet-id folders, no names",
       lambda w, f: lib("from genie_utils import data\ndata.load_class_folders(V['data'])",
                        data=(lambda d: ([(d / c).mkdir(parents=True) or draw("red").save(d / c / "0.png")
                                          for c in ("n01234567", "n07654321")], d)[1])(f / "data")), names=("class",))
simple("other-lib-genie-wordnet-target-without-class-names", "other", CLEAR, "genie(..., 'n02085620') without "
       "class_names: the prompt would read 'a photo of a n02085620.'", lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "n02085620")
''', model=w.model, path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=("n02085620",))
simple("other-lib-genie-unknown-target", "other", CLEAR, "genie(..., 'boot', class_names={'boat': ...})",
       lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "boot", class_names={"boat": "boat", "apple": "apple"})
''', model=w.model, path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=("boot",))
simple("other-lib-run-jobs-without-class-names", "other", CLEAR, "run_jobs(generator, jobs, store, None)",
       lambda w, f: lib(GENERATOR + '''
from genie_utils import data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = data.load_class_folders(V["data"])
run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), None, progress=False)
''', model=w.model, data=copy_data(w, f), store=f / "store"), names=("class_names",))
simple("other-lib-run-jobs-unknown-target", "other", CLEAR, "run_jobs with a job whose target is not in class_names",
       lambda w, f: lib(GENERATOR + '''
from genie_utils import data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = data.load_class_folders(V["data"])
run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), {"apple": "apple"}, progress=False)
''', model=w.model, data=copy_data(w, f), store=f / "store"), names=("boat",))
simple("other-disk-full-generate", "other", CLEAR, "genie generate onto a full disk",
       lambda w, f: disk_full(f / "store", generate(w, copy_data(w, f), f / "store")), names=("store",))
simple("other-disk-full-export", "other", CLEAR, "genie export onto a full disk",
       lambda w, f: Run(disk_full(out_path(f), cli("export", copy_store(w, f), out_path(f))).argv, "cli",
                        ignore=("x/y/out/.genie-export",)), names=("out",))
simple("other-disk-full-library-store", "other", CLEAR, "Store.put onto a full disk", lambda w, f: lib('''
import errno, os
from PIL import Image
from genie_utils.store import Store
_fsync = os.fsync
def fsync(fd):
    raise OSError(errno.ENOSPC, "No space left on device")
os.fsync = fsync
Store(V["store"]).put("e" * 20, Image.new("RGB", (8, 8)), {"method": "genie"})
''', store=f / "store"), names=("store",))


# ---- store keys and roots, values refused when made, no traceback from the API

_SUPPORT = 'pd.DataFrame({"image_id": ["a"], "path": ["a.png"], "class_name": ["boat"]})'
for _name, _what, _code, _names in (
        ("store-key-escapes", "Store.put with the key '../../../x'", 'from PIL import Image\nfrom genie_utils.store '
         'import Store\nStore(V["store"]).put("../../../x", Image.new("RGB", (8, 8)), {"method": "genie"})',
         ("../../../x", "store key")),
        ("store-key-escapes-get", "Store.row with the key '../x'",
         'from genie_utils.store import Store\nStore(V["store"]).row("../x")', ("../x", "store key")),
        ("store-root-empty", "Store('')", 'from genie_utils.store import Store\nStore("")', ("store root",)),
        ("recipe-seed-text", "Recipe(seed='abc')", 'from genie_utils.recipe import Recipe\nRecipe(seed="abc")',
         ("seed", "abc")),
        ("job-variant-negative", "Job(..., variant=-1)", 'from genie_utils.jobs import Job\n'
         'Job("img2img_low", "a", "a.png", "boat", "boat", 0.3, -1)', ("variant", "-1")),
        ("job-variant-text", "Job(..., variant='a')", 'from genie_utils.jobs import Job\n'
         'Job("img2img_low", "a", "a.png", "boat", "boat", 0.3, "a")', ("variant", "'a'")),
        ("own-class-jobs-variants-negative", "own_class_jobs(support, 'img2img_low', variants=-1)",
         f'import pandas as pd\nfrom genie_utils import pairing\npairing.own_class_jobs({_SUPPORT}, "img2img_low", -1)',
         ("variants", "-1")),
        ("ada-candidates-no-ratios", "ada.generate_candidates(..., ratios=[])",
         'from genie_utils import ada\nada.generate_candidates(None, [object()], None, {}, ratios=[])', ("ratios",)),
        ("ada-select-lengths", "ada.select_noise_ratio with 5 ratios and 4 candidates", 'import numpy as np\n'
         'from genie_utils import ada\nada.select_noise_ratio(np.ones(3), np.ones((1, 3)), np.ones((4, 3)))',
         ("5 ratios", "4 candidates"))):
    simple(f"values-{_name}", "values", CLEAR, _what,
           lambda w, f, code=_code: lib(code, store=f / "store"), names=_names)
simple("values-store-root-a-file", "values", CLEAR, "Store(a file)", lambda w, f: lib(
    'from genie_utils.store import Store\nStore(V["root"])', root=(lambda p: (p.write_text("x"), p)[1])(f / "file")),
       names=("file", "not a folder"))
simple("values-genie-empty-class", "values", CLEAR, "genie(generator, [image], '')", lambda w, f: lib(
    GENERATOR + 'genie(generator, [V["path"]], "")\n', model=w.model,
    path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=("no class name",))
simple("values-genie-output-np", "values", ACCEPT, "genie(..., output_type='np')", lambda w, f: lib(
    GENERATOR + 'out = genie(generator, [V["path"]] * 3, "boat", output_type="np")\n'
    'audit_ok() if out.shape[0] == 3 and out.ndim == 4 else audit_fail(f"shape {out.shape}")\n', model=w.model,
    path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")))
for _name, _text, _names in (
        ("evaluation-fraction", 'extends = "smoke"\n[splits]\nevaluation_fraction = 1.5\n',
         ("p.toml", "evaluation_fraction = 1.5")),
        ("noise-ratios", 'extends = "smoke"\n[walkthrough]\nnoise_ratios = [0, 2]\n', ("p.toml", "noise_ratios")),
        ("byte-order-mark", '\ufeffextends = "smoke"\n', ("p.toml", "byte-order mark")),
        ("relative-extends", 'extends = "absent.toml"\n', ("p.toml", "absent.toml", "relative"))):
    simple(f"values-profile-{_name}", "values", CLEAR, f"a profile: {_name.replace('-', ' ')}",
           lambda w, f, text=_text: lib('from genie_utils import profiles\nprofiles.load_profile(V["profile"])',
                                        profile=(lambda p: (p.write_text(text, encoding="utf-8"), p)[1])(f / "p.toml")),
           names=_names)
simple("values-profile-latin1", "values", CLEAR, "a profile saved in latin-1", lambda w, f: lib(
    'from genie_utils import profiles\nprofiles.load_profile(V["profile"])', profile=(lambda p: (p.write_bytes(
        'extends = "smoke"\ndescription = "caf\u00e9"\n'.encode("latin-1")), p)[1])(f / "p.toml")),
       names=("p.toml", "UTF-8"))
simple("values-generate-unknown-backbone", "values", CLEAR, "genie generate --method genie_ada --backbone resnet19",
       lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--backbone", "resnet19"),
       names=("resnet19", "unknown"))
simple("values-export-no-store-folder", "values", CLEAR, "genie export of a store folder that does not exist",
       lambda w, f: cli("export", f / "nowhere", f / "out"), names=("nowhere", "no store folder"))
simple("values-model-typo-in-local-folder", "values", CLEAR, "from_pretrained('models/nope') in the project",
       lambda w, f: lib('import os\nos.chdir(V["root"])\nfrom genie_utils.generate import GenieGenerator\n'
                        'GenieGenerator.from_pretrained("models/nope")', root=ROOT), names=("models/nope", "no folder"))


def _flipped_model(w, f):
    import shutil
    from genie_utils.pipeline import write_checksums
    model = f / "model"
    shutil.copytree(w.model, model)
    write_checksums(model)
    weights = next((model / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    return lib('from genie_utils.generate import GenieGenerator\nGenieGenerator.from_pretrained(V["model"])',
               model=model)


simple("values-model-flipped-bit", "values", CLEAR, "a model folder with SHA256SUMS whose UNet weights have a flipped "
       "bit", _flipped_model, names=("diffusion_pytorch_model", "sha256", "git checkout"))

# --------------------------------------------------------------------------------------------------


def run_case(world: World, case: Case) -> Outcome:
    folder = world.cases / case.name
    folder.mkdir()
    run = case.setup(world, folder)
    before = snapshot(folder)
    try:
        rc, seconds, stdout, stderr, timed_out = execute(run, folder, world.logs, case.timeout, case.name)
    finally:
        for cleanup in run.cleanup:
            cleanup()
    outcome = Outcome(rc, seconds, stdout, stderr, timed_out, written_between(before, snapshot(folder), run.ignore))
    classify(case, run, outcome, folder)
    outcome.command = " ".join(shlex.quote(a) for a in ["python", *run.argv]) if run.argv[0] != "-c" else \
        "python -c <<'EOF'\n" + run.argv[1] + "\nEOF"
    outcome.env = {k: v for k, v in run.env.items()}
    return outcome


def summary(rows: list[dict]) -> str:
    lines = [f"{'category':<14}" + "".join(f"{c:>20}" for c in CLASSES) + f"{'total':>8}"]
    for category in [*CATEGORIES, "total"]:
        chosen = [r for r in rows if category in ("total", r["category"])]
        if not chosen:
            continue
        counts = [sum(r["observed"] == c for r in chosen) for c in CLASSES]
        lines.append(f"{category:<14}" + "".join(f"{n:>20}" for n in counts) + f"{len(chosen):>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks"
                        / f"own-data-audit-{datetime.now():%Y%m%d-%H%M%S}", help="folder for audit.csv")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, help="only these categories")
    parser.add_argument("--cases", nargs="+", metavar="NAME", help="only these cases (names or prefixes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "two cases share a name"
    chosen = [c for c in CASES if (not args.categories or c.category in args.categories)
              and (not args.cases or any(c.name.startswith(p) for p in args.cases))]
    if args.list:
        for c in chosen:
            print(f"{c.name:<58} {c.category:<14} {c.expected:<19} {c.what}")
        print(f"{len(chosen)} cases")
        return
    if not chosen:
        parser.error("no case matches")
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="genie-own-data-audit-"))
    world = World(root)
    began = time.perf_counter()
    rows, unexpected = [], []
    try:
        print(f"building the shared inputs under {root} ...", flush=True)
        world.build()
        print(f"  {time.perf_counter() - began:.0f} s", flush=True)
        for number, case in enumerate(chosen, 1):
            try:
                outcome = run_case(world, case)
            except Exception as error:  # noqa: BLE001 - a broken case is reported, the audit goes on
                outcome = Outcome(None, 0.0, "", repr(error), False, [], "audit-error", repr(error), "setup failed")
                outcome.command, outcome.env = "", {}
            row = {"case": case.name, "category": case.category, "expected": case.expected,
                   "observed": outcome.observed, "seconds": round(outcome.seconds, 1),
                   "message": outcome.message.splitlines()[0][:400] if outcome.message else "",
                   "detail": outcome.detail}
            rows.append(row)
            mark = " " if row["observed"] == row["expected"] else "!"
            print(f"{mark} [{number}/{len(chosen)}] {case.name:<58} {row['observed']:<19} {row['seconds']:>6} s  "
                  f"{row['message'][:110]}", flush=True)
            if mark == "!":
                unexpected.append((case, row, outcome))
    finally:
        world.close()
        total = time.perf_counter() - began
        with open(args.out / "audit.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["case", "category", "expected", "observed", "seconds", "message",
                                                   "detail"])
            writer.writeheader()
            writer.writerows(rows)
        with open(args.out / "unexpected.txt", "w") as f:
            for case, row, outcome in unexpected:
                f.write(f"=== {case.name} ({case.category}): expected {case.expected}, observed {row['observed']}\n"
                        f"what: {case.what}\ndetail: {row['detail']}\nexit: {outcome.rc}, {row['seconds']} s\n"
                        f"env: {json.dumps(getattr(outcome, 'env', {}))}\ncommand:\n{getattr(outcome, 'command', '')}\n"
                        f"--- stdout (tail)\n{outcome.stdout[-1500:]}\n--- stderr (tail)\n{outcome.stderr[-3000:]}\n\n")
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(summary(rows))
    print(f"\n{sum(r['observed'] == r['expected'] for r in rows)} of {len(rows)} cases as expected; "
          f"{len(unexpected)} not (details in {args.out / 'unexpected.txt'}); audit {total / 60:.1f} min")


if __name__ == "__main__":
    main()
