"""How a case runs and how its outcome is classified: one entry point in a fresh Python process with a hard timeout,
GENIE_PROFILE=smoke, offline, one thread; the files it wrote are found by comparing its folder before and after.

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
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CLASSES = ("clear-before-work", "accepted-correctly", "late", "unclear", "crash", "hang", "silent")
CLEAR, ACCEPT = "clear-before-work", "accepted-correctly"
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
    setup: Callable[[object, Path], Run] = field(repr=False)   # (the world, the case's folder) -> what to run
    names: tuple[str, ...] = ()          # a clear message contains each (case-insensitive)
    warn: tuple[str, ...] = ()           # an accepted run's output contains each
    # an accepted command-line run's result: None when right, else what is wrong
    check: Callable[[Path, "Outcome"], str | None] | None = field(default=None, repr=False)
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
    command: str = ""
    env: dict = field(default_factory=dict)
    folder: str = ""

    def report(self, case: Case) -> str:
        """What a reader needs when a case is not as expected: the command, its environment and the output's tail."""
        return (f"{case.name} ({case.category}): expected {case.expected}, observed {self.observed}\n"
                f"what: {case.what}\ndetail: {self.detail}\nmessage: {self.message}\n"
                f"exit: {self.rc}, {self.seconds:.1f} s\nin: {self.folder}\nenv: {json.dumps(self.env)}\n"
                f"command:\n{self.command}\n"
                f"--- stdout (tail)\n{self.stdout[-1500:]}\n--- stderr (tail)\n{self.stderr[-3000:]}")


class Cases(list):
    """One category's table of cases, in the order they are added."""

    def __init__(self, category: str):
        super().__init__()
        self.category = category

    def add(self, name, expected, what, setup, names=(), warn=(), check=None, max_seconds=None, timeout=60.0,
            waits=False):
        assert expected in CLASSES, expected
        assert name not in {c.name for c in self}, f"two cases named {name}"
        self.append(Case(name, self.category, expected, what, setup, tuple(names), tuple(warn), check, max_seconds,
                         timeout, waits))


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


def run_environment(run: Run) -> dict:
    """The variables a case runs with, beyond those of this process: the smoke profile, offline, one thread."""
    return {"GENIE_PROFILE": "smoke", "GENIE_HEADLESS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), **run.env}


def execute(run: Run, folder: Path, logs: Path, timeout: float, name: str) -> tuple[int | None, float, str, str, bool]:
    env = {**os.environ, **run_environment(run)}
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


def generate(world, data, store, *extra, model=None, batch: int = 2, env: dict | None = None) -> Run:
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
# One case


def run_case(case: Case, world, folder: Path, logs: Path) -> Outcome:
    """Builds the case's inputs in `folder` (new, empty), runs it and classifies its outcome."""
    run = case.setup(world, folder)
    before = snapshot(folder)
    try:
        rc, seconds, stdout, stderr, timed_out = execute(run, folder, logs, case.timeout, case.name)
    finally:
        for cleanup in run.cleanup:
            cleanup()
    outcome = Outcome(rc, seconds, stdout, stderr, timed_out, written_between(before, snapshot(folder), run.ignore))
    classify(case, run, outcome, folder)
    outcome.command = " ".join(shlex.quote(a) for a in ["python", *run.argv]) if run.argv[0] != "-c" else \
        "python -c <<'EOF'\n" + run.argv[1] + "\nEOF"
    outcome.env, outcome.folder = run_environment(run), str(folder)
    return outcome
