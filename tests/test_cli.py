"""The `genie` command line on a tiny class-folder dataset and a tiny SD-shaped pipeline (CPU)."""
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image, ImageDraw

from genie_utils import cli
from genie_utils.store import Store, check_one_version, method_settings
from genie_utils.validation import UsageError

COLOURS = {"apple": "red", "boat": "blue", "cloud": "grey"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three classes of two 64 px images each: DATA/<class>/<n>.png."""
    root = tmp_path_factory.mktemp("data")
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for n in range(2):
            image = Image.new("RGB", (64, 64), "white")
            ImageDraw.Draw(image).ellipse((8 + 8 * n, 8, 56, 56 - 8 * n), fill=colour)
            image.save(root / name / f"{n}.png")
    return root


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def generate_args(folders, store, model, *extra):
    """Options that make the run independent of this machine's benchmark records (`--speed plain`)."""
    return ["generate", folders, "--store", store, "--model", model, "--steps", 4, "--batch-size", 3,
            "--no-progress", "--speed", "plain", *extra]


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    text = capsys.readouterr().out
    for action in cli.parser()._subparsers._group_actions[0].choices["generate"]._actions:
        assert all(option in text for option in action.option_strings)
        assert action.help, action.dest
    for method in cli.METHOD_HELP:
        assert method in text


def test_dry_run_counts_pairs_and_estimates_from_the_benchmark(folders, tiny_model_dir, tmp_path, capsys):
    benchmark = tmp_path / "throughput.csv"
    row = {"device": "CPU, 2 threads", "dtype": "float32", "batch_size": 8, "noise_ratio": 0.8, "steps": 20}
    pd.DataFrame([{**row, "images_per_second": 1.0, "model": "genie-companion", "within_tolerance": True},
                  {**row, "images_per_second": 9.0, "model": "other", "within_tolerance": True},
                  {**row, "images_per_second": 5.0, "model": "genie-companion", "within_tolerance": False},
                  {**row, "device": "NVIDIA H100", "images_per_second": 99.0, "model": "genie-companion",
                   "within_tolerance": True}]).to_csv(benchmark, index=False)
    code, out, _ = run(capsys, "generate", folders, "--store", tmp_path / "s", "--dry-run", "--device", "cpu",
                       "--benchmark", benchmark, "--batch-size", 8)
    # 3 targets x 4 images of the other classes; 40 UNet steps each at r = 0.8 of 50; 16 image-steps/s from the
    # one row of this model on a CPU within tolerance
    assert code == 0 and "genie: 12 images for 3 target classes, 480 UNet evaluations at 50 steps" in out
    assert "estimated time: 0.5 min" in out and "model genie-companion)" in out and not (tmp_path / "s").exists()
    code, out, _ = run(capsys, "generate", folders, "--store", tmp_path / "s", "--dry-run", "--device", "cpu",
                       "--benchmark", benchmark, "--model", tiny_model_dir)
    assert "another model" in out  # no row of this model: the fastest within tolerance, said to be another's
    code, _, err = run(capsys, "generate", folders, "--store", tmp_path / "s", "--dry-run", "--model", "./my-model")
    assert code == 2 and "no diffusers model folder at ./my-model" in err  # checked by a dry run too
    (tmp_path / "empty-model").mkdir()
    code, _, err = run(capsys, "generate", folders, "--store", tmp_path / "s", "--dry-run", "--model",
                       tmp_path / "empty-model")
    assert code == 2 and "is not a diffusers pipeline folder (no model_index.json)" in err
    code, out, _ = run(capsys, "generate", folders, "--store", tmp_path / "s", "--dry-run", "--method", "genie_ada",
                       "--target-classes", "boat", "--benchmark", tmp_path / "none.csv")
    assert code == 0 and "genie_ada: 4 pairs" in out and f"{4 * 175} UNet evaluations" in out
    assert "estimated time: unknown" in out


@pytest.mark.parametrize("argv, message", [
    (["--target-classes", "boats"], "unknown target class 'boats' (did you mean 'boat'?)"),
    (["--method", "txt2img", "--noise-ratio", "0.5"], "--noise-ratio is GeNIe's"),
    (["--noise-ratio", "1.5"], "noise ratio"),
    (["--source-classes", "apple", "--target-classes", "apple"], "no (source, target) pairs"),
    (["--method", "txt2img", "--variants", "0"], "at least 1"),
    # an option the method does not use is refused, not ignored
    (["--method", "txt2img", "--source-classes", "apple"], "--source-classes picks GeNIe's sources; txt2img"),
    (["--method", "img2img_low", "--source-classes", "apple"], "--source-classes picks GeNIe's sources"),
    (["--variants", "2"], "--variants is the baselines'; genie makes one image per"),
    (["--method", "genie_ada", "--variants", "1"], "--variants is the baselines'; genie_ada"),
    (["--backbone-checkpoint", "x.pth"], "--backbone and --backbone-checkpoint are GeNIe-Ada's; genie"),
    (["--method", "txt2img", "--backbone", "efficientnet-lite0"], "are GeNIe-Ada's; txt2img uses no backbone"),
])
def test_bad_arguments_get_a_clear_error(folders, tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "generate", folders, "--store", tmp_path, "--dry-run", *argv)
    assert code == 2 and message in err


@pytest.mark.parametrize("argv, message", [
    (["--prompt-template", "{0} {1}"], "prompt template '{0} {1}' needs one placeholder for the class name"),
    (["--prompt-template", "a photo"], "prompt template 'a photo' needs one placeholder for the class name"),
    (["--guidance", "nan"], "guidance scale must be a finite number >= 0, got nan"),
    (["--guidance", "inf"], "guidance scale must be a finite number >= 0, got inf"),
    (["--guidance", "-2"], "guidance scale must be a finite number >= 0, got -2.0"),
    (["--steps", "0"], "number of inference steps must be a positive integer, got 0"),
    (["--device", "cuda"], "device 'cuda': torch sees no CUDA GPU on this machine"),
    (["--device", "gpu0"], "unknown device 'gpu0': use cpu, cuda or cuda:N"),
    (["--device", "meta"], "device 'meta' is not supported here"),
    (["--benchmark", "nowhere/throughput.csv"], "--benchmark nowhere/throughput.csv: no such folder nowhere"),
    (["--benchmark", "BAD_CSV"], "lacks the columns device, batch_size, images_per_second, steps, noise_ratio"),
])
def test_bad_recipe_settings_stop_the_command_before_any_work(folders, tiny_model_dir, tmp_path, capsys, argv,
                                                             message):
    """The recipe's own checks, the device and the --benchmark file, run before the dataset, the model or the store:
    exit status 2, no traceback. (A machine with a GPU skips the case of --device cuda.)"""
    import torch
    if argv == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    if "BAD_CSV" in argv:
        (tmp_path / "bad.csv").write_text("when,speed\n2026-11-30,3.1\n")
        argv = [str(tmp_path / "bad.csv") if a == "BAD_CSV" else a for a in argv]
    for dry_run in ([], ["--dry-run"]):
        code, out, err = run(capsys, *generate_args(folders, tmp_path / "s", tiny_model_dir, "--target-classes",
                                                    "apple", *argv, *dry_run))
        assert code == 2 and message in err and "Traceback" not in err
        assert out == "" and not (tmp_path / "s").exists()


def test_the_speed_setting_is_the_recorded_default_or_the_one_named(folders, tiny_model_dir, tmp_path, capsys):
    import json

    from genie_utils import speed

    records = tmp_path / "benchmarks"
    records.mkdir()
    (records / "throughput-cpu-20261126-120000.json").write_text(json.dumps(
        {"device": speed.device_name("cpu"), "rows": [{"model": tiny_model_dir.name}],
         "default": "channels-last"}))
    argv = [a for a in generate_args(folders, tmp_path / "s", tiny_model_dir, "--target-classes", "apple")
            if a not in ("--speed", "plain")]
    code, out, err = run(capsys, *argv, "--device", "cpu", "--benchmark", records / "throughput.csv")
    assert code == 0, err
    assert "speed setting channels-last on cpu (measured: throughput-cpu-20261126-120000.json)" in out
    assert set(Store(tmp_path / "s").manifest().speed_setting) == {"channels-last"}
    code, _, err = run(capsys, *argv, "--device", "cpu", "--speed", "fp16")
    assert code == 2 and "speed setting fp16 needs a GPU" in err


def test_a_bad_ada_backbone_fails_before_anything_is_generated(folders, tiny_model_dir, tmp_path, capsys):
    argv = generate_args(folders, tmp_path / "s", tiny_model_dir, "--method", "genie_ada", "--target-classes", "boat")
    code, _, err = run(capsys, *argv, "--backbone", "resnet18", "--backbone-checkpoint", tmp_path / "missing.pt")
    assert code == 2 and "no backbone checkpoint at" in err and "missing.pt" in err
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, *argv, "--backbone", "vit-b16", "--backbone-checkpoint", tmp_path / "broken.pt")
    assert code == 2 and "unknown --backbone 'vit-b16'" in err and "Known: efficientnet-lite0, resnet18" in err
    for name, close in (("resnet19", "resnet18"), ("vit_b", None)):  # named as unknown, not as lacking a checkpoint
        code, _, err = run(capsys, *argv, "--backbone", name)
        assert code == 2 and f"unknown --backbone {name!r}" in err and "checkpoint FILE" not in err.split("Known")[0]
        assert (f"did you mean {close!r}" in err) == (close is not None)
    assert not (tmp_path / "s").exists()  # no candidate was made


