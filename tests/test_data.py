"""The embedded OpenMoji dataset and local class folders."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genie_utils import data
from genie_utils.class_folders import load_class_folders, read_class_names
from genie_utils.emoji_styles import fetch_emoji_style, style_renderings
from genie_utils.images import ImageReadError, file_sha256, load_image, to_rgb
from genie_utils.openmoji import dataset_digest, emoji_table, render_emoji, render_openmoji, render_versions, verify_openmoji

EXPECTED = json.loads((Path(__file__).parent / "data" / "openmoji_64px.json").read_text())


def test_emoji_table_has_every_fully_qualified_emoji():
    table = emoji_table()
    assert len(table) == 3944 and table.image_id.is_unique
    assert table.class_name.nunique() == 98
    assert 1900 <= table.identity.nunique() <= 1950
    sizes = table.class_name.value_counts()
    assert sizes.index[0] == "person-role" and sizes.iloc[0] == 492 and sizes.iloc[-1] == 1
    waves = table[table.identity == "1F44B"]
    assert len(waves) == 6 and waves.class_name.nunique() == 1  # base + 5 skin tones: one identity
    row = table.set_index("image_id").loc["1F600"]
    assert (row["name"], row.class_name, row.display_name) == ("grinning face", "face-smiling", "face smiling")


def test_rendered_bytes_match_the_pinned_checksums(openmoji):
    """Same pins, same bytes, on every machine: a few images and the digest over all 3,944."""
    assert len(openmoji) == EXPECTED["count"]
    indexed = openmoji.set_index("image_id")
    for image_id, sha in EXPECTED["images"].items():
        assert indexed.loc[image_id, "sha256"] == sha, image_id
        assert file_sha256(indexed.loc[image_id, "path"]) == sha
    assert dataset_digest(openmoji) == EXPECTED["digest"]
    image = Image.open(indexed.loc["1F600", "path"])
    assert image.size == (64, 64) and image.mode == "RGB"


def test_render_is_deterministic_and_resolution_is_a_parameter():
    a, b = render_emoji("\U0001F600", 32), render_emoji("\U0001F600", 32)
    assert a.size == (32, 32) and a.tobytes() == b.tobytes()
    assert a.getpixel((0, 0)) == (255, 255, 255)  # white background


def test_cache_is_reused_then_verified(openmoji, tmp_path):
    folder = Path(openmoji.path[0]).parents[1]
    index_time = (folder / "index.csv").stat().st_mtime_ns
    assert render_openmoji(folder.parent, 64, progress=False) == folder
    assert (folder / "index.csv").stat().st_mtime_ns == index_time  # not rendered again
    assert verify_openmoji(folder) == EXPECTED["digest"]


def test_verify_names_a_corrupted_cache_file(tmp_path):
    folder = tmp_path / "cache"
    (folder / "images").mkdir(parents=True)
    render_emoji("\U0001F600", 16).save(folder / "images" / "1F600.png")
    pd.DataFrame({"image_id": ["1F600"], "file": ["images/1F600.png"],
                  "sha256": [file_sha256(folder / "images" / "1F600.png")]}).to_csv(folder / "index.csv")
    assert verify_openmoji(folder)
    (folder / "images" / "1F600.png").write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match=r"differ from .*index.csv.*images/1F600.png.*Delete"):
        verify_openmoji(folder)


def test_stale_cache_from_other_versions_is_rebuilt(tmp_path, monkeypatch):
    three = emoji_table().head(3)
    monkeypatch.setattr("genie_utils.openmoji.emoji_table", lambda: three)
    folder = render_openmoji(tmp_path, 16, progress=False)
    checksums = json.loads((folder / "checksums.json").read_text())
    checksums["versions"]["pillow"] = "0.0"
    (folder / "checksums.json").write_text(json.dumps(checksums))
    render_openmoji(tmp_path, 16, progress=False)
    assert json.loads((folder / "checksums.json").read_text())["versions"] == render_versions()
    assert len(pd.read_csv(folder / "index.csv")) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def make_folders(root, classes):
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(root / name / f"img{i}.jpg")


def test_class_folders_with_display_names(tmp_path):
    make_folders(tmp_path / "test", {"n01532829": 3, "n02110063": 2})
    (tmp_path / "names.txt").write_text("n01532829 house finch, linnet, Carpodacus mexicanus\n\nn02110063 malamute\n")
    table = load_class_folders(tmp_path / "test", tmp_path / "names.txt")
    assert len(table) == 5 and table.image_id.is_unique
    assert data.class_display_names(table) == {"n01532829": "house finch, linnet, Carpodacus mexicanus",
                                               "n02110063": "malamute"}
    assert list(data.class_sizes(table).images) == [3, 2]
    make_folders(tmp_path / "named", {"golden_retriever": 2})
    assert set(load_class_folders(tmp_path / "named").display_name) == {"golden retriever"}


def test_wordnet_folders_need_names_for_every_class(tmp_path):
    make_folders(tmp_path / "test", {"n01532829": 3, "n02110063": 2})
    with pytest.raises(ValueError, match=r"WordNet ids .* no class-name file .*a photo of a n0"):
        load_class_folders(tmp_path / "test")
    (tmp_path / "names.txt").write_text("n01532829 house finch\n")
    with pytest.raises(KeyError, match=r"1 class folders have no display name .*n02110063"):
        load_class_folders(tmp_path / "test", tmp_path / "names.txt")
    with pytest.raises(FileNotFoundError, match=r"class-name file not found: .*absent.txt"):
        load_class_folders(tmp_path / "test", tmp_path / "absent.txt")


def test_a_wrong_class_names_path_in_a_profile_is_an_error(tmp_path):
    from genie_utils import profiles
    make_folders(tmp_path / "test", {"n01532829": 1})
    (tmp_path / "p.toml").write_text(f'extends = "paper"\n[dataset]\nroot = "{tmp_path / "test"}"\n'
                                     f'class_names = "{tmp_path / "typo.txt"}"\n')
    with pytest.raises(FileNotFoundError, match="typo.txt"):
        data.load_dataset(profiles.load_profile(tmp_path / "p.toml"))


def test_class_folder_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found.*root/<class>"):
        load_class_folders(tmp_path / "absent")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"1 class folders hold no images \(e.g. .*empty/cls"):
        load_class_folders(tmp_path / "empty")
    (tmp_path / "bad.txt").write_text("n01532829\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected '<folder> <display name>'"):
        read_class_names(tmp_path / "bad.txt")


def test_bad_files_are_reported_when_the_dataset_loads(tmp_path):
    make_folders(tmp_path / "root", {"cat": 2, "dog": 2})
    (tmp_path / "root" / "cat" / "empty.jpg").write_bytes(b"")
    (tmp_path / "root" / "dog" / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"2 files under .* cannot be read.*empty.jpg \(zero bytes\).*"
                                                   r"notes.png \(not an image"):
        load_class_folders(tmp_path / "root")
    (tmp_path / "root" / "cat" / "empty.jpg").unlink()
    (tmp_path / "root" / "dog" / "notes.png").unlink()
    (tmp_path / "root" / "dog" / "._img0.jpg").write_bytes(b"\x00\x05resource fork")
    with pytest.warns(UserWarning, match=r"skipped 1 hidden files .*\._img0.jpg"):
        table = load_class_folders(tmp_path / "root")
    assert len(table) == 4 and not table.path.str.contains("/[.]_").any()


def test_sixteen_bit_and_float_images_keep_their_grey_levels(tmp_path):
    import numpy as np
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    loaded = np.asarray(load_image(tmp_path / "grey16.png"), float)
    assert loaded.shape == (64, 64, 3) and abs(loaded.mean() - 127.5) < 0.6  # Pillow's own convert gives 254.5
    assert np.abs(loaded[..., 0] - ramp * 255).max() <= 0.51  # rounding to 8 bits, after 16-bit truncation
    levels = (ramp * 255).astype(np.int32)
    assert (np.asarray(to_rgb(Image.fromarray(levels, mode="I")))[..., 1] == levels).all()  # 8-bit values kept
    unit_floats = Image.fromarray(ramp.astype(np.float32), mode="F")
    assert np.abs(np.asarray(to_rgb(unit_floats), float)[..., 2] - ramp * 255).max() <= 0.5


def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    picture = Image.new("RGB", (40, 20), "white")
    picture.paste((255, 0, 0), (0, 0, 10, 20))  # red on the left edge as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; view rotated 90 degrees clockwise
    picture.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "photo.jpg")
    assert upright.size == (20, 40)  # shown portrait, as a photo viewer shows it
    top = [channel for channel in upright.getpixel((10, 2))]
    assert top[0] > 200 and top[1] < 60  # the stored left edge is now at the top


def test_load_image_converts_to_rgb_and_names_bad_files(tmp_path):
    Image.new("RGBA", (8, 8)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").mode == "RGB"
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff truncated")
    with pytest.raises(ImageReadError, match="b.jpg.*corrupt"):
        load_image(tmp_path / "b.jpg")


def test_an_emoji_style_is_downloaded_once_and_drawn_like_the_renders(tmp_path, fake_emoji_style):
    fake_emoji_style({"package/LICENSE": b"MIT", "package/README.md": b"not kept",
                      "package/img/fake/64/1f600.png": Image.new("RGBA", (64, 64), (255, 0, 0, 255)),
                      "package/img/fake/64/1f436.png": Image.new("RGBA", (64, 64), (0, 0, 255, 128)),
                      "package/img/fake/32/1f600.png": Image.new("RGBA", (32, 32), (0, 255, 0, 255))})
    rows = pd.DataFrame({"image_id": ["1F600", "1F431", "1F436"], "class_name": ["face-smiling", "animal-mammal",
                         "animal-mammal"], "identity": ["1F600", "1F431", "1F436"], "path": ["a", "b", "c"]})
    kept, images = style_renderings(rows, "fake", tmp_path / "styles", progress=False)
    folder = tmp_path / "styles" / "emoji-datasource-fake-1.0.0"
    assert sorted(p.name for p in folder.iterdir()) == ["1f436.png", "1f600.png", "LICENSE"]
    assert list(kept.image_id) == ["1F600", "1F436"] and set(kept["style"]) == {"fake"}  # no 1F431 drawing
    assert list(kept.path) == [str(folder / "1f600.png"), str(folder / "1f436.png")]
    red = np.asarray(images[0])
    assert red.shape == (64, 64, 3)
    assert (red[8:56, 8:56] == [255, 0, 0]).all()  # scaled to 48 px, centred
    assert (red[:8] == 255).all() and (red[:, 56:] == 255).all()  # on white
    assert np.abs(np.asarray(images[1])[32, 32].astype(int) - [127, 127, 255]).max() <= 1  # half-transparent on white
    (tmp_path / "registry").rename(tmp_path / "gone")  # read from the cache from now on
    again, _ = style_renderings(rows, "fake", tmp_path / "styles", progress=False)
    assert again.equals(kept)


def test_a_style_download_with_another_digest_or_no_registry_keeps_nothing(tmp_path, monkeypatch, fake_emoji_style):
    fake_emoji_style({"package/LICENSE": b"MIT"}, integrity="c2hhNTEy")
    with pytest.raises(RuntimeError, match="does not have the pinned sha512"):
        fetch_emoji_style("fake", tmp_path / "styles", progress=False)
    assert list((tmp_path / "styles").iterdir()) == []  # no folder, no temporary left
    monkeypatch.setattr("genie_utils.emoji_styles.NPM_REGISTRY", (tmp_path / "nowhere").as_uri())
    with pytest.raises(RuntimeError, match=r"cannot download the fake emoji images from file://.*nowhere.*by hand"):
        fetch_emoji_style("fake", tmp_path / "styles", progress=False)
    with pytest.raises(ValueError, match=r"unknown emoji style 'apple'; use one of \['fake', 'google', 'twitter'\]"):
        fetch_emoji_style("apple", tmp_path / "styles")


def test_tiff_and_gif_are_read_and_other_files_and_nested_folders_are_named(tmp_path):
    make_folders(tmp_path / "root", {"cat": 1, "dog": 1})
    Image.new("RGB", (8, 8), "red").save(tmp_path / "root" / "cat" / "scan.tif")
    Image.new("P", (8, 8)).save(tmp_path / "root" / "dog" / "anim.gif")
    (tmp_path / "root" / "dog" / "labels.csv").write_text("a,b\n")
    (tmp_path / "root" / "cat" / "more").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "root" / "cat" / "more" / "deep.png")
    with pytest.warns(UserWarning) as caught:
        table = load_class_folders(tmp_path / "root")
    said = " | ".join(str(w.message) for w in caught)
    assert sorted(table.image_id) == ["cat/img0.jpg", "cat/scan.tif", "dog/anim.gif", "dog/img0.jpg"]
    assert "skipped 1 files under" in said and "labels.csv" in said and ".tif" in said
    assert "skipped 1 folders inside class folders" in said and "cat/more" in said and "move their images up" in said


def test_a_huge_image_and_a_name_that_is_not_utf8_are_errors_naming_the_file(tmp_path):
    import os
    import struct
    import zlib

    make_folders(tmp_path / "root", {"cat": 1, "dog": 1})

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 400 megapixels, by its header
    (tmp_path / "root" / "cat" / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=r"huge.png \(too large to decode safely"):
        load_class_folders(tmp_path / "root")
    (tmp_path / "root" / "cat" / "huge.png").unlink()
    with open(os.path.join(os.fsencode(tmp_path / "root" / "dog"), b"caf\xe9.png"), "wb") as f:
        Image.new("RGB", (8, 8)).save(f, format="PNG")
    with pytest.raises(ImageReadError, match=r"dog/caf\\xe9.png \(file name not UTF-8: rename it\)"):
        load_class_folders(tmp_path / "root")


def test_a_class_name_file_that_cannot_be_meant_is_an_error_naming_it(tmp_path):
    cases = {"empty.txt": (b"\n\n", r"empty.txt names no class"),
             "twice.txt": (b"cat a cat\ndog a dog\ncat a kitten\n", r"twice.txt:3: folder 'cat' is named a second time"),
             "latin1.txt": ("cat a caf\u00e9 cat\n".encode("latin-1"), r"latin1.txt is not UTF-8 .*save it as UTF-8"),
             "broken.json": (b'{"cat": "a cat",}', r"broken.json is not valid JSON"),
             "list.json": (b'["cat", "dog"]', r"list.json must hold one JSON object of non-empty strings.*not list"),
             "blank.json": (b'{"cat": ""}', r"blank.json must hold one JSON object")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            read_class_names(tmp_path / name)
    (tmp_path / "good.json").write_text('{"cat": " a cat "}')
    assert read_class_names(tmp_path / "good.json") == {"cat": "a cat"}


def test_a_truncated_jpeg_or_png_is_found_when_the_dataset_loads(tmp_path):
    make_folders(tmp_path / "root", {"cat": 2, "dog": 2})
    noise = Image.effect_noise((64, 64), 50).convert("RGB")
    for name, kind in (("cut.jpg", "JPEG"), ("cut.png", "PNG")):
        noise.save(tmp_path / "root" / "cat" / name, format=kind)
        whole = (tmp_path / "root" / "cat" / name).read_bytes()
        (tmp_path / "root" / "cat" / name).write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ImageReadError, match=r"2 files .*cut.jpg \(truncated \(no JPEG end marker\)\).*cut.png "
                                                   r"\(truncated or damaged"):
        load_class_folders(tmp_path / "root")


def test_a_byte_order_mark_and_a_jpeg_followed_by_other_data_are_read(tmp_path):
    (tmp_path / "names.txt").write_bytes("\ufeffcat a cat\ndog a dog\n".encode())  # as Windows editors save UTF-8
    assert read_class_names(tmp_path / "names.txt") == {"cat": "a cat", "dog": "a dog"}
    make_folders(tmp_path / "root", {"cat": 1, "dog": 1})
    noise = Image.effect_noise((64, 64), 50).convert("RGB")
    noise.save(tmp_path / "root" / "cat" / "motion.jpg", quality=90)
    with open(tmp_path / "root" / "cat" / "motion.jpg", "ab") as f:  # a phone's motion photo: a video after the image
        f.write(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    table = load_class_folders(tmp_path / "root", tmp_path / "names.txt")
    assert sorted(table.image_id) == ["cat/img0.jpg", "cat/motion.jpg", "dog/img0.jpg"]
    assert load_image(tmp_path / "root" / "cat" / "motion.jpg").size == (64, 64)
    # cut short, with an EXIF thumbnail (whose own end marker lies before the image's data) and the same trailer
    whole = (tmp_path / "root" / "cat" / "motion.jpg").read_bytes()
    thumbnail = (tmp_path / "thumb.jpg")
    Image.new("RGB", (8, 8), "red").save(thumbnail)
    body = b"Exif\x00\x00" + thumbnail.read_bytes()
    cut = whole[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + whole[2:whole.index(b"\xff\xd9") - 500]
    (tmp_path / "root" / "cat" / "motion.jpg").write_bytes(cut + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(ImageReadError, match=r"motion.jpg \(truncated \(no JPEG end marker\)\)"):
        load_class_folders(tmp_path / "root", tmp_path / "names.txt")


def test_other_formats_cut_short_and_a_link_to_nothing_are_errors_and_loose_images_are_named_at_load(tmp_path):
    make_folders(tmp_path / "root", {"cat": 1, "dog": 1})
    noise = Image.effect_noise((64, 64), 50).convert("RGB")
    for name in ("cut.tif", "cut.gif", "cut.bmp"):
        noise.save(tmp_path / "root" / "cat" / name)
        whole = (tmp_path / "root" / "cat" / name).read_bytes()
        (tmp_path / "root" / "cat" / name).write_bytes(whole[:len(whole) // 2])
    (tmp_path / "root" / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ImageReadError, match=r"4 files .*cut.bmp \(truncated or damaged .*cut.gif \(truncated or "
                                                   r"damaged .*cut.tif \(truncated or damaged .*gone.png \(a symbolic "
                                                   r"link to nothing: point it at its image or delete it\)"):
        load_class_folders(tmp_path / "root")
    for name in ("cut.tif", "cut.gif", "cut.bmp"):
        (tmp_path / "root" / "cat" / name).unlink()
    (tmp_path / "root" / "dog" / "gone.png").unlink()
    Image.new("RGB", (8, 8)).save(tmp_path / "root" / "loose.png")
    with pytest.warns(UserWarning, match=r"skipped 1 images directly under .*root \(e.g. .*loose.png\): only "
                                         r"root/<class>/<image> is read; move them into their class folder"):
        assert len(load_class_folders(tmp_path / "root")) == 2
