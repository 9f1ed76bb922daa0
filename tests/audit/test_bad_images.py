"""Bad images: found when the dataset loads, with their path."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .harness import CLEAR, Cases, generate, lib
from .inputs import GENERATOR, copy_data, draw, png_bytes

pytestmark = pytest.mark.audit
CASES = Cases("bad-images")


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
    CASES.add(f"bad-{_bad}", CLEAR, f"load_class_folders with a {_bad.replace('-', ' ')} image",
              lambda w, f, make=_make: lib('''
from genie_utils import class_folders
class_folders.load_class_folders(V["data"])
''', data=(lambda d: (make(d), d)[1])(copy_data(w, f))), names=_names)
for _bad in ("truncated-jpeg", "truncated-png", "truncated-webp", "truncated-tiff", "png-20000x20000",
             "non-utf8-file-name"):
    def _bad_cli(w, f, make=BAD_FILES[_bad][0]):
        data = copy_data(w, f, three=True)
        make(data)
        return generate(w, data, f / "store", batch=1)
    CASES.add(f"bad-{_bad}-cli", CLEAR, f"genie generate (3 classes, batch 1) with a {_bad.replace('-', ' ')} "
              "image", _bad_cli, names=BAD_FILES[_bad][1], timeout=90)
CASES.add("bad-empty-class-folder", CLEAR, "a class folder without images",
          lambda w, f: ((copy_data(w, f) / "cloud").mkdir(), generate(w, f / "data", f / "store"))[1], names=("cloud",))
CASES.add("bad-dataset-missing", CLEAR, "DATA does not exist",
          lambda w, f: generate(w, f / "dtaa", f / "store"), names=("dtaa",))
def _no_class_folders(w, f):
    (f / "data").mkdir()
    for n in range(3):
        draw("red").save(f / "data" / f"{n}.png")
    return generate(w, f / "data", f / "store")


CASES.add("bad-no-class-folders", CLEAR, "DATA holds images but no class folders", _no_class_folders,
          names=("class",))
CASES.add("bad-genie-truncated-source", CLEAR, "genie() on a truncated JPEG path",
          lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "boat", class_names={"boat": "boat"})
''', model=w.model, path=_truncated(".jpg", quality=95)((f / "apple").mkdir() or f)), names=("cut.jpg",))
CASES.add("bad-genie-missing-source", CLEAR, "genie() on a path that does not exist",
          lambda w, f: lib(GENERATOR + '''
genie(generator, [V["path"]], "boat", class_names={"boat": "boat"})
''', model=w.model, path=f / "nope.png"), names=("nope.png",))


def _run_jobs_bad_source(damage):
    def build(w, f):
        data = copy_data(w, f, three=True)
        run = lib(GENERATOR + '''
from genie_utils import class_folders, data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = class_folders.load_class_folders(V["data"])
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


CASES.add("bad-run-jobs-truncated-source", CLEAR, "run_jobs whose source file was cut short after loading",
          _run_jobs_bad_source("truncate"), names=("cloud",), timeout=90)
CASES.add("bad-run-jobs-missing-source", CLEAR, "run_jobs whose source file was removed after loading",
          _run_jobs_bad_source("remove"), names=("cloud",), timeout=90)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