def test_missing_dataset_and_empty_store_are_named(tmp_path, capsys):
    code, _, err = run(capsys, "generate", tmp_path / "nowhere", "--store", tmp_path / "s", "--dry-run")
    assert code == 2 and "dataset folder not found" in err and "nowhere" in err
    code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "out")
    assert code == 2 and f"no store folder {tmp_path / 's'}" in err and "holds no images" not in err
    (tmp_path / "s").mkdir()
    code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "out")
    assert code == 2 and "holds no images" in err


def test_ctrl_c_says_one_line_and_exits_130(monkeypatch, tmp_path, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "export_command", interrupted)
    (tmp_path / "s").mkdir()
    code, out, err = run(capsys, "export", tmp_path / "s", tmp_path / "out")
    assert code == 130 and err == "genie export: interrupted; the store is consistent, rerun to continue\n"


def test_generate_then_export_gives_an_image_folder_tree(folders, tiny_model_dir, tmp_path, capsys):
    from torchvision.datasets import ImageFolder

    store = tmp_path / "store"
    code, out, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--target-classes", "apple", "boat"))
    assert code == 0, err
    assert len(Store(store).manifest()) == 8 and (store / "manifest.csv").is_file()  # 2 targets x 4 sources
    code, out, _ = run(capsys, *generate_args(folders, store, tiny_model_dir, "--method", "img2img_low",
                                              "--target-classes", "cloud"))
    assert code == 0 and len(Store(store).manifest()) == 10
    code, out, _ = run(capsys, "export", store, tmp_path / "tree", "--method", "genie")
    assert code == 0 and "8 images in 2 class folders" in out
    tree = ImageFolder(tmp_path / "tree")
    assert tree.classes == ["apple", "boat"] and len(tree) == 8
    labels = pd.read_csv(tmp_path / "tree" / "manifest.csv").set_index("key").target_class
    assert all(labels[os.path.basename(path)[:-4]] == tree.classes[label] for path, label in tree.samples)
    code, _, err = run(capsys, "export", store, tmp_path / "tree", "--method", "txt2img")
    assert code == 2 and "no ['txt2img'] images" in err


