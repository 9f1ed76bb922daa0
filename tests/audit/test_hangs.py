"""Hangs: stale claims on a store's keys, a hub that stalls or refuses; each run ends within its bound, or waits
saying what for."""
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .harness import ACCEPT, CLEAR, Cases, generate, lib
from .inputs import copy_data, process_start, rows_check

pytestmark = pytest.mark.audit
CASES = Cases("hangs")


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
    CASES.add(name, ACCEPT, what, build, (), warn, rows_check(4), max_seconds, timeout, waits)


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


CASES.add("hangs-live-claim-small-bound", ACCEPT, "GENIE_CLAIM_STALE_SECONDS=2: a claim its live worker "
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
    CASES.add(f"hangs-hub-{_mode}", CLEAR, f"genie generate --model audit/{_mode}: {_what}, "
              "GENIE_HUB_TIMEOUT_SECONDS=3", _hub_cli(_mode), names=(f"audit/{_mode}",), max_seconds=30)
for _mode in ("stall-files", "stall-mid-file"):
    CASES.add(f"hangs-hub-{_mode}-lib", CLEAR, f"pipeline.load_pipeline('audit/{_mode}'), "
              "GENIE_HUB_TIMEOUT_SECONDS=3", _hub_lib(_mode), names=(f"audit/{_mode}",), max_seconds=30)
CASES.add("hangs-hub-refused", CLEAR, "a hub address where nothing listens",
          _hub_cli("anything", lambda w: f"http://127.0.0.1:{w.closed_port}"), names=("audit/anything",),
          max_seconds=30)
CASES.add("hangs-hub-offline-not-cached", CLEAR, "a hub id with HF_HUB_OFFLINE=1, not in the cache",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", "example-org/not-cached",
                                env={"HF_HOME": str(w.root / "hf" / f.name)}),
          names=("example-org/not-cached", "HF_HUB_OFFLINE"), max_seconds=30)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
