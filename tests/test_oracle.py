"""The ImageNet oracle of the paper profiles: a timm classifier from a local weights file, its outputs named by
WordNet ids; and the profile's choice of oracle, or none."""
import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from genie_utils import fewshot, oracle, profiles
from genie_utils.run_files import RunFiles


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """timm's tiny test ResNet with 1,000 outputs, random weights, saved as safetensors and as a DataParallel-style
    torch checkpoint ("state_dict" holding "module."-prefixed keys)."""
    folder = tmp_path_factory.mktemp("imagenet-oracle")
    state = timm.create_model("test_resnet", num_classes=1000).state_dict()
    save_file(state, folder / "judge.safetensors")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "judge.pth")
    return folder


def test_imagenet_classes_are_the_1000_wordnet_ids_in_output_order():
    classes = oracle.imagenet_classes()
    assert len(classes) == len(set(classes)) == 1000
    assert classes[0] == "n01440764" and classes[1] == "n01443537"  # tench, goldfish
    assert classes[-1] == "n15075141" and classes.index("n02099601") == 207  # toilet tissue; golden retriever


def test_imagenet_input_resizes_crops_and_normalises():
    first = oracle.ImageNetInput(size=160, crop_pct=0.95, mean=(0.5, 0.4, 0.3), std=(0.5, 0.2, 0.1))
    assert first.resized == 168  # round(160 / 0.95)
    images = torch.zeros(2, 3, 64, 96)  # grey in [-1, 1]: 0.5 in [0, 1]
    out = first(images)
    assert out.shape == (2, 3, 160, 160)
    expected = torch.tensor([(0.5 - 0.5) / 0.5, (0.5 - 0.4) / 0.2, (0.5 - 0.3) / 0.1]).view(1, 3, 1, 1)
    assert torch.allclose(out, expected.expand_as(out), atol=1e-5)
    assert first.interpolation == "bilinear"
    assert oracle.ImageNetInput(224, 0.875, (0,) * 3, (1,) * 3, "bicubic").interpolation == "bicubic"
    assert oracle.ImageNetInput(224, 0.875, (0,) * 3, (1,) * 3, "nearest").interpolation == "bilinear"


def test_the_oracle_loads_either_file_and_judges_in_batches(weights):
    judge = oracle.imagenet_oracle("test_resnet", weights / "judge.safetensors")
    assert judge.classes == oracle.imagenet_classes() and judge.device == torch.device("cpu")
    assert judge.record == {"architecture": "test_resnet", "weights": "judge.safetensors", "input_size": 160}
    images = torch.rand(5, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = judge.probabilities(images)
    assert whole.shape == (5, 1000) and np.allclose(whole.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(judge.probabilities(images, batch_size=2), whole, atol=1e-6)
    other = oracle.imagenet_oracle("test_resnet", weights / "judge.pth")
    np.testing.assert_array_equal(other.probabilities(images), whole)
    assert judge.index("n02099601") == 207
    tagged = oracle.imagenet_oracle("test_resnet.r160_in1k", weights / "judge.safetensors")  # a pretrained tag
    np.testing.assert_array_equal(tagged.probabilities(images), whole)
    assert oracle.Oracle(torch.nn.Identity(), ["a"]).probabilities([]).shape == (0, 1)


def test_bad_oracle_settings_are_named_with_the_fix(weights, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no weights for the resnet50 oracle at .*absent.safetensors: save "
                                                r"an ImageNet-1k checkpoint of timm's resnet50 there"):
        oracle.imagenet_oracle("resnet50", tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match=r"timm has no architecture 'test_resnett' for the oracle; did you mean "
                                         r"\['test_resnet'"):
        oracle.imagenet_oracle("test_resnett", weights / "judge.pth")
    with pytest.raises(ValueError, match=r"the weights at .*judge.pth do not fit timm's resnet18 with 1,000 ImageNet "
                                         r"classes \(Error\(s\) in loading state_dict for ResNet: Missing key"):
        oracle.imagenet_oracle("resnet18", weights / "judge.pth")
    (tmp_path / "list.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="do not fit timm's test_resnet"):
        oracle.imagenet_oracle("test_resnet", tmp_path / "list.pth")


def test_the_profile_names_its_oracle_or_none(weights):
    smoke = profiles.load_profile("smoke")
    assert len(oracle.profile_oracle(smoke).classes) == 98  # [oracle] path: the shipped emoji oracle
    own = {**smoke, "oracle": {"path": "./models/oracle/oracle.pt", "architecture": "test_resnet",
                               "weights": str(weights / "judge.safetensors")}}
    assert len(oracle.profile_oracle(own).classes) == 1000  # architecture and weights come first
    assert oracle.profile_oracle({**smoke, "oracle": {"path": "", "architecture": ""}}) is None
    with pytest.raises(ValueError, match=r"\[oracle\] architecture = 'resnet50' needs \[oracle\] weights"):
        oracle.profile_oracle({**smoke, "oracle": {"architecture": "resnet50"}})


def test_without_an_oracle_label_consistency_is_skipped_in_one_sentence(tmp_path):
    profile = {**profiles.load_profile("smoke"), "root": str(tmp_path)}
    files = RunFiles.of(profile).fewshot
    folder = files.folder
    folder.mkdir(parents=True)
    (folder / "label_consistency.csv").write_text("row,images\ngenie,3\n")  # an earlier run's, with an oracle
    said = fewshot.skip_label_consistency(files)
    assert said == oracle.NO_ORACLE and said.startswith("Label consistency is skipped: the profile names no oracle.")
    assert (folder / "label_consistency.txt").read_text() == said + "\n"
    assert not (folder / "label_consistency.csv").exists()