def test_two_processes_make_the_single_process_images(folders, tiny_model_dir, tmp_path):
    """torchrun (accelerate's state on top) with 2 CPU processes, against one process: same keys, same bytes."""
    common = ["--steps", "4", "--batch-size", "1", "--no-progress", "--speed", "plain", "--model", str(tiny_model_dir),
              "--target-classes", "apple", "cloud"]
    alone, together = tmp_path / "alone", tmp_path / "together"
    # Bit for bit only at equal thread counts and batch shapes (a CPU's float sums depend on both; otherwise the
    # images agree within a grey level); torchrun gives each process 1 thread.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "genie_utils.cli", "generate", str(folders), "--store", str(alone),
                    *common], check=True, capture_output=True, env=env)
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", "genie_utils.cli", "generate", str(folders), "--store", str(together), *common],
                              capture_output=True, text=True, env=env)
    assert launched.returncode == 0, launched.stderr[-2000:]
    made = {int(i): int(n) for n, i in re.findall(r"(\d+) genie rows .* \(process (\d) of 2\)", launched.stdout)}
    assert sorted(made) == [0, 1] and min(made.values()) > 0 and sum(made.values()) == 8  # both worked, no overlap
    single, union = Store(alone).manifest(), Store(together).manifest()
    assert sorted(union.key) == sorted(single.key) and len(single) == 8
    for key, file in zip(single.key, single.file):
        assert (together / file).read_bytes() == (alone / file).read_bytes()
    assert len(pd.read_csv(together / "manifest.csv")) == 8  # written after both processes finished


