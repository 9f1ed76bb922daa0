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
