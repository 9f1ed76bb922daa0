"""The world the audit's cases share, built once per session under pytest's temporary root: two tiny random-weight
SD-shaped models (`companion.build_pipeline(companion.TINY)`, seeds 0 and 1), a dataset of two classes and one of
three, a store generated from the first and its export, and a fake Hugging Face hub served from this process. Each
case runs in its own folder under it; `audit.csv` (case, category, expected, observed, seconds, message, detail) and
`unexpected.txt` go into results/benchmarks/own-data-audit-<time>/, and the count per category and observed class
ends the terminal report."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from . import harness
from .harness import CLASSES, PYTHON, ROOT, Case, cli, generate
from .inputs import make_dataset, read_rows

ROWS = pytest.StashKey[list]()


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
    """The shared inputs, built once under `root`; each case's folder is `cases/<name>`, its output `logs/<name>.*`."""

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


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    world = World(tmp_path_factory.mktemp("own-data-audit"))
    try:
        world.build()
        yield world
    finally:
        world.close()


@pytest.fixture
def run_case(world, request):
    """Runs a case in a new folder of the world and records its outcome for audit.csv."""
    def run_one(case: Case):
        folder = world.cases / case.name
        folder.mkdir()
        outcome = harness.run_case(case, world, folder, world.logs)
        request.config.stash.setdefault(ROWS, []).append((case, outcome))
        return outcome
    return run_one


def pytest_terminal_summary(terminalreporter, config):
    records = config.stash.get(ROWS, [])
    if not records:
        return
    out = ROOT / "results" / "benchmarks" / f"own-data-audit-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"case": case.name, "category": case.category, "expected": case.expected, "observed": outcome.observed,
             "seconds": round(outcome.seconds, 1),
             "message": outcome.message.splitlines()[0][:400] if outcome.message else "", "detail": outcome.detail}
            for case, outcome in records]
    with open(out / "audit.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "unexpected.txt", "w") as f:
        f.writelines(f"=== {outcome.report(case)}\n\n" for case, outcome in records
                     if outcome.observed != case.expected)
    categories = list(dict.fromkeys(r["category"] for r in rows))
    terminalreporter.section("own-data audit: outcomes per category")
    terminalreporter.write_line(f"{'category':<14}" + "".join(f"{c:>20}" for c in CLASSES) + f"{'total':>8}")
    for category in [*categories, "total"]:
        chosen = [r for r in rows if category in ("total", r["category"])]
        counts = [sum(r["observed"] == c for r in chosen) for c in CLASSES]
        terminalreporter.write_line(f"{category:<14}" + "".join(f"{n:>20}" for n in counts) + f"{len(chosen):>8}")
    expected = sum(r["observed"] == r["expected"] for r in rows)
    terminalreporter.write_line(f"{expected} of {len(rows)} cases as expected; the table in {out / 'audit.csv'}")