def test_genie_ada_keeps_one_candidate_per_pair(folders, tiny_model_dir, tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--method", "genie_ada",
                                              "--target-classes", "boat"))
    assert code == 0, err
    manifest = Store(store).manifest()
    ada_rows = manifest[manifest.method == "genie_ada"]
    assert len(ada_rows) == 4 and (manifest.method == "genie").sum() == 4 * 5  # 4 pairs, 5 candidates each
    assert set(ada_rows.noise_ratio) <= {0.6, 0.7, 0.8, 0.9} and (ada_rows.target_class == "boat").all()
    code, out, _ = run(capsys, "export", store, tmp_path / "tree", "--method", "genie_ada")
    assert code == 0 and sorted(p.parent.name for p in (tmp_path / "tree").rglob("*.png")) == ["boat"] * 4


def test_export_ships_one_image_per_pair_and_method_and_the_ada_candidates_only_when_asked(folders, tiny_model_dir,
                                                                                            tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--method", "genie_ada",
                                              "--target-classes", "boat"))
    assert code == 0, err
    manifest = Store(store).manifest()
    chosen = sorted(manifest.key[manifest.method == "genie_ada"])

    def exported(out):
        return sorted(p.stem for p in (tmp_path / out).rglob("*.png")), pd.read_csv(tmp_path / out / "manifest.csv")

    code, out, _ = run(capsys, "export", store, tmp_path / "all")  # no --method: the 4 choices, not the 20 candidates
    keys, rows = exported("all")
    assert code == 0 and keys == chosen and sorted(rows.key) == chosen and not rows.candidate.any()
    assert "4 images in 1 class folders" in out and ": 4 genie_ada; 20 GeNIe-Ada candidates left out" in out
    code, _, err = run(capsys, "export", store, tmp_path / "genie", "--method", "genie")
    assert code == 2 and "are all GeNIe-Ada's candidates (r = 0.5, 0.6, 0.7, 0.8, 0.9)" in err
    assert "add --candidates to export them" in err
    assert not (tmp_path / "genie").exists()
    code, out, _ = run(capsys, "export", store, tmp_path / "candidates", "--method", "genie", "--candidates")
    keys, rows = exported("candidates")
    assert code == 0 and len(keys) == 20 and rows.candidate.all() and "20 genie_ada candidate" in out
    code, _, err = run(capsys, "export", store, tmp_path / "x", "--method", "genie_ada", "--candidates")
    assert code == 2 and "add genie to --method" in err
    # the candidates' folder again, without them: its manifest would not list the 20 images there
    code, _, err = run(capsys, "export", store, tmp_path / "candidates")
    assert code == 2 and "holds 20 images of an earlier export" in err and "would not list" in err
    assert exported("candidates")[1].candidate.all()  # the earlier export's manifest stays
    assert run(capsys, "export", store, tmp_path / "all")[0] == 0  # an earlier export with the same options

    # GeNIe at r = 0.8 into the same store: its images are the sweep's r = 0.8 candidates, made already
    code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--target-classes", "boat"))
    assert code == 0, err
    assert sorted(Store(store).manifest().key) == sorted(manifest.key)  # nothing added
    code, out, _ = run(capsys, "export", store, tmp_path / "both")
    keys, rows = exported("both")
    genie = sorted(manifest.key[(manifest.method == "genie") & (manifest.noise_ratio == 0.8)])
    assert code == 0 and keys == sorted(chosen + genie) and len(keys) == 8  # one per (source, target, method)
    assert rows.groupby(["source_id", "target_class", "method"]).size().eq(1).all()
    assert ": 4 genie, 4 genie_ada; 16 GeNIe-Ada candidates left out" in out


