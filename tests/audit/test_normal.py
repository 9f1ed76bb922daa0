"""Normal: valid inputs, each result checked (the rows, the images, the export folder)."""
import shutil
from pathlib import Path

import pytest

from .harness import ACCEPT, Cases, Run, cli, generate, lib, reproduce
from .inputs import (GENERATOR, copy_data, copy_store, export_check, make_dataset, names_file, out_path, read_rows,
                     rows_check, unchanged_rows, wordnet)

pytestmark = pytest.mark.audit
CASES = Cases("normal")


CASES.add("normal-generate-genie", ACCEPT, "genie generate, 2 classes x 2 PNGs",
          lambda w, f: generate(w, copy_data(w, f), f / "store"), check=rows_check(4, "genie"))
CASES.add("normal-generate-txt2img-variants", ACCEPT, "--method txt2img --target-classes apple --variants 2",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "txt2img", "--target-classes", "apple",
                                "--variants", "2"),
          check=rows_check(4, "txt2img", field_values={"target_class": "apple"}))
CASES.add("normal-generate-img2img-low", ACCEPT, "--method img2img_low",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "img2img_low"),
          check=rows_check(4, "img2img_low", field_values={"noise_ratio": 0.3}))
CASES.add("normal-generate-genie-ada", ACCEPT, "--method genie_ada --target-classes boat (EfficientNet-Lite0)",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--target-classes", "boat"),
          check=rows_check(2, "genie_ada", field_values={"target_class": "boat"}), timeout=120)
CASES.add("normal-rerun-resumes", ACCEPT, "the same genie generate again on its store: nothing new",
          lambda w, f: generate(w, copy_data(w, f), copy_store(w, f)), check=unchanged_rows)
CASES.add("normal-export", ACCEPT, "genie export STORE OUT (new folder)",
          lambda w, f: cli("export", copy_store(w, f), out_path(f)), check=export_check(4))


def _export_again(w, f):
    shutil.copytree(w.export, out_path(f))
    return cli("export", copy_store(w, f), out_path(f))


CASES.add("normal-export-again", ACCEPT, "genie export into its own earlier export", _export_again,
          check=export_check(4))


def _export_empty(w, f):
    out_path(f).mkdir()
    return cli("export", copy_store(w, f), out_path(f))


CASES.add("normal-export-into-empty-folder", ACCEPT, "genie export into an existing empty folder",
          _export_empty, check=export_check(4))
CASES.add("normal-dry-run", ACCEPT, "--dry-run: counts, writes nothing",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--dry-run"),
          check=lambda f, o: None if "genie: 4 images" in o.stdout and not (f / "store").exists() else "wrong dry run")
CASES.add("normal-generate-help", ACCEPT, "genie generate --help", lambda w, f: cli("generate", "--help"),
          check=lambda f, o: None if "--prompt-template" in o.stdout else "no help")
CASES.add("normal-reproduce-help", ACCEPT, "python -m genie_utils.reproduce --help",
          lambda w, f: reproduce("--help"), check=lambda f, o: None if "--only" in o.stdout else "no help")


CASES.add("normal-class-names-text", ACCEPT, "--class-names with lines '<folder> <display name>'",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--class-names",
                                names_file(f, "apple red apple\nboat sail boat\n")),
          check=rows_check(4, prompt="a photo of a "))
CASES.add("normal-class-names-json", ACCEPT, "--class-names with a JSON object",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--class-names",
                                names_file(f, '{"apple": "red apple", "boat": "sail boat"}', "names.json")),
          check=lambda f, o: rows_check(4)(f, o) or (None if {r["prompt"] for r in read_rows(f / "store")} ==
                                                     {"a photo of a red apple.", "a photo of a sail boat."} else
                                                     "prompts do not use the display names"))
CASES.add("normal-prompt-template", ACCEPT, "--prompt-template 'an emoji of a {}'",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--prompt-template", "an emoji of a {}"),
          check=rows_check(4, prompt="an emoji of a "))
CASES.add("normal-shipped-model", ACCEPT, "--model models/genie-companion (the shipped model), 2 steps",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", "models/genie-companion", "--steps", "2"),
          check=rows_check(4, "genie"))
