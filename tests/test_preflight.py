"""The preflight (`reproduce --check`): each missing piece of a run is named with its fix, before any image."""
import pytest
from PIL import Image

from genie_utils import preflight, profiles, reproduce

FEWSHOT = ["00", "01", "02", "03", "04", "05"]


def test_the_paper_protocol_needs_576000_images_and_19_8_million_unet_evaluations():
    """5-way episodes, 600 of 1 shot and 600 of 5: 20 and 100 pairs, each at 5 ratios plus 3 baselines (8 images);
    at 50 steps a pair's images take 25+30+35+40+45 + 15+35+50 = 275 UNet evaluations."""
    paper = profiles.load_profile("paper")
    assert preflight.fewshot_images(paper) == 600 * 20 * 8 + 600 * 100 * 8 == 576_000
    assert preflight.fewshot_image_steps(paper) == 600 * 120 * 275 == 19_800_000


def test_the_long_tail_needs_eight_images_per_image_of_its_budget():
    """Classes under top_up_below = 20 get images_per_class = 4 each; per image GeNIe's pair at r = 0.5 ... 0.9 and
    Img2Img^L, Img2Img^H and Txt2Img: 2 rare classes x 4 x 8 = 64."""
    import pandas as pd
    smoke = profiles.load_profile("smoke")
    profile = {**smoke, "longtail": {**smoke["longtail"], "top_up_below": 20, "images_per_class": 4}}
    classes = pd.DataFrame({"class_name": ["a", "b", "c"], "train_images": [3, 25, 19]})
    assert preflight.longtail_images(profile, classes) == 64


def test_the_smoke_profile_is_ready():
    items = preflight.preflight(profiles.load_profile("smoke"), [*FEWSHOT, "06"])
    assert [item.name for item in items] == ["dataset", "model", "backbone efficientnet-lite0", "oracle", "long tail",
                                             "disk", "time"]
    assert all(item.ok for item in items), preflight.table("smoke", items)


def test_too_little_disk_is_named_with_the_sizes_and_the_fix(tmp_path):
    profile = {**profiles.load_profile("smoke"), "root": str(tmp_path)}  # an empty results folder: estimated sizes
    said = preflight.check_disk(profile, 1000, free=10**9)
    assert said == "1,000 images x 6.1 kB (estimated, 1.5 bytes per pixel) = 6.1 MB; 1.0 GB free"
    with pytest.raises(ValueError, match=r"= 6.1 MB; 6.0 MB free: free 144.0 kB on that disk, or set "
                                         r"\[paths\] results elsewhere"):
        preflight.check_disk(profile, 1000, free=6_000_000)  # 1000 x 64 x 64 x 1.5 = 6,144,000 bytes needed


@pytest.fixture
def own_profile(tmp_path, tiny_model_dir):
    """A paper-style profile on two WordNet-named class folders and the tiny SD-shaped model, with its class names,
    EfficientNet-Lite0 and the shipped oracle; each test breaks one piece."""
    root = tmp_path / "data"
    for wnid, colour in (("n01532829", "red"), ("n02099601", "blue")):
        (root / wnid).mkdir(parents=True)
        for n in range(3):
            Image.new("RGB", (80 + 20 * n, 64), colour).save(root / wnid / f"{n}.jpg")
    (tmp_path / "names.txt").write_text("n01532829 house finch\nn02099601 golden retriever\n")

    def write(**changes):
        lines = {"dataset": f'root = "{root}"\nclass_names = "{tmp_path / "names.txt"}"\nresolution = 64',
                 "generation": f'model = "{tiny_model_dir}"',
                 "features": 'backbone = "efficientnet-lite0"', "fewshot": 'backbones = ["efficientnet-lite0"]',
                 "paths": f'results = "{tmp_path / "results"}"\nfigures = "{tmp_path / "figures"}"', **changes}
        path = tmp_path / "own.toml"
        path.write_text('name = "own"\nextends = "paper"\n' + "".join(f"[{t}]\n{v}\n" for t, v in lines.items()))
        return profiles.load_profile(path)
    return write


def by_name(items):
    return {item.name: item for item in items}


def test_a_missing_class_names_file_is_named(own_profile, tmp_path):
    (tmp_path / "names.txt").unlink()
    items = by_name(preflight.preflight(own_profile(), FEWSHOT))
    assert not items["dataset"].ok and "names.txt" in items["dataset"].detail
    assert items["oracle"].detail == "not checked: the dataset did not load (above)"


def test_a_missing_backbone_checkpoint_is_named(own_profile, tmp_path):
    items = by_name(preflight.preflight(own_profile(fewshot='backbones = ["efficientnet-lite0", "resnet18"]'), FEWSHOT))
    assert items["backbone efficientnet-lite0"].ok
    assert not items["backbone resnet18"].ok and "no backbone checkpoint at" in items["backbone resnet18"].detail


def test_an_oracle_that_is_missing_or_does_not_know_the_classes_is_named(own_profile, tmp_path):
    items = by_name(preflight.preflight(own_profile(oracle=f'architecture = ""\npath = "{tmp_path / "oracle.pt"}"'),
                                        FEWSHOT))
    assert not items["oracle"].ok and f"no oracle at {tmp_path / 'oracle.pt'}" in items["oracle"].detail
    items = by_name(preflight.preflight(own_profile(), FEWSHOT))  # the paper's ImageNet oracle, its weights not here
    assert items["dataset"].ok and items["model"].ok
    assert not items["oracle"].ok and items["oracle"].detail.startswith("no weights for the resnet50 oracle at ")
    items = by_name(preflight.preflight(own_profile(oracle='architecture = ""\npath = "./models/oracle/oracle.pt"'),
                                        FEWSHOT))  # the emoji oracle: no WordNet class
    assert not items["oracle"].ok and "knows 2 of the dataset's classes not (e.g. ['n01532829'" in items["oracle"].detail


def test_an_imagenet_oracle_knows_wordnet_classes_and_no_oracle_is_a_skip(own_profile, tmp_path):
    import timm
    from safetensors.torch import save_file
    save_file(timm.create_model("test_resnet", num_classes=1000).state_dict(), tmp_path / "judge.safetensors")
    items = by_name(preflight.preflight(own_profile(oracle='architecture = "test_resnet"\nweights = '
                                                           f'"{tmp_path / "judge.safetensors"}"'), FEWSHOT))
    assert items["oracle"].ok and items["oracle"].detail == (f"test_resnet from {tmp_path / 'judge.safetensors'}: "
                                                             "knows all 2 classes"), items["oracle"].detail
    items = by_name(preflight.preflight(own_profile(oracle='architecture = ""\npath = ""'), FEWSHOT))
    assert items["oracle"].ok and items["oracle"].detail.startswith("none: notebook 05 skips label consistency")


def test_check_prints_the_table_and_a_run_whose_preflight_fails_never_starts(own_profile, tmp_path, monkeypatch,
                                                                               capsys):
    own_profile(oracle='path = "./models/oracle/oracle.pt"\narchitecture = ""')  # the emoji oracle: no WordNet class
    monkeypatch.setattr(reproduce, "run", lambda *a, **k: pytest.fail("a run started although its preflight failed"))
    for argv in (["--check"], []):
        assert reproduce.main(["--profile", str(tmp_path / "own.toml"), *argv]) == 1
        out = capsys.readouterr().out
        assert "preflight of profile own:\n| item | ready | detail |" in out
        assert "| oracle | NO | the oracle" in out and out.rstrip().endswith("fix: oracle")
