"""make reproduce: notebook order and the stage keys that let a rerun skip what did not change."""
import json
import shutil

import pytest

from genie_utils import profiles, reproduce


def test_keys_chain_so_a_changed_notebook_reruns_itself_and_what_follows(tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(profiles.project_root() / "notebooks", folder)
    profile = profiles.load_profile("smoke")
    before = reproduce.stage_keys(profile, folder)
    assert list(before) == sorted(before) and list(before)[0].startswith("00_")
    assert before == reproduce.stage_keys(profile, folder)  # nothing changed: every key the same
    second = sorted(folder.glob("02_*.ipynb"))[0]
    second.write_text(second.read_text().replace("Augmentations", "Augmentations (edited)", 1))
    after = reproduce.stage_keys(profile, folder)
    changed = [name for name in before if before[name] != after[name]]
    assert changed == [name for name in before if name >= second.name]
    other = reproduce.stage_keys(profiles.load_profile("embedded"), folder)
    assert all(other[name] != after[name] for name in after)  # another profile: every stage its own key


def test_only_selects_by_prefix():
    folder = profiles.project_root() / "notebooks"
    assert [p.name[:2] for p in reproduce.notebooks(folder, ["04", "06"])] == ["04", "06"]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_recorded_outputs_change_no_key_and_land_only_in_checked_cells(tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(profiles.project_root() / "notebooks", folder)
    profile = profiles.load_profile("smoke")
    notebook = folder / "04_fewshot.ipynb"
    executed = tmp_path / "executed.ipynb"
    document = json.loads(notebook.read_text())
    for cell in document["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": [f"ran {cell['id']}\n"]}]
            cell["execution_count"] = 7
    executed.write_text(json.dumps(document))
    before = reproduce.stage_keys(profile, folder)
    assert reproduce.record_checks(executed, notebook) == 1
    assert reproduce.stage_keys(profile, folder) == before
    with_outputs = [c for c in _cells(notebook) if c.get("outputs")]
    assert len(with_outputs) == 1 and reproduce.is_checked(with_outputs[0])
    assert with_outputs[0]["outputs"][0]["text"] == [f"ran {with_outputs[0]['id']}\n"]
    assert with_outputs[0]["execution_count"] == 7  # nbval skips a stored output of a cell never run


def test_every_checked_cell_in_the_repository_has_a_recorded_output():
    checked = [(p.name, c) for p in reproduce.notebooks(profiles.project_root() / "notebooks") for c in _cells(p)
               if reproduce.is_checked(c)]
    assert len(checked) >= 5
    assert [name for name, c in checked if not c["outputs"]] == []  # run --record-checks after adding one


def test_recording_refuses_an_executed_copy_without_the_checked_cell(tmp_path):
    notebook = tmp_path / "04.ipynb"
    shutil.copy(profiles.project_root() / "notebooks" / "04_fewshot.ipynb", notebook)
    executed = tmp_path / "executed.ipynb"
    executed.write_text(json.dumps({"cells": []}))
    with pytest.raises(KeyError, match="missing"):
        reproduce.record_checks(executed, notebook)


def test_checks_are_recorded_only_from_the_smoke_profile(capsys):
    with pytest.raises(SystemExit) as exit:
        reproduce.main(["--profile", "embedded", "--record-checks", "--only", "00"])
    assert exit.value.code == 2 and "--profile smoke" in capsys.readouterr().err


@pytest.fixture
def no_notebooks(monkeypatch):
    """`run` replaced: these tests check the command line, never execute a notebook."""
    calls = []
    monkeypatch.setattr(reproduce, "run", lambda *args: calls.append(args) or [])
    return calls


def test_only_without_a_prefix_is_a_usage_error(no_notebooks, capsys):
    with pytest.raises(SystemExit) as exit:
        reproduce.main(["--profile", "smoke", "--only"])
    assert exit.value.code == 2 and "argument --only: expected at least one argument" in capsys.readouterr().err
    assert no_notebooks == []


def test_an_unknown_or_looping_profile_is_a_usage_error(no_notebooks, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:
        reproduce.main(["--profile", "fast"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "argument --profile: unknown profile 'fast'" in err
    assert "'embedded'" in err and "'smoke'" in err and "Traceback" not in err
    (tmp_path / "loop.toml").write_text(f'extends = "{tmp_path / "loop.toml"}"\n')
    with pytest.raises(SystemExit) as exit:
        reproduce.main(["--profile", str(tmp_path / "loop.toml")])
    assert exit.value.code == 2 and "`extends` makes a loop, loop.toml -> loop.toml" in capsys.readouterr().err
    assert no_notebooks == []


def test_a_prefix_that_matches_no_notebook_is_a_usage_error_naming_the_notebooks(no_notebooks, capsys):
    with pytest.raises(SystemExit) as exit:
        reproduce.main(["--profile", "smoke", "--only", "99"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "--only 99: no notebook's name starts so; give prefixes of" in err
    assert "00_embedded_dataset.ipynb" in err and no_notebooks == []


def test_a_settle_profile_runs_its_slices_not_the_notebooks(monkeypatch, capsys):
    from genie_utils import settle, site
    calls = []
    monkeypatch.setattr(settle, "main", lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(reproduce, "run", lambda *a, **k: pytest.fail("a settle profile runs no notebooks"))
    assert reproduce.main(["--profile", "embedded-settle"]) == 0
    assert calls == [["--profile", "embedded-settle", "--all"]]
    assert site.main(["--profile", "embedded-settle"]) == 0  # no notebooks, no site: said, not an error
    assert "settle run" in capsys.readouterr().out


def test_each_profile_runs_its_own_notebooks():
    folder = profiles.project_root() / "notebooks"
    names = lambda name, only=None: [p.name[:2] for p in reproduce.profile_notebooks(  # noqa: E731
        profiles.load_profile(name), folder, only)]
    assert names("embedded") == ["00", "01", "02", "03", "04", "05", "06"]
    assert names("paper") == names("paper-tiered") == ["00", "01", "02", "03", "04", "05"]
    assert names("paper-longtail") == ["06"]
    assert names("paper", ["04", "05"]) == ["04", "05"]
    with pytest.raises(ValueError, match=r"profile 'paper' does not run 06_longtail.ipynb: its notebooks are "
                                         r"00_embedded_dataset.ipynb, .*05_fewshot_analysis.ipynb \(\[notebooks\] run\)"):
        reproduce.profile_notebooks(profiles.load_profile("paper"), folder, ["06"])


def test_a_notebook_outside_the_profile_is_a_usage_error(no_notebooks, capsys):
    with pytest.raises(SystemExit) as exit:
        reproduce.main(["--profile", "paper", "--only", "06"])
    assert exit.value.code == 2 and "profile 'paper' does not run 06_longtail.ipynb" in capsys.readouterr().err
    assert no_notebooks == []


def test_augmentations_go_alone_and_only_to_a_profile_that_generates(no_notebooks, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(reproduce, "spread_augmentations", lambda name: pytest.fail("a usage error generates nothing"))
    for extra in (["--only", "02"], ["--check"], ["--force"]):
        with pytest.raises(SystemExit) as exit:
            reproduce.main(["--profile", "paper", "--augmentations", *extra])
        assert exit.value.code == 2 and "give it without --only, --check, --force" in capsys.readouterr().err
    (tmp_path / "judge-only.toml").write_text('extends = "paper"\n[notebooks]\nrun = ["05"]\n')
    with pytest.raises(SystemExit) as exit:
        reproduce.main(["--profile", str(tmp_path / "judge-only.toml"), "--augmentations"])
    assert exit.value.code == 2 and "makes the images of notebooks 02 and 06, and profile" in capsys.readouterr().err
    assert no_notebooks == []


def test_each_process_of_a_launcher_gets_its_own_gpu(monkeypatch):
    """accelerate launch and torchrun set LOCAL_RANK: a notebook they run puts its models on the process's GPU."""
    import torch

    from genie_utils.pipeline import default_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert default_device() == torch.device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert default_device() == torch.device("cuda:3")
    monkeypatch.setenv("LOCAL_RANK", "5")  # a node launched with more processes than GPUs shares them round robin
    assert default_device() == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