def test_export_writes_only_into_a_new_empty_or_earlier_export_folder_and_only_inside_it(tmp_path, capsys):
    store = Store(tmp_path / "s")
    store.put("a" * 20, Image.new("RGB", (4, 4), "red"), {"method": "genie", "target_class": "boat"})
    (tmp_path / "data" / "boat").mkdir(parents=True)
    Image.new("RGB", (4, 4), "blue").save(tmp_path / "data" / "boat" / "real.png")
    code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "data")  # a dataset folder
    assert code == 2 and "is not empty and was not written by `genie export`" in err
    assert sorted(p.name for p in (tmp_path / "data").rglob("*")) == ["boat", "real.png"]
    (tmp_path / "a-file").write_text("x")
    assert run(capsys, "export", tmp_path / "s", tmp_path / "a-file")[0] == 2
    for _ in range(2):  # a new folder, then the same folder again (an earlier export)
        code, out, err = run(capsys, "export", tmp_path / "s", tmp_path / "tree")
        assert code == 0, err
    assert (tmp_path / "tree" / "boat" / f"{'a' * 20}.png").is_file()

    store.put("b" * 20, Image.new("RGB", (4, 4), "red"), {"method": "genie", "target_class": "../.."})
    code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "other")
    assert code == 2 and f"row {'b' * 20}" in err and "target class '../..', which is not a folder name" in err
    store._row_path("b" * 20).unlink()
    (tmp_path / "secret.txt").write_text("not an image")
    with pytest.raises(ValueError, match="which is no file inside"):  # the store writes no such row itself
        store.put_row("c" * 20, {"method": "genie", "target_class": "boat", "file": str(tmp_path / "secret.txt")})
    damaged = store._row_path("c" * 20)  # a row changed by hand
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_text(json.dumps({"key": "c" * 20, "method": "genie", "target_class": "boat",
                                   "file": str(tmp_path / "secret.txt")}))
    code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "other")
    assert code == 2 and "secret.txt', outside the store" in err
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_a_store_refuses_a_second_model_or_recipe_before_any_image(folders, tiny_model_dir, tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--target-classes", "boat"))
    assert code == 0, err
    made = len(Store(store).manifest())
    for extra, said in ((["--steps", 5], "num_inference_steps 4 there, 5 now"), (["--seed", 1], "base_seed 0 there, 1 now")):
        code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--target-classes", "apple", *extra))
        assert code == 2 and "holds images of another version" in err and said in err and "another --store" in err
    assert len(Store(store).manifest()) == made  # nothing was added
    code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--target-classes", "apple"))
    assert code == 0, err  # the same version: more images into the same store


def test_a_second_noise_ratio_is_refused_before_any_image_and_a_rerun_at_the_same_ratio_adds_nothing(
        folders, tiny_model_dir, tmp_path, capsys):
    store = tmp_path / "store"
    argv = generate_args(folders, store, tiny_model_dir, "--target-classes", "boat")
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    made = Store(store).manifest()
    files = sorted(p.name for p in store.rglob("*.png"))
    assert len(made) == 4 and set(made.noise_ratio) == {0.8}
    for recorded in (True, False):  # the store's record, then (a store without it) its rows
        if not recorded:
            (store / "methods" / "genie.json").unlink()
        code, _, err = run(capsys, *argv, "--noise-ratio", 0.5)
        assert code == 2 and "holds genie images made with --noise-ratio 0.8, not --noise-ratio 0.5" in err, err
        assert "a second genie image of each (source, target) pair" in err and "another --store" in err
        assert sorted(p.name for p in store.rglob("*.png")) == files  # refused before any image
    code, _, err = run(capsys, *argv, "--noise-ratio", 0.8)  # a rerun at the same ratio: the same keys, no more
    assert code == 0, err
    assert sorted(Store(store).manifest().key) == sorted(made.key)
    assert sorted(p.name for p in store.rglob("*.png")) == files


def test_a_method_without_a_record_is_read_from_its_rows_beside_the_records_of_others(tmp_path):
    store = Store(tmp_path / "s")  # genie images written by the library, then a txt2img run recorded its settings
    store.put("a" * 20, Image.new("RGB", (4, 4), "red"), {"method": "genie", "target_class": "boat",
                                                          "noise_ratio": 0.8})
    store.write_settings("txt2img", {})
    assert method_settings(store) == {"genie": {"noise_ratio": 0.8}, "txt2img": {}}
    with pytest.raises(UsageError, match="made with --noise-ratio 0.8, not --noise-ratio 0.5"):
        check_one_version(store, {}, None, "genie", {"noise_ratio": 0.5})


def test_a_second_ada_backbone_is_refused_as_a_second_image_of_each_pair(tmp_path):
    store = Store(tmp_path / "s")
    store.put("a" * 20, Image.new("RGB", (4, 4), "red"), {"method": "genie", "target_class": "boat",
                                                          "noise_ratio": 0.7})
    store.put_row("b" * 20, {**store.row("a" * 20), "method": "genie_ada", "candidate_keys": ["a" * 20],
                             "backbone": "efficientnet-lite0"})
    for recorded in (False, True):  # its rows, then its record
        if recorded:
            store.write_settings("genie_ada", {"backbone": "efficientnet-lite0", "backbone_key": "k0"})
        with pytest.raises(UsageError, match="holds genie_ada images made with --backbone efficientnet-lite0, "
                                                 "not --backbone resnet18: this run would add a second genie_ada"):
            check_one_version(store, {}, None, "genie_ada", {"backbone": "resnet18", "backbone_key": "k1"})
    with pytest.raises(UsageError, match="made with backbone weights k0, not backbone weights k1"):
        check_one_version(store, {}, None, "genie_ada", {"backbone": "efficientnet-lite0", "backbone_key": "k1"})
    # GeNIe's ratio is its own: the candidate at r = 0.7 is no GeNIe image of another ratio
    assert check_one_version(store, {}, None, "genie", {"noise_ratio": 0.8})["genie_ada"]["backbone_key"] == "k0"


def test_a_bad_claim_bound_is_named_before_any_work(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENIE_CLAIM_STALE_SECONDS", "-5")
    code, _, err = run(capsys, "generate", folders, "--store", tmp_path / "s", "--dry-run")
    assert code == 2 and "GENIE_CLAIM_STALE_SECONDS='-5' is not a time" in err and not (tmp_path / "s").exists()


def test_export_checks_every_row_and_image_before_writing_and_copies_each_image_atomically(tmp_path, capsys,
                                                                                          monkeypatch):
    import errno
    import json
    import shutil
    from pathlib import Path

    store = Store(tmp_path / "s")
    for key in ("a" * 20, "b" * 20):
        store.put(key, Image.new("RGB", (4, 4), "red"), {"method": "genie", "target_class": "boat"})
    image, row = tmp_path / "s" / store.row("b" * 20)["file"], store._row_path("b" * 20)
    good = row.read_text()
    for damage, said in ((lambda: image.unlink(), "is missing"), (lambda: image.write_text("x"), "not a complete PNG"),
                         (lambda: row.write_text(json.dumps({**json.loads(good), "target_class": None})),
                          "has target class nan, which is not a folder name"),
                         (lambda: row.write_text(json.dumps({**json.loads(good), "key": "../../escaped"})),
                          "its key '../../escaped' is not its file name")):
        damage()
        code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "out")
        assert code == 2 and said in err and "Traceback" not in err, err
        assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.png").exists()  # nothing written
        Image.new("RGB", (4, 4), "red").save(image)
        row.write_text(good)
    other = Store(tmp_path / "other")
    other.put("c" * 20, Image.new("RGB", (4, 4), "blue"), {"method": "genie", "target_class": "boat"})
    assert run(capsys, "export", tmp_path / "other", tmp_path / "out")[0] == 0
    code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "out")
    assert code == 2 and f"holds images of another store (e.g. {tmp_path / 'out' / 'boat' / ('c' * 20)}.png" in err
    assert sorted(p.name for p in (tmp_path / "out" / "boat").iterdir()) == [f"{'c' * 20}.png"]
    moved = Path(shutil.copytree(tmp_path / "other", tmp_path / "moved"))  # the same store, elsewhere: its export
    assert run(capsys, "export", moved, tmp_path / "out")[0] == 0

    def full(source, target):
        target.write(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    code, _, err = run(capsys, "export", tmp_path / "s", tmp_path / "fresh")
    assert code == 2 and "No space left on device while writing" in err and "boat/aaaa" in err and "free space" in err
    assert [p.name for p in (tmp_path / "fresh").rglob("*") if p.is_file()] == [".genie-export"]  # no part of one


def test_a_store_inside_the_dataset_an_r_that_runs_no_step_and_a_benchmark_of_other_values_are_refused(
        folders, tmp_path, capsys):
    benchmark = tmp_path / "throughput.csv"
    columns = "device,batch_size,images_per_second,steps,noise_ratio\n"
    (tmp_path / "a-file").write_text("x")
    for argv, said in ((["--store", folders / "store"], f"lies inside the dataset folder {folders}"),
                       (["--store", tmp_path / "a-file"], "a-file is a file, not a store folder: give a new folder"),
                       (["--store", folders], "the next run would read the store as a class folder"),
                       (["--steps", "1"], "--steps 1 runs no denoising step at r = 0.8 (int(steps * r) = 0"),
                       (["--method", "img2img_low", "--steps", "3"], "r = 0.3 (int(steps * r) = 0: the source would "
                                                                     "come back unchanged): use --steps 4 or more"),
                       (["--benchmark", benchmark, "CPU,8,fast,20,0.8\n"], "column images_per_second holds 'fast', "
                                                                         "not a number: pass the throughput.csv"),
                       (["--benchmark", benchmark, "CPU,8,2.0,twenty,0.8\n"], "column steps holds 'twenty'"),
                       (["--benchmark", benchmark, "0,8,2.0,20,0.8\n"], "column device holds 0, not a device name")):
        if "--benchmark" in argv:
            benchmark.write_text(columns + argv.pop())
        code, out, err = run(capsys, "generate", folders, "--store", tmp_path / "s", "--dry-run", "--device", "cpu",
                             *argv)
        assert code == 2 and said in err and "Traceback" not in err, (argv, err)
    assert not (folders / "store").exists() and not (tmp_path / "s").exists()


def test_another_prompt_template_or_class_names_file_is_another_version_of_the_store(folders, tiny_model_dir,
                                                                                     tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--target-classes", "boat"))
    assert code == 0, err
    made = len(Store(store).manifest())
    (tmp_path / "names.txt").write_text("apple red apple\nboat sail boat\ncloud cumulus\n")
    for extra in (["--prompt-template", "a picture of a {}"], ["--class-names", tmp_path / "names.txt"]):
        code, _, err = run(capsys, *generate_args(folders, store, tiny_model_dir, "--target-classes", "boat", *extra))
        assert code == 2 and "holds images of another version (prompt 'a photo of a boat.' there for class boat" in err
    assert len(Store(store).manifest()) == made


def test_ctrl_c_in_the_run_and_settle_commands_says_one_line_and_exits_130(capsys):
    from genie_utils.validation import run_command

    def interrupted():
        raise KeyboardInterrupt
    assert run_command(interrupted, "settle") == 130
    assert capsys.readouterr().err == "settle: interrupted; the store is consistent, rerun to continue\n"
    assert run_command(lambda: 0, "settle") == 0
