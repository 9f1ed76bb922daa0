"""Profiles are data: embedded (default), smoke (CI), paper."""
from pathlib import Path

import pytest

from genie_utils import profiles


def test_every_profile_loads_and_smoke_extends_embedded():
    assert set(profiles.available_profiles()) >= {"embedded", "smoke", "paper"}
    embedded, smoke = profiles.load_profile("embedded"), profiles.load_profile("smoke")
    assert embedded["name"] == "embedded" and smoke["name"] == "smoke"
    assert smoke["dataset"] == embedded["dataset"]  # inherited table
    assert smoke["generation"]["num_inference_steps"] < embedded["generation"]["num_inference_steps"]
    assert smoke["generation"]["model"] == embedded["generation"]["model"]
    assert smoke["paths"]["results"] != embedded["paths"]["results"]


def test_paper_profile_is_sd15_on_local_folders():
    paper = profiles.load_profile("paper")
    assert paper["generation"]["model"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert paper["dataset"]["kind"] == "folders" and paper["dataset"]["resolution"] == 512
    assert paper["generation"]["guidance_scale"] == 7.5 and paper["generation"]["num_inference_steps"] == 50


def test_unknown_profile_lists_the_choices():
    with pytest.raises(FileNotFoundError, match=r"unknown profile 'fast'.*embedded.*paper.*smoke"):
        profiles.load_profile("fast")


def test_profile_from_a_file_and_relative_paths(tmp_path):
    (tmp_path / "mine.toml").write_text('name = "mine"\nextends = "smoke"\n[generation]\nbatch_size = 2\n')
    mine = profiles.load_profile(tmp_path / "mine.toml")
    assert mine["generation"]["batch_size"] == 2 and mine["generation"]["num_inference_steps"] == 10
    assert profiles.resolve(mine, "results/x") == Path(mine["root"]) / "results/x"
    assert profiles.resolve(mine, "/abs/path") == Path("/abs/path")


def write(tmp_path, text, name="mine.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ('extends = "smoke"\n[generation]\nnum_inference_step = 10\n',
     r"mine.toml: unknown key 'generation.num_inference_step'; did you mean generation.num_inference_steps\?"),
    ('extends = "smoke"\n[generaton]\nbatch_size = 2\n',
     r"mine.toml: unknown table 'generaton'; did you mean generation\?"),
    ('extends = "smoke"\n[generation]\nnum_inference_steps = "10"\n',
     r"mine.toml: generation.num_inference_steps = '10' should be an integer"),
    ('extends = "smoke"\n[splits]\nshots = [1, "5"]\n', r"splits.shots = \[1, '5'\] should be a list of integers"),
    ('extends = "smoke"\n[generation]\nguidance_scale = true\n', r"generation.guidance_scale = True should be a number"),
    ('extends = "smoke"\n[features]\nbackbone = "resnet-18"\n',
     r"mine.toml: unknown backbone features.backbone = 'resnet-18'; did you mean 'resnet18'\?"),
    ('name = "mine"\n[dataset]\nkind = "openmoji"\nresolution = 64\n', r"mine.toml: missing required key splits.shots"),
    ('extends = "smoke"\n[generation\nbatch_size = 2\n', r"mine.toml: TOML syntax error"),
    ('extends = "smoke"\n[dataset]\nkind = "folder"\n', r"unknown dataset.kind = 'folder'"),
    ('extends = "smoke"\n[generation]\nbatch_size = 0\n', r"generation.batch_size = 0 must be at least 1"),
    ('extends = "smoke"\n[fewshot]\ntarget_half_widths = [2.0]\n',
     r"fewshot.target_half_widths \[2.0\] needs one positive half-width \(points\) per entry of fewshot.shots \[1, 5\]"),
    ('extends = "smoke"\n[fewshot]\ntarget_half_widths = [2.0, 0]\n', r"needs one positive half-width"),
    ('extends = "smoke"\n[splits]\nevaluation_fraction = 1.5\n',
     r"mine.toml: splits.evaluation_fraction = 1.5 must lie strictly between 0 and 1"),
    ('extends = "smoke"\n[splits]\nevaluation_fraction = 0\n', r"splits.evaluation_fraction = 0 must lie strictly"),
    ('extends = "smoke"\n[walkthrough]\nnoise_ratios = [0, 2]\n',
     r"mine.toml: walkthrough.noise_ratios = \[0, 2\]: noise ratio r must be in \(0, 1\], got 0"),
    ('extends = "smoke"\n[walkthrough]\nnoise_ratios = [0.5, 2]\n', r"noise ratio r must be in \(0, 1\], got 2"),
])
def test_bad_profiles_name_the_file_the_key_and_the_fix(tmp_path, text, message):
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.load_profile(write(tmp_path, text))


