"""The paper's path on a user's own data, shrunk: profiles that extend `paper` and `paper-longtail` with class
folders named by WordNet ids (JPEGs of several sizes on cluttered backgrounds, `class_names.txt`), a tiny SD-shaped
model folder, an ImageNet oracle and a tiny ImageNet-LT (list files and folders), all made at test time. Each
profile's own notebooks run as `make reproduce` runs them: the preflight first, then papermill. The generated images
(notebook 02's, 06's) are made first by two processes, as by two GPUs (`reproduce --augmentations`)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from genie_utils import oracle, reproduce

CLASSES = 6        # ImageNet-1k classes, from timm's list (every 150th), never typed in
IMAGES = 12        # per class: 5 shots and 4 queries of a 3-way episode, with room to spare
SIZES = [(96, 72), (72, 120), (140, 100), (80, 80)]


def cluttered_image(rng: np.random.Generator, size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """Noise blocks behind an ellipse of the class's colour, at `size`."""
    blocks = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    width, height = size
    box = [rng.integers(0, width // 3), rng.integers(0, height // 3), rng.integers(2 * width // 3, width),
           rng.integers(2 * height // 3, height)]
    ImageDraw.Draw(image).ellipse([int(v) for v in box], fill=colour)
    return image


def write_class_folders(root, wnids, images: int, rng) -> None:
    for number, wnid in enumerate(wnids):
        (root / wnid).mkdir(parents=True)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        for n in range(images):
            cluttered_image(rng, SIZES[(n + number) % len(SIZES)], colour).save(root / wnid / f"{wnid}_{n}.JPEG")


def toml_tables(tables: dict[str, str]) -> str:
    return "".join(f"[{name}]\n{body}\n" for name, body in tables.items())


def spread_images(profile, notebook: str, store) -> dict:
    """A generating notebook's images made first by two processes, as by two GPUs (`reproduce --augmentations` under
    torchrun: accelerate launch's CPU processes need MPI); each made a share, and the shares do not overlap.
    Returns every image's file (relative to the store) and modification time."""
    spread = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "genie_utils.reproduce", "--profile", str(profile), "--augmentations"],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert spread.returncode == 0, spread.stderr[-3000:]
    pattern = rf"notebook {notebook}'s images: (\d+) in .* \(process (\d) of 2\)"
    shares = {int(i): int(n) for n, i in re.findall(pattern, spread.stdout)}
    assert sorted(shares) == [0, 1] and min(shares.values()) > 0, spread.stdout[-3000:]
    made = {path.relative_to(store): path.stat().st_mtime_ns for path in (store / "images").rglob("*.png")}
    assert sum(shares.values()) == len(made)
    return made


def assert_made_before(listed: pd.DataFrame, made: dict, store) -> None:
    """The notebook lists exactly the spread's images, and made none of them again."""
    assert {Path(file) for file in listed.file} == set(made)
    assert all((store / file).stat().st_mtime_ns == made[file] for file in made)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model_dir):
    """What both profiles use: the class names of all 1,000 ImageNet classes (`n01440764 tench, Tinca tinca`
    lines, from timm's list) and the ImageNet oracle's weights (timm's tiny test ResNet, random)."""
    folder = tmp_path_factory.mktemp("paper-shaped")
    info = timm.data.ImageNetInfo()
    wnids = oracle.imagenet_classes()
    (folder / "class_names.txt").write_text("".join(f"{w} {info.index_to_description(i)}\n"
                                                    for i, w in enumerate(wnids)))
    save_file(timm.create_model("test_resnet", num_classes=1000).state_dict(), folder / "judge.safetensors")
    common = {"generation": f'model = "{tiny_model_dir}"\nnum_inference_steps = 10\nbatch_size = 8',
              "features": f'backbone = "efficientnet-lite0"\ncache_dir = "{folder / "features"}"',
              "oracle": f'architecture = "test_resnet"\nweights = "{folder / "judge.safetensors"}"'}
    return folder, wnids[::150][:CLASSES], common


def test_every_notebook_of_a_paper_shaped_profile_runs(shared):
    folder, wnids, common = shared
    write_class_folders(folder / "mini", wnids, IMAGES, np.random.default_rng(0))
    profile = folder / "own-paper.toml"
    profile.write_text('name = "own-paper"\nextends = "paper"\n' + toml_tables({
        **common,
        "dataset": f'root = "{folder / "mini"}"\nclass_names = "{folder / "class_names.txt"}"\nresolution = 64',
        "splits": "queries_per_class = 4",
        "fewshot": 'episodes = [2, 1]\nways = 3\nbackbones = ["efficientnet-lite0"]',
        "ada": "episodes = [0]\ncost_pairs = 2",
        "walkthrough": f'targets = ["{wnids[1]}", "{wnids[2]}"]\nnoise_ratios = [0.3, 0.8, 1.0]\nsweep_pairs = 2',
        "paths": f'results = "{folder / "results-paper"}"\nfigures = "{folder / "figures-paper"}"',
        "notebooks": "grid_images_per_class = 4\ngrid_classes = 6"}))
    made = spread_images(profile, "02", folder / "results-paper" / "store")
    assert reproduce.main(["--profile", str(profile)]) == 0
    executed = sorted(p.name for p in (folder / "results-paper" / "notebooks").glob("*.ipynb"))
    assert [name[:2] for name in executed] == ["00", "01", "02", "03", "04", "05"]
    listed = pd.read_csv(folder / "results-paper" / "fewshot" / "augmentations.csv")
    assert_made_before(listed, made, folder / "results-paper" / "store")
    judged = pd.read_csv(folder / "results-paper" / "fewshot" / "label_consistency.csv")
    assert set(judged.row) >= {"weak", "mixup", "genie", "txt2img"} and (judged.images > 0).all()


def test_the_long_tail_notebook_of_a_paper_longtail_shaped_profile_runs(shared):
    """ImageNet-LT shrunk: a list file per split (`train/<wnid>/<file> <label>`), 10, 5 and 2 training images for
    the three classes' bins (Many > 6, Few < 3 here), 3 test images each."""
    folder, wnids, common = shared
    root, rng = folder / "lt", np.random.default_rng(1)
    counts = dict(zip(wnids[:4], (10, 5, 2, 2)))
    lines = {"train": [], "test": []}
    for label, (wnid, count) in enumerate(counts.items()):
        for split, images in (("train", count), ("test", 3)):
            (root / split / wnid).mkdir(parents=True)
            for n in range(images):
                cluttered_image(rng, SIZES[n % len(SIZES)], (40 * label, 200, 90)).save(root / split / wnid / f"{n}.JPEG")
                lines[split].append(f"{split}/{wnid}/{n}.JPEG {label}")
    for split in lines:
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines[split]) + "\n")
    profile = folder / "own-longtail.toml"
    profile.write_text('name = "own-longtail"\nextends = "paper-longtail"\n' + toml_tables({
        **common,
        "dataset": f'root = "{root / "train"}"\nclass_names = "{folder / "class_names.txt"}"\nresolution = 64',
        "splits": "many_shot_threshold = 6\nfew_shot_threshold = 3",
        "longtail": f'root = "{root}"\ntrain_list = "{root / "ImageNet_LT_train.txt"}"\ntest_list = '
                    f'"{root / "ImageNet_LT_test.txt"}"\ntop_up_below = 3\nimages_per_class = 1\nseeds = 1\n'
                    'backbone = "efficientnet-lite0"',
        "longtail.finetune": 'model = "vit_tiny"\nweights = ""\nimage_size = 32\nepochs = 1\nbatch_size = 8\n'
                             'mixed_precision = "no"\nworkers = 0',
        "paths": f'results = "{folder / "results-longtail"}"\nfigures = "{folder / "figures-longtail"}"'}))
    made = spread_images(profile, "06", folder / "results-longtail" / "store")
    assert reproduce.main(["--profile", str(profile)]) == 0
    executed = [p.name for p in (folder / "results-longtail" / "notebooks").glob("*.ipynb")]
    assert [name[:2] for name in executed] == ["06"]
    listed = pd.read_csv(folder / "results-longtail" / "longtail" / "augmentations.csv")
    assert_made_before(listed, made, folder / "results-longtail" / "store")
    assert json.loads((folder / "results-longtail" / "notebooks" / executed[0]).read_text())["cells"]
