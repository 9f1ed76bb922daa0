"""The settle run: its slices, one slice run end to end into its committed folder, and the verdicts read from
every slice file."""
import json

import pandas as pd
import pytest

from genie_utils import data, fewshot, generate, profiles, settle
from genie_utils.recipe import Recipe


def test_the_settle_profile_runs_the_long_tail_then_episode_ranges_of_each_shot_count():
    plan = settle.plan(profiles.load_profile("embedded-settle"))
    assert [s.name for s in plan] == [
        "longtail",
        "fewshot-1shot-episodes-000-024", "fewshot-1shot-episodes-025-049", "fewshot-1shot-episodes-050-074",
        "fewshot-5shot-episodes-000-019", "fewshot-5shot-episodes-020-039", "fewshot-5shot-episodes-040-059",
        "fewshot-5shot-episodes-060-079", "fewshot-5shot-episodes-080-099", "fewshot-5shot-episodes-100-103"]
    assert sum(s.stop - s.start for s in plan if s.shots == 5) == 104


def tiny_settle_profile(tmp_path, episodes=2):
    """The smoke profile with a settle table: 3-way 1-shot, `episodes` episodes in slices of one, under tmp_path."""
    profile = profiles.load_profile("smoke")
    profile["fewshot"].update(shots=[1], episodes=[episodes], target_half_widths=[2.0])
    profile["settle"] = {"folder": str(tmp_path / "settled"), "slice_episodes": [1]}
    profile["paths"]["results"] = str(tmp_path / "results")
    return profile


@pytest.fixture
def tiny_slice_run(tmp_path, monkeypatch, tiny_pipeline, openmoji, counting_backbone):
    """run_slice with the tiny pipeline at 10 steps and the counting backbone in place of the profile's."""
    pipe, info = tiny_pipeline
    generator = generate.GenieGenerator(pipe, Recipe(num_inference_steps=10), info, batch_size=8)
    monkeypatch.setattr(generate.GenieGenerator, "from_profile", classmethod(lambda cls, profile: generator))
    monkeypatch.setattr(data, "load_dataset", lambda profile, progress=True: openmoji)
    monkeypatch.setattr(settle, "load_backbone", lambda profile, name: counting_backbone())
    return tiny_settle_profile(tmp_path), generator


def test_a_slice_writes_its_episode_rows_and_record_and_a_rerun_generates_nothing(tiny_slice_run):
    profile, generator = tiny_slice_run
    piece = settle.plan(profile)[2]
    assert piece.name == "fewshot-1shot-episodes-001-001"
    path = settle.run_slice(profile, piece, progress=False, command="python -m genie_utils.settle --next 1")
    rows = pd.read_csv(path)
    assert list(rows.columns) == settle.FEWSHOT_COLUMNS
    assert set(rows.episode) == {1} and sorted(rows.method) == sorted(fewshot.table_rows())  # episode 1: seed 1
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["slice"] == piece.name and record["command"] == "python -m genie_utils.settle --next 1"
    assert record["first_episode"] == 0 and record["device"].startswith("CPU")
    assert [s.name for s in settle.done(profile)] == [piece.name]
    decodes = generator.counts.vae_decodes
    again = settle.run_slice(profile, piece, progress=False)
    assert generator.counts.vae_decodes == decodes  # every image came from the store
    assert pd.read_csv(again).equals(rows)


def test_the_first_episode_seed_draws_other_episodes(tiny_slice_run):
    profile, _ = tiny_slice_run
    piece = settle.plan(profile)[1]
    settle.run_slice(profile, piece, progress=False)
    first = pd.read_csv(profile["paths"]["results"] + f"/settle/{piece.name}/episodes.csv")
    profile["fewshot"]["first_episode"] = 7
    settle.run_slice(profile, piece, progress=False)
    seventh = pd.read_csv(profile["paths"]["results"] + f"/settle/{piece.name}/episodes.csv")
    assert set(first.episode) == {0} and set(seventh.episode) == {7}
    assert set(first.image_id) != set(seventh.image_id)


def slice_rows(episodes, genie_minus_weak):
    return pd.DataFrame([{"profile": "p", "backbone": "b", "ways": 5, "shots": 1, "episode": e, "method": m,
                          "accuracy": 0.5 + (d / 100 if m == "genie" else 0), "generated_per_class": 0}
                         for e, d in zip(episodes, genie_minus_weak) for m in fewshot.ROWS])


def test_verdicts_combine_every_slice_file_and_refuse_an_episode_twice(tmp_path):
    profile = tiny_settle_profile(tmp_path, episodes=4)
    folder = settle.folder(profile)
    folder.mkdir()
    slice_rows([0, 1], [2, 3]).to_csv(folder / "fewshot-1shot-episodes-000-001.csv", index=False)
    slice_rows([2, 3], [2, 3]).to_csv(folder / "fewshot-1shot-episodes-002-003.csv", index=False)
    one = settle.fewshot_results(profile)
    assert sorted(one.episode.unique()) == [0, 1, 2, 3]
    table = settle.verdicts(profile)
    assert len(table) == len(settle.claims.FEWSHOT_CLAIMS)  # no long-tail file: the few-shot claims only
    row = table.iloc[0]
    assert (row.first, row.second) == ("genie", "weak")
    # differences 2, 3, 2, 3: mean 2.5, s 0.57735, half-width 3.1824 * 0.57735 / 2 = 0.9187: above 0
    assert (row.n, row.verdict, row.sized_for) == (4, "holds", 4)
    assert row.half_width == pytest.approx(0.9187, abs=1e-4)
    slice_rows([3], [1]).to_csv(folder / "fewshot-1shot-episodes-003-003.csv", index=False)
    with pytest.raises(ValueError, match="episode 3 .* two slice files"):
        settle.fewshot_results(profile)


def test_the_command_line_names_an_unknown_slice_and_a_profile_without_a_settle_table(capsys):
    with pytest.raises(SystemExit) as exit_:
        settle.main(["--profile", "embedded-settle", "--slice", "fewshot-9shot"])
    assert exit_.value.code == 2 and "unknown slice 'fewshot-9shot'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        settle.main(["--profile", "smoke", "--list"])
    assert exit_.value.code == 2 and "no [settle] table" in capsys.readouterr().err