def test_a_bad_parent_profile_is_named_as_the_file_at_fault(tmp_path):
    write(tmp_path, 'extends = "smoke"\n[ada]\nepisode = [0]\n', "parent.toml")
    child = write(tmp_path, f'extends = "{tmp_path / "parent.toml"}"\n')
    with pytest.raises(profiles.ProfileError, match=r"parent.toml: unknown key 'ada.episode'"):
        profiles.load_profile(child)


def test_floats_accept_integers_and_the_shipped_profiles_validate():
    for name in profiles.available_profiles():
        assert profiles.load_profile(name)["file"].endswith(f"{name}.toml")
    assert profiles._check_keys({"generation": {"guidance_scale": 7}}, profiles.SCHEMA) == []


def test_smoke_training_never_writes_over_the_shipped_models():
    embedded, smoke = profiles.load_profile("embedded"), profiles.load_profile("smoke")
    shipped = {profiles.resolve(embedded, embedded["generation"]["model"]),
               profiles.resolve(embedded, embedded["oracle"]["path"])}
    assert profiles.resolve(embedded, embedded["companion"]["output"]) in shipped
    for key in ("companion", "oracle"):
        out = profiles.resolve(smoke, smoke[key]["output"])
        assert out not in shipped and str(out).startswith(str(profiles.resolve(smoke, smoke["paths"]["results"])))


def test_an_extends_loop_names_the_profiles_in_it(tmp_path):
    write(tmp_path, f'extends = "{tmp_path / "b.toml"}"\n', "a.toml")
    write(tmp_path, f'extends = "{tmp_path / "a.toml"}"\n', "b.toml")
    with pytest.raises(profiles.ProfileError, match=r"b.toml: `extends` makes a loop, a.toml -> b.toml -> a.toml: "
                                                    r"a profile cannot extend itself, directly or through others"):
        profiles.load_profile(tmp_path / "a.toml")
    itself = write(tmp_path, f'extends = "{tmp_path / "c.toml"}"\n', "c.toml")
    with pytest.raises(profiles.ProfileError, match=r"loop, c.toml -> c.toml"):
        profiles.load_profile(itself)


@pytest.mark.parametrize("text, message", [
    ("[generation]\nguidance_scale = nan\n", r"generation.guidance_scale: guidance scale must be a finite number >= 0, "
                                             r"got nan"),
    ('[generation]\nprompt_template = "{0} {1}"\n', r"generation.prompt_template: prompt template '\{0\} \{1\}' needs "
                                                    r"one placeholder"),
    ("[dataset]\nresolution = 63\n", r"dataset.resolution = 63 px is not a positive multiple of 8 .* use 56 or 64"),
    ("[generation]\nguidance_timesteps = [600, 100]\n", r"generation.guidance_timesteps = \[600, 100\] must be "
                                                        r"\[low, high\] with 0 <= low <= high <= 999"),
])
def test_recipe_values_that_no_generation_can_run_are_refused_when_the_profile_loads(tmp_path, text, message):
    with pytest.raises(profiles.ProfileError, match=r"mine.toml: .*" + message):
        profiles.load_profile(write(tmp_path, 'extends = "smoke"\n' + text))


def test_a_profile_with_a_byte_order_mark_or_in_latin_1_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_bytes("\ufeffextends = \"smoke\"\n".encode("utf-8"))
    with pytest.raises(profiles.ProfileError, match=r"mine.toml: saved with a byte-order mark .* save it as plain UTF-8"):
        profiles.load_profile(path)
    path.write_bytes('extends = "smoke"\ndescription = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(profiles.ProfileError, match=r"mine.toml: not UTF-8 text \(byte 0xe9 on line 2\)"):
        profiles.load_profile(path)


def test_a_relative_extends_is_read_beside_the_profile_wherever_the_run_starts(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    write(tmp_path / "mine", 'extends = "smoke"\n[generation]\nbatch_size = 3\n', "parent.toml")
    child = write(tmp_path / "mine", 'extends = "parent.toml"\n', "child.toml")
    monkeypatch.chdir(tmp_path)  # not the profiles' folder
    assert profiles.load_profile(child)["generation"]["batch_size"] == 3
    write(tmp_path / "mine", 'extends = "absent.toml"\n', "child.toml")
    with pytest.raises(profiles.ProfileError, match=r"child.toml: extends = 'absent.toml': no file .*mine/absent.toml "
                                                    r"\(a relative `extends` is read from the folder of the profile"):
        profiles.load_profile(child)


def test_a_backbone_checkpoint_comes_from_its_own_entry_else_from_the_default_backbones():
    features = {"backbone": "resnet18", "checkpoint": "default.pth", "checkpoints": {"resnet34": "r34.pth"}}
    assert profiles.backbone_checkpoint(features, "resnet34") == "r34.pth"
    assert profiles.backbone_checkpoint(features, "resnet18") == "default.pth"  # the default backbone's
    assert profiles.backbone_checkpoint(features, "resnet50") is None  # `checkpoint` is the default backbone's only
    assert profiles.backbone_checkpoint({"backbone": "efficientnet-lite0"}, "efficientnet-lite0") is None
