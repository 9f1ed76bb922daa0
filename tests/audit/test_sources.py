"""Sources: read as a photo viewer shows them (16-bit, EXIF orientation, formats, nested folders)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from .harness import ACCEPT, Cases, generate, lib
from .inputs import GENERATOR, copy_data, draw, gradient16, rows_check

pytestmark = pytest.mark.audit
CASES = Cases("sources")


def _mean_case(name, what, make, mean=127.5, tolerance=1.5, colour=None):
    def build(w, f):
        path = make(f)
        return lib('''
import numpy as np
from genie_utils import images
image = images.load_image(V["path"])
pixels = np.asarray(image, dtype=float)
mean = pixels.mean() if V["colour"] is None else pixels.reshape(-1, 3).mean(axis=0)
wanted = V["mean"] if V["colour"] is None else np.array(V["colour"], dtype=float)
if image.mode == "RGB" and np.all(np.abs(mean - wanted) <= V["tolerance"]):
    audit_ok()
else:
    audit_fail(f"mode {image.mode}, mean {np.round(mean, 1)}, expected {wanted}")
''', path=path, mean=mean, tolerance=tolerance, colour=colour)
    CASES.add(name, ACCEPT, what, build)


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
    CASES.add(f"sources-exif-orientation-{orientation}{'-png' if kind == 'PNG' else ''}", ACCEPT,
              f"a {kind} with EXIF orientation {orientation}: loaded upright", lambda w, f: lib('''
import numpy as np
from genie_utils import images
image = images.load_image(V["path"])
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
    CASES.add(name, ACCEPT, what, build)


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
from genie_utils import class_folders
table = class_folders.load_class_folders(V["data"])
if len(table) == V["count"]:
    audit_ok()
else:
    audit_fail(f"{len(table)} images read, expected {V['count']}: {sorted(table.image_id)}")
''', data=data, count=count)
    CASES.add(name, expected, what, build, names=names, warn=warn)


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
    CASES.add(name, ACCEPT, what, build, check=rows_check(5))  # apple 3 images, boat 2


_cli_source("sources-cli-16bit-png", "genie generate with a 16-bit PNG source", lambda d: (d / "apple" / "g16.png").write_bytes(gradient16()))
_cli_source("sources-cli-exif-jpeg", "genie generate with an EXIF-rotated JPEG source",
            lambda d: exif_file(d / "apple" / "rotated.jpg", 6))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
