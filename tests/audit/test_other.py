"""Other: class-name files, unknown classes, disk full."""
import pytest

from .harness import ACCEPT, CLEAR, Cases, Run, cli, disk_full, generate, lib
from .inputs import GENERATOR, copy_data, copy_store, draw, names_file, out_path, read_rows, rows_check, wordnet

pytestmark = pytest.mark.audit
CASES = Cases("other")


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
    CASES.add(f"other-class-names-{_name}", CLEAR, f"--class-names: {_name.replace('-', ' ')}",
              lambda w, f, content=_content, file=_file: generate(w, copy_data(w, f), f / "store", "--class-names",
                                                                names_file(f, content, file)), names=_names)
CASES.add("other-class-names-missing-file", CLEAR, "--class-names names.txt that does not exist",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--class-names", f / "names.txt"),
          names=("names.txt",))
for _name, _description, _content in (
        ("utf8-bom", "saved as UTF-8 with a byte-order mark (Notepad)", "\ufeffapple red apple\nboat sail boat\n"),
        ("crlf", "with Windows line ends", "apple red apple\r\nboat sail boat\r\n")):
    CASES.add(f"other-class-names-{_name}", ACCEPT, f"--class-names {_description}",
              lambda w, f, content=_content: generate(w, copy_data(w, f), f / "store", "--class-names",
                                                      names_file(f, content)),
              check=lambda f, o: rows_check(4)(f, o) or (None if {r["prompt"] for r in read_rows(f / "store")} ==
                                                         {"a photo of a red apple.", "a photo of a sail boat."}
                                                         else "prompts do not use the display names"))
CASES.add("other-wordnet-without-class-names", CLEAR, "WordNet-id folders and no --class-names",
          lambda w, f: wordnet(w, f, names=False), names=("class",))
CASES.add("other-lib-wordnet-without-class-names", CLEAR, "load_class_folders of WordNet-id folders, no names",
          lambda w, f: lib("from genie_utils import class_folders\nclass_folders.load_class_folders(V['data'])",
                           data=(lambda d: ([(d / c).mkdir(parents=True) or draw("red").save(d / c / "0.png")
                                             for c in ("n01234567", "n07654321")], d)[1])(f / "data")),
          names=("class",))
CASES.add("other-lib-genie-wordnet-target-without-class-names", CLEAR, "genie(..., 'n02085620') without "
          "class_names: the prompt would read 'a photo of a n02085620.'", lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "n02085620")
''', model=w.model, path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=("n02085620",))
CASES.add("other-lib-genie-unknown-target", CLEAR, "genie(..., 'boot', class_names={'boat': ...})",
          lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "boot", class_names={"boat": "boat", "apple": "apple"})
''', model=w.model, path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=("boot",))
CASES.add("other-lib-run-jobs-without-class-names", CLEAR, "run_jobs(generator, jobs, store, None)",
          lambda w, f: lib(GENERATOR + '''
from genie_utils import class_folders, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = class_folders.load_class_folders(V["data"])
run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), None, progress=False)
''', model=w.model, data=copy_data(w, f), store=f / "store"), names=("class_names",))
CASES.add("other-lib-run-jobs-unknown-target", CLEAR, "run_jobs with a job whose target is not in class_names",
          lambda w, f: lib(GENERATOR + '''
from genie_utils import class_folders, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = class_folders.load_class_folders(V["data"])
run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), {"apple": "apple"}, progress=False)
''', model=w.model, data=copy_data(w, f), store=f / "store"), names=("boat",))
CASES.add("other-disk-full-generate", CLEAR, "genie generate onto a full disk",
          lambda w, f: disk_full(f / "store", generate(w, copy_data(w, f), f / "store")), names=("store",))
CASES.add("other-disk-full-export", CLEAR, "genie export onto a full disk",
          lambda w, f: Run(disk_full(out_path(f), cli("export", copy_store(w, f), out_path(f))).argv, "cli",
                           ignore=("x/y/out/.genie-export",)), names=("out",))
CASES.add("other-disk-full-library-store", CLEAR, "Store.put onto a full disk", lambda w, f: lib('''
import errno, os
from PIL import Image
from genie_utils.store import Store
_fsync = os.fsync
def fsync(fd):
    raise OSError(errno.ENOSPC, "No space left on device")
os.fsync = fsync
Store(V["store"]).put("e" * 20, Image.new("RGB", (8, 8)), {"method": "genie"})
''', store=f / "store"), names=("store",))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