CASES.add("normal-guidance-zero", ACCEPT, "--guidance 0 (guidance off)",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--guidance", "0"),
          check=rows_check(4, field_values={"guidance_scale": 0.0}))


CASES.add("normal-wordnet-with-class-names", ACCEPT, "WordNet-id folders with a class-names file", wordnet,
          check=lambda f, o: rows_check(4)(f, o) or (None if {r["prompt"] for r in read_rows(f / "store")} ==
                                                     {"a photo of a house finch, linnet.", "a photo of a canoe."}
                                                     else "prompts do not use the display names"))


def _unicode_class(w, f):
    data = make_dataset(f / "data", ("café crème", "boat"))
    return generate(w, data, f / "store")


CASES.add("normal-unicode-class-folder", ACCEPT, "a class folder named 'café crème'", _unicode_class,
          check=rows_check(4, prompt="a photo of a "))


def _spaces(w, f):
    data = Path(shutil.copytree(w.data, f / "my data"))
    return Run(generate(w, data, f / "my store").argv, "cli", allowed=("my store",))


CASES.add("normal-spaces-in-paths", ACCEPT, "dataset and store paths with spaces", _spaces,
          check=lambda f, o: None if len(read_rows(f / "my store")) == 4 else "not 4 rows")
CASES.add("normal-jpeg-dataset", ACCEPT, "a dataset of JPEG files",
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


CASES.add("normal-two-workers", ACCEPT, "two genie generate processes on one store at once", _two_workers,
          timeout=120)
CASES.add("normal-lib-load-class-folders", ACCEPT, "class_folders.load_class_folders on a JPEG dataset",
          lambda w, f: lib('''
from genie_utils import class_folders
table = class_folders.load_class_folders(V["data"])
audit_ok() if len(table) == 4 and sorted(table.class_name.unique()) == ["apple", "boat"] else audit_fail(table)
''', data=make_dataset(f / "data", suffix=".jpg")))
CASES.add("normal-lib-genie", ACCEPT, "generate.genie(generator, paths, 'boat', class_names=...)",
          lambda w, f: lib(GENERATOR + '''
import glob
images = genie(generator, sorted(glob.glob(V["data"] + "/apple/*.png")), "boat", class_names={"apple": "apple", "boat": "boat"})
audit_ok() if len(images) == 2 and images[0].size == (64, 64) else audit_fail(images)
''', model=w.model, data=copy_data(w, f)))
CASES.add("normal-lib-img2img", ACCEPT, "generate.img2img(generator, paths, 'apple')",
          lambda w, f: lib(GENERATOR + '''
import glob
images = img2img(generator, sorted(glob.glob(V["data"] + "/apple/*.png")), "apple", noise_ratio=0.7)
audit_ok() if len(images) == 2 and images[0].size == (64, 64) else audit_fail(images)
''', model=w.model, data=copy_data(w, f)))
CASES.add("normal-lib-txt2img", ACCEPT, "generate.txt2img(generator, 'apple', 2)",
          lambda w, f: lib(GENERATOR + '''
images = txt2img(generator, "apple", 2)
audit_ok() if len(images) == 2 and images[0].size == (64, 64) else audit_fail(images)
''', model=w.model))
CASES.add("normal-lib-run-jobs", ACCEPT, "run_jobs(generator, hard_negative_jobs(dataset), Store, names)",
          lambda w, f: lib(GENERATOR + '''
from genie_utils import class_folders, data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = class_folders.load_class_folders(V["data"])
rows = run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), data.class_display_names(dataset), progress=False)
audit_ok() if len(rows) == 4 and len(Store(V["store"]).manifest()) == 4 else audit_fail(rows)
''', model=w.model, data=copy_data(w, f), store=f / "store"))
CASES.add("normal-lib-export", ACCEPT, "export.export(store, out) from Python",
          lambda w, f: lib('''
from genie_utils.export import export
rows = export(V["store"], V["out"])
import pathlib
audit_ok() if len(rows) == 4 and len(list(pathlib.Path(V["out"]).glob("*/*.png"))) == 4 else audit_fail(rows)
''', store=copy_store(w, f), out=out_path(f)))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
