"""Export: `genie export` only into its own folder, only from rows that make sense."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import ACCEPT, CLEAR, PYTHON, ROOT, Cases, cli, generate, lib
from .inputs import copy_data, copy_store, export_check, out_path, read_rows

pytestmark = pytest.mark.audit
CASES = Cases("export")


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


CASES.add("export-into-dataset", CLEAR, "genie export STORE DATA (the dataset folder)", _export_into_dataset,
          names=("data", "empty"))


def _export_over_manifest(w, f):
    out = out_path(f)
    out.mkdir()
    (out / "manifest.csv").write_text("image,label\na.png,cat\n")
    return cli("export", copy_store(w, f), out)


CASES.add("export-over-another-manifest", CLEAR, "OUT holds another tool's manifest.csv",
          _export_over_manifest, names=("out", "empty"))
CASES.add("export-target-class-dotdot", CLEAR, "a row with target_class '../..'",
          _export_row(lambda r: {**r, "target_class": "../.."}), names=("target class", "../.."))
CASES.add("export-target-class-slash", CLEAR, "a row with target_class 'a/b'",
          _export_row(lambda r: {**r, "target_class": "a/b"}), names=("a/b",))
CASES.add("export-target-class-empty", CLEAR, "a row with target_class ''",
          _export_row(lambda r: {**r, "target_class": ""}), names=("target class",))
CASES.add("export-target-class-null", CLEAR, "a row with target_class null",
          _export_row(lambda r: {**r, "target_class": None}), names=("target class",))
CASES.add("export-target-class-absolute", CLEAR, "a row with target_class '/tmp'",
          _export_row(lambda r: {**r, "target_class": "/tmp"}), names=("target class",))
CASES.add("export-file-absolute", CLEAR, "a row whose file is /etc/os-release",
          _export_row(lambda r: {**r, "file": "/etc/os-release"}), names=("/etc/os-release",))
CASES.add("export-file-climbs-out", CLEAR, "a row whose file is ../../../etc/os-release",
          _export_row(lambda r: {**r, "file": "../../../../../../../../etc/os-release"}), names=("etc/os-release",))


def _export_symlink(w, f):
    store = copy_store(w, f)
    row = json.loads((store / "rows" / w.keys[0][:2] / f"{w.keys[0]}.json").read_text())
    (store / row["file"]).unlink()
    (store / row["file"]).symlink_to("/etc/os-release")
    return cli("export", store, out_path(f))


CASES.add("export-file-symlink-out-of-store", CLEAR, "a row's image is a symbolic link to /etc/os-release",
          _export_symlink, names=(".png",))
CASES.add("export-key-climbs-out", CLEAR, "a row whose key is '../../escaped'",
          _export_row(lambda r: {**r, "key": "../../escaped"}), names=("escaped",))


def _export_out_file(w, f):
    out_path(f).write_text("not a folder")
    return cli("export", copy_store(w, f), out_path(f))


CASES.add("export-out-is-a-file", CLEAR, "OUT is an existing file", _export_out_file, names=("out",))
CASES.add("export-out-is-the-store", CLEAR, "genie export STORE STORE",
          lambda w, f: cli("export", copy_store(w, f), f / "store"), names=("store",))
CASES.add("export-empty-store", CLEAR, "an empty store folder",
          lambda w, f: ((f / "store").mkdir(), cli("export", f / "store", out_path(f)))[1], names=("store",))
CASES.add("export-missing-store", CLEAR, "a store path that does not exist (typo)",
          lambda w, f: cli("export", f / "stoer", out_path(f)), names=("stoer",))
CASES.add("export-store-is-dataset", CLEAR, "genie export DATA OUT (a dataset, not a store)",
          lambda w, f: cli("export", copy_data(w, f), out_path(f)), names=("data",))
CASES.add("export-unknown-method", CLEAR, "--method txt2img on a store of genie images",
          lambda w, f: cli("export", copy_store(w, f), out_path(f), "--method", "txt2img"), names=("txt2img",))
CASES.add("export-method-without-value", CLEAR, "--method with no value",
          lambda w, f: cli("export", copy_store(w, f), out_path(f), "--method"), names=("--method",))


def _export_image(damage):
    def build(w, f):
        store = copy_store(w, f)
        rows = sorted(read_rows(store), key=lambda r: r["key"])
        damage(store / rows[-1]["file"])  # the last key: the copy loop reaches it after the others
        return cli("export", store, out_path(f))
    return build


CASES.add("export-image-missing", CLEAR, "a row whose image file was deleted",
          _export_image(lambda p: p.unlink()), names=(".png",))
CASES.add("export-image-empty", CLEAR, "a row whose image file is zero bytes",
          _export_image(lambda p: p.write_bytes(b"")), names=(".png",))
CASES.add("export-image-not-an-image", CLEAR, "a row whose image file holds text",
          _export_image(lambda p: p.write_text("not a png" * 20)), names=(".png",))
CASES.add("export-row-without-file", CLEAR, "a row without its file field",
          _export_row(lambda r: {k: v for k, v in r.items() if k != "file"}), names=("file",))
CASES.add("export-row-not-json", CLEAR, "a truncated row file",
          _export_row(lambda r: json.dumps(r)[:40]), names=(".json",))


def _export_second_store(w, f):
    out = out_path(f)
    shutil.copytree(w.export, out)  # an export of the shared store
    other = Path(shutil.copytree(w.store, f / "store"))
    for row in read_rows(other)[:2]:  # another store: two of its rows, re-keyed
        path = other / "rows" / row["key"][:2] / f"{row['key']}.json"
        path.unlink()
    return cli("export", other, out)


CASES.add("export-second-store-into-an-export", CLEAR, "OUT is the export of another store",
          _export_second_store, names=("out",))
def _ada_store(w, f) -> Path:
    run = generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--target-classes", "boat")
    subprocess.run([PYTHON, *run.argv], check=True, capture_output=True, cwd=f,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "GENIE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1"})
    return f / "store"


CASES.add("export-after-genie-ada", ACCEPT, "genie export of a GeNIe-Ada store (2 pairs): the 2 chosen images",
          lambda w, f: cli("export", _ada_store(w, f), out_path(f)), check=export_check(2), timeout=90)
CASES.add("export-after-genie-ada-method", ACCEPT, "genie export --method genie_ada of a GeNIe-Ada store",
          lambda w, f: cli("export", _ada_store(w, f), out_path(f), "--method", "genie_ada"), check=export_check(2),
          timeout=90)
CASES.add("export-lib-into-dataset", CLEAR, "export.export(store, dataset folder) from Python",
          lambda w, f: lib('''
from genie_utils.export import export
export(V["store"], V["data"])
''', store=copy_store(w, f), data=copy_data(w, f)), names=("data", "empty"))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
