"""make reproduce: notebook order and the stage keys that let a rerun skip what did not change."""
import shutil

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
    assert reproduce.main(["--profile", "smoke", "--only", "99"]) == 1
