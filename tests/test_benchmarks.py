"""benchmarks/throughput.py on a tiny pipeline: every setting timed and compared with the plain path, GeNIe-Ada's
sweep timed beside GeNIe; the episode-cost and editing benchmarks' arguments and counts."""
import importlib.util
import json

import pandas as pd
import pytest

from genie_utils import profiles


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(name, profiles.project_root() / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_compares_each_setting_with_plain_and_names_the_fastest(tiny_model_dir, tmp_path):
    throughput = load_benchmark("throughput")
    assert throughput.main(["--profile", "smoke", "--model", str(tiny_model_dir), "--device", "cpu",
                            "--settings", "channels-last", "classic-attention", "bf16", "--batch-sizes", "2",
                            "--images", "2", "--repeats", "2", "--ada", "--out", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("throughput-cpu-*.json")).read_text())
    rows = pd.DataFrame(record["rows"]).set_index("setting")
    assert list(rows.index) == ["plain", "channels-last", "classic-attention", "bf16"]  # plain first, as reference
    assert rows.loc["plain", "max_abs_difference"] == 0 and (rows.images_per_second > 0).all()
    assert (rows.slowest <= rows.images_per_second).all() and (rows.images_per_second <= rows.fastest).all()
    assert rows.loc["channels-last", "max_abs_difference"] < 1 / 255 and rows.loc["classic-attention", "within_tolerance"]
    assert rows.loc["bf16", "max_abs_difference"] > 0  # another dtype really ran
    fastest = record["fastest_within_tolerance"]
    assert fastest["setting"] in set(rows.index[rows.within_tolerance])
    assert fastest["images_per_second"] == rows[rows.within_tolerance].images_per_second.max()
    assert len(pd.read_csv(tmp_path / "throughput.csv")) == 4
    # the default: plain, or a setting within tolerance whose slowest timing beats plain's fastest (which one depends on
    # this CPU: bf16 is 18 times slower on one machine and within tolerance and fastest on another)
    default = record["default"]
    assert default == "plain" or (rows.loc[default, "within_tolerance"]
                                  and rows.loc[default, "slowest"] > rows.loc["plain", "fastest"])
    # GeNIe-Ada's sweep makes 5 candidates per kept image: 35 UNet steps against 8 at the smoke profile's 10 steps
    assert (rows.unet_steps_per_image == 8).all() and (rows.ada_unet_steps_per_image == 35).all()
    assert (rows.ada_relative_cost > 1).all()


def test_throughput_reference_only_checks_against_plain_without_timing_it(tiny_model_dir, tmp_path, capsys):
    throughput = load_benchmark("throughput")
    assert throughput.main(["--profile", "smoke", "--model", str(tiny_model_dir), "--device", "cpu", "--reference-only",
                            "--settings", "bf16", "--batch-sizes", "2", "--images", "2", "--repeats", "1",
                            "--out", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("throughput-cpu-*.json")).read_text())
    assert [row["setting"] for row in record["rows"]] == ["bf16"]  # plain made the reference, no row
    assert record["rows"][0]["max_abs_difference"] > 0  # compared with plain's float32 batch, not with itself
    assert record["default"] is None  # the built-in (plain on a CPU) was not timed
    with pytest.raises(SystemExit) as exit_:
        throughput.main(["--profile", "smoke", "--reference-only", "--settings", "plain"])
    assert exit_.value.code == 2 and "--reference-only times no setting besides plain" in capsys.readouterr().err


def test_editing_settings_parse_and_bad_ones_name_the_format():
    import argparse

    import pytest

    from genie_utils import editing

    parse = load_benchmark("editing").parse_setting
    assert parse("20:7.5") == editing.Setting(20, 7.5)
    assert parse("50:3:0-500") == editing.Setting(50, 3.0, (0, 500))
    assert parse("20:7.5:100-720").label == "20 steps, guidance 7.5 at t 100-720"
    for bad in ("20", "20:x", "20:7.5:500", "20:7.5:1-2-3"):
        with pytest.raises(argparse.ArgumentTypeError, match="STEPS:GUIDANCE"):
            parse(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="0 <= low <= high <= 999"):
        parse("20:7.5:600-500")


@pytest.mark.parametrize("name", ["denoising_steps", "editing", "episode_cost", "fewshot_evaluation", "stock_pipeline",
                                  "throughput"])
def test_an_unknown_profile_is_a_usage_error(name, capsys):
    with pytest.raises(SystemExit) as exit:
        load_benchmark(name).main(["--profile", "fast"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "argument --profile: unknown profile 'fast'" in err and "'smoke'" in err


def test_episode_cost_counts_an_episode_s_images_and_the_unet_evaluations_of_its_recipe(openmoji, generator):
    import argparse

    import numpy as np

    from genie_utils.recipe import Recipe

    cost = load_benchmark("episode_cost")
    classes = ["animal-mammal", "heart", "face-smiling", "transport-ground", "food-fruit"]
    support = pd.concat([openmoji[openmoji.class_name == c].head(2) for c in classes], ignore_index=True)
    # 5-way 2-shot: GeNIe's 5 * 2 * 4 pairs at each of Ada's 5 ratios; the baselines (N - 1) images per support image
    assert cost.episode_images(support) == {0.5: 40, 0.6: 40, 0.7: 40 + 40, 0.8: 40, 0.9: 40, 0.3: 40, 1.0: 40}
    schedule = np.linspace(0, 999, 51).round()[::-1][:-1]  # SD v1.5's 50 steps, independently of diffusers
    assert cost.unet_work(generator, {0.8: 3, 1.0: 1}) == (3 * 40 + 50, 2 * (3 * 40 + 50))
    generator.recipe = Recipe(guidance_timesteps=(500, 999))
    guided = lambda first: int((schedule[first:] >= 500).sum())  # noqa: E731
    assert cost.unet_work(generator, {0.8: 3, 1.0: 1}) == (170, 3 * (40 + guided(10)) + 50 + guided(0))
    profile = profiles.load_profile("smoke")
    setting, batch, recipe = cost.parse_config("channels-last/16/10:3:500-999", profile)
    assert (setting, batch, recipe.num_inference_steps, recipe.guidance_scale, recipe.guidance_timesteps) == \
        ("channels-last", 16, 10, 3.0, (500, 999))
    assert recipe.prompt_template == profile["generation"]["prompt_template"] and recipe.height == 64
    for bad, message in (("plain/32", "SETTING/BATCH"), ("plain/0/20:7.5", "SETTING/BATCH"),
                         ("fast/32/20:7.5", "unknown speed setting 'fast'"), ("plain/32/20", "STEPS:GUIDANCE")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            cost.parse_config(bad, profile)
