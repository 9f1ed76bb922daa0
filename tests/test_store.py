"""Episode pairing, the store and resuming: jobs -> images + manifest rows."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genie_utils import generate, pairing
from genie_utils.jobs import Job, in_shard, job_spec, keyed_jobs, run_jobs
from genie_utils.recipe import pair_seed
from genie_utils.store import TEMPORARY_PREFIX, Store, claimed_batches, spec_key


def episode(openmoji, ways=5, shots=1):
    classes = ["animal-mammal", "heart", "face-smiling", "transport-ground", "food-fruit"][:ways]
    return pd.concat([openmoji[openmoji.class_name == c].head(shots) for c in classes], ignore_index=True)


@pytest.mark.parametrize("shots, per_class", [(1, 4), (5, 20)])
def test_genie_pairs_every_other_class_support_image_with_each_target(openmoji, shots, per_class):
    support = episode(openmoji, 5, shots)
    jobs = pairing.episode_jobs(support, "genie")
    counts = pd.Series([j.target_class for j in jobs]).value_counts()
    assert set(counts) == {per_class} and len(counts) == 5
    assert all(j.source_class != j.target_class and j.noise_ratio == 0.8 for j in jobs)
    assert len({(j.source_id, j.target_class) for j in jobs}) == len(jobs)  # one per ordered pair


@pytest.mark.parametrize("method, ratio", [("img2img_low", 0.3), ("img2img_high", 0.7), ("txt2img", 1.0)])
def test_baselines_get_the_same_count_per_class_with_own_class_prompts(openmoji, method, ratio):
    support = episode(openmoji, 5, 5)
    jobs = pairing.episode_jobs(support, method)
    genie_counts = pd.Series([j.target_class for j in pairing.episode_jobs(support, "genie")]).value_counts()
    counts = pd.Series([j.target_class for j in jobs]).value_counts()
    assert counts.sort_index().equals(genie_counts.sort_index())
    assert all(j.source_class == j.target_class and j.noise_ratio == ratio for j in jobs)
    assert len({(j.source_id, j.variant) for j in jobs}) == len(jobs)


def test_unknown_method_and_shards(openmoji):
    with pytest.raises(KeyError, match="unknown method 'mixup'"):
        pairing.episode_jobs(episode(openmoji), "mixup")
    keys = [spec_key({"job": i}) for i in range(300)]
    owners = [[k for k in keys if in_shard(k, (i, 3))] for i in range(3)]
    assert sorted(sum(owners, [])) == sorted(keys) and min(map(len, owners)) > 60  # each key once, spread
    assert owners[1] == [k for k in reversed(keys) if in_shard(k, (1, 3))][::-1]  # order plays no part
    assert all(in_shard(k, None) for k in keys)
    for bad in [(3, 3), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="shard must be"):
            in_shard(keys[0], bad)


def test_shards_together_make_exactly_the_single_process_images(fast_generator, openmoji, class_names, tmp_path):
    # batch size 1: the same shapes in every run, so the same bytes (other batch sizes: within a grey level)
    jobs = small_jobs(openmoji)
    alone = run_jobs(fast_generator, jobs, Store(tmp_path / "alone"), class_names, batch_size=1,
                              progress=False)
    shared = Store(tmp_path / "shared")
    parts = [run_jobs(fast_generator, jobs[::-1], shared, class_names, batch_size=1, progress=False,
                               shard=(i, 2)) for i in range(2)]
    assert set(parts[0].key).isdisjoint(parts[1].key) and min(len(p) for p in parts) > 0
    assert sorted(pd.concat(parts).key) == sorted(alone.key)
    for key in alone.key:
        assert (shared.root / shared.row(key)["file"]).read_bytes() == (tmp_path / "alone" / Store(
            tmp_path / "alone").row(key)["file"]).read_bytes()


def small_jobs(openmoji):
    support = episode(openmoji, 3, 1)
    return pairing.episode_jobs(support, "genie") + pairing.episode_jobs(support, "txt2img")


def test_manifest_rows_describe_each_image(generator, openmoji, class_names, tmp_path):
    store = Store(tmp_path)
    jobs = small_jobs(openmoji)
    rows = run_jobs(generator, jobs, store, class_names, batch_size=4, progress=False)
    assert len(rows) == len(jobs) == 12 and rows.key.is_unique  # 3-way 1-shot: 6 GeNIe + 6 Txt2Img
    genie_row = rows[rows.method == "genie"].iloc[0]
    job = jobs[0]
    assert (genie_row.source_id, genie_row.source_class, genie_row.target_class) == \
        (job.source_id, job.source_class, job.target_class)
    assert genie_row.noise_ratio == 0.8 and genie_row.first_timestep == 799 and genie_row.denoising_steps == 40
    assert genie_row.seed == pair_seed(0, job.source_id, job.target_class)
    assert genie_row.prompt == f"a photo of a {class_names[job.target_class]}."
    assert genie_row.negative_prompt == "" and genie_row.guidance_scale == 7.5
    assert genie_row.num_inference_steps == 50 and genie_row.latent == "vae-mode"
    assert genie_row.model_fingerprint == generator.model_info["model_fingerprint"]
    assert genie_row.source_sha256 and genie_row.versions["diffusers"]
    assert (rows[rows.method == "txt2img"].noise_ratio == 1.0).all()
    assert store.load_image(genie_row.key).size == (64, 64)
    manifest = pd.read_csv(store.export_manifest())
    assert sorted(manifest.key) == sorted(rows.key)


def test_rerun_skips_what_exists(fast_generator, openmoji, class_names, tmp_path):
    store = Store(tmp_path)
    jobs = small_jobs(openmoji)
    run_jobs(fast_generator, jobs, store, class_names, batch_size=8, progress=False)
    steps = fast_generator.counts.unet_steps
    again = run_jobs(fast_generator, jobs, store, class_names, batch_size=8, progress=False)
    assert fast_generator.counts.unet_steps == steps
    assert len(again) == len(jobs)


def test_interrupted_run_resumes_without_duplicates_or_partial_files(fast_generator, openmoji, class_names, tmp_path,
                                                                     monkeypatch):
    jobs = small_jobs(openmoji)
    reference = run_jobs(fast_generator, jobs, Store(tmp_path / "reference"), class_names, 2, progress=False)

    store = Store(tmp_path / "interrupted")
    real_generate = fast_generator.generate
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user stops the run during the third batch
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(fast_generator, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_jobs(fast_generator, jobs, store, class_names, batch_size=2, progress=False)
    assert len(store.manifest()) == 4  # two complete batches
    assert not list(store.root.rglob(f"{TEMPORARY_PREFIX}*"))

    # a crash between the image and its row leaves an image with no row: it is regenerated
    orphan = store.image_path("genie", "0" * 20)
    orphan.write_bytes(b"half")
    monkeypatch.setattr(fast_generator, "generate", real_generate)
    resumed = run_jobs(fast_generator, jobs, store, class_names, batch_size=3, progress=False)
    manifest = store.manifest()
    assert len(manifest) == len(jobs) and manifest.key.is_unique
    assert list(resumed.key) == list(reference.key)
    for key in reference.key:  # same images as an uninterrupted run (up to one grey level of rounding)
        a = np.asarray(store.load_image(key), dtype=int)
        b = np.asarray(Store(tmp_path / "reference").load_image(key), dtype=int)
        assert np.abs(a - b).max() <= 1


def test_failed_write_leaves_no_file(tmp_path):
    class Exploding:
        def save(self, f, format):
            f.write(b"partial")
            raise OSError("disk full")

    store = Store(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        store.put("e" * 20, Exploding(), {"method": "genie"})
    assert not store.has("e" * 20)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_clean_removes_only_old_temporary_files(tmp_path):
    store = Store(tmp_path)
    old, new = tmp_path / "images" / f"{TEMPORARY_PREFIX}old", tmp_path / "rows" / f"{TEMPORARY_PREFIX}new"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    import os
    os.utime(old, (0, 0))
    assert store.clean() == 1
    assert not old.exists() and new.exists()
    assert store.manifest().empty


def test_spec_key_ignores_key_order_and_sees_every_value():
    assert spec_key({"a": 1, "b": 0.8}) == spec_key({"b": 0.8, "a": 1})
    assert spec_key({"a": 1, "b": 0.8}) != spec_key({"a": 1, "b": 0.7})
    assert len(spec_key({})) == 20


def test_missing_source_and_unknown_target_fail_before_any_work(generator, openmoji, class_names, tmp_path):
    store = Store(tmp_path)
    job = Job("genie", "x", str(tmp_path / "missing.png"), "heart", "animal-mammal", 0.8)
    with pytest.raises(FileNotFoundError, match="source image x not found"):
        run_jobs(generator, [job], store, class_names, progress=False)
    bad = Job("genie", "y", openmoji.path[0], "heart", "no-such-class", 0.8)
    with pytest.raises(KeyError, match="unknown class 'no-such-class'"):
        run_jobs(generator, [bad], store, class_names, progress=False)
    assert generator.counts.unet_steps == 0


def test_keys_do_not_depend_on_where_the_model_folder_lies(generator, openmoji):
    job = Job("genie", "1F600", openmoji.path[0], "face-smiling", "heart", 0.8)
    here = job_spec(generator, job, "p", "sha")
    moved = generate.GenieGenerator(generator.pipe, generator.recipe,
                                    {**generator.model_info, "model": "/elsewhere/genie-companion"})
    assert spec_key(job_spec(moved, job, "p", "sha")) == spec_key(here)
    other = generate.GenieGenerator(generator.pipe, generator.recipe,
                                    {**generator.model_info, "model_fingerprint": "0" * 16})
    assert spec_key(job_spec(other, job, "p", "sha")) != spec_key(here)


WORKER = """
import json, sys
from genie_utils import data, generate, pairing, pipeline
from genie_utils.jobs import run_jobs
from genie_utils.openmoji import load_openmoji
from genie_utils.recipe import Recipe
from genie_utils.store import Store
model, cache, store = sys.argv[1:4]
openmoji = load_openmoji(cache, 64, progress=False)
classes = ["animal-mammal", "heart", "face-smiling", "transport-ground"]
support = data.pd.concat([openmoji[openmoji.class_name == c].head(2) for c in classes], ignore_index=True)
pipe, info = pipeline.load_pipeline(model, device="cpu")
generator = generate.GenieGenerator(pipe, Recipe(num_inference_steps=4), info, batch_size=2)
jobs = pairing.episode_jobs(support, "genie")
run_jobs(generator, jobs, Store(store), data.class_display_names(openmoji), progress=False)
print(json.dumps({"made": generator.counts.vae_decodes}))
"""


def test_two_unsharded_workers_share_the_jobs(tiny_model_dir, openmoji, tmp_path):
    """Two processes on the same 24 jobs and store: every image made once, by one of them."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    cache = Path(openmoji.path[0]).parents[2]
    command = [sys.executable, "-c", WORKER, str(tiny_model_dir), str(cache), str(tmp_path / "store")]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    made = [json.loads(w.communicate(timeout=300)[0].strip().splitlines()[-1])["made"] for w in workers]
    assert all(w.returncode == 0 for w in workers)
    manifest = Store(tmp_path / "store").manifest()
    assert len(manifest) == 24 and sum(made) == 24 and min(made) > 0
    assert not list((tmp_path / "store" / "claims").iterdir())


def test_leftovers_of_a_killed_writer_go_on_the_next_run_of_that_job(fast_generator, openmoji, class_names, tmp_path):
    import json
    import os
    store = Store(tmp_path)
    jobs = small_jobs(openmoji)[:1]
    key = keyed_jobs(fast_generator, jobs, class_names)[0][0]
    image_leftover = tmp_path / "images" / "genie" / f"{TEMPORARY_PREFIX}{key}.png.x1y2"
    row_leftover = tmp_path / "rows" / key[:2] / f"{TEMPORARY_PREFIX}{key}.json.z3"
    other_leftover = tmp_path / "images" / "genie" / f"{TEMPORARY_PREFIX}{'f' * 20}.png.q"
    for path in (image_leftover, row_leftover, other_leftover):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    claim = tmp_path / "claims" / key  # the killed writer's claim: a process that no longer exists
    claim.parent.mkdir()
    dead = subprocess_pid()
    claim.write_text(json.dumps({"pid": dead, "host": os.uname().nodename, "time": 0}))
    rows = run_jobs(fast_generator, jobs, store, class_names, progress=False)
    assert len(rows) == 1 and store.has(key)
    assert not image_leftover.exists() and not row_leftover.exists() and not claim.exists()
    assert other_leftover.exists()  # another job's leftovers wait for that job


def subprocess_pid() -> int:
    import subprocess
    import sys
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(process.stdout)


def test_a_live_claim_is_respected_and_a_stored_key_never_replaced(tmp_path):
    import json
    import os
    from PIL import Image
    store = Store(tmp_path)
    other = tmp_path / "claims" / ("c" * 20)
    other.parent.mkdir(parents=True)
    from genie_utils.store import process_start
    other.write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename, "time": 0,
                                 "started": process_start(os.getppid())}))  # alive
    assert not store.claim("c" * 20)
    assert store.claim("d" * 20)
    first = store.put("d" * 20, Image.new("RGB", (4, 4), "red"), {"method": "genie", "n": 1})
    second = store.put("d" * 20, Image.new("RGB", (4, 4), "blue"), {"method": "genie", "n": 2})
    assert first == second and store.row("d" * 20)["n"] == 1
    assert store.load_image("d" * 20).getpixel((0, 0)) == (255, 0, 0)


def test_a_damaged_key_is_named_and_made_again(tmp_path):
    from PIL import Image
    from genie_utils.store import StoreDamageError
    store = Store(tmp_path)
    for key in ("a" * 20, "b" * 20, "c" * 20):
        store.put(key, Image.new("RGB", (4, 4), "red"), {"method": "genie"})
    (tmp_path / store.row("a" * 20)["file"]).unlink()              # image deleted, row left
    (tmp_path / store.row("b" * 20)["file"]).write_bytes(b"")      # image emptied
    with pytest.raises(StoreDamageError, match=r"aaaa.*\.png of key a+ is missing"):
        store.load_image("a" * 20)
    with pytest.raises(StoreDamageError, match="is empty"):
        store.image_file("b" * 20)
    for key in ("a" * 20, "b" * 20):
        with pytest.warns(UserWarning, match="will be made again"):
            assert not store.has(key)
        assert store.put(key, Image.new("RGB", (4, 4), "blue"), {"method": "genie"})  # made again
        assert store.load_image(key).getpixel((0, 0)) == (0, 0, 255)
    row = tmp_path / "rows" / "cc" / f"{'c' * 20}.json"
    row.write_text(row.read_text()[:10])                          # a truncated row file
    with pytest.raises(StoreDamageError, match=r"row .*cccc.*json is damaged \(not JSON\): delete it"):
        store.manifest()
    with pytest.warns(UserWarning, match="damaged"):
        assert not store.has("c" * 20)
    assert len(store.manifest()) == 2


def test_a_row_removed_by_another_worker_during_has_is_absent_not_an_error(tmp_path, monkeypatch):
    import warnings

    from PIL import Image
    store = Store(tmp_path)
    key = "e" * 20
    store.put(key, Image.new("RGB", (4, 4), "red"), {"method": "genie"})
    read = Store.row

    def row_after_another_worker_removed_it(self, k):  # the other worker acts between `has`'s two reads
        self._row_path(k).unlink(missing_ok=True)
        return read(self, k)

    monkeypatch.setattr(Store, "row", row_after_another_worker_removed_it)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # absent: no damage warning either
        assert store.has(key) is False


def test_a_claim_is_stale_when_its_pid_was_reused_or_its_holder_stopped_refreshing_it(tmp_path, monkeypatch):
    import json
    import os
    import time

    from genie_utils import store as store_module
    store = Store(tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    here, parent = os.uname().nodename, os.getppid()  # the parent: a live process of this host

    def hold(key, **holder):
        (claims / key).write_text(json.dumps({"time": 0, **holder}))

    hold("a" * 20, pid=parent, host=here, started=store_module.process_start(parent))
    assert not store.claim("a" * 20)  # alive, and the same process
    hold("b" * 20, pid=parent, host=here, started=store_module.process_start(parent) - 1)
    assert store.claim("b" * 20)  # the pid now belongs to another process
    hold("c" * 20, pid=1234, host="elsewhere")
    assert not store.claim("c" * 20)  # another host's claim, refreshed just now
    old = time.time() - store_module.CLAIM_STALE_SECONDS - 1
    os.utime(claims / ("c" * 20), (old, old))
    assert store.claim("c" * 20)  # not refreshed for CLAIM_STALE_SECONDS: its host stopped
    hold("d" * 20, pid=1234, host="elsewhere")
    monkeypatch.setenv("GENIE_CLAIM_STALE_SECONDS", "0.05")
    time.sleep(0.1)
    assert store.claim("d" * 20)  # the bound is the user's
    monkeypatch.setenv("GENIE_CLAIM_STALE_SECONDS", "soon")
    hold("e" * 20, pid=1234, host="elsewhere")
    with pytest.raises(ValueError, match="GENIE_CLAIM_STALE_SECONDS='soon' is not a time"):
        store.claim("e" * 20)


def test_held_claims_are_refreshed_while_their_images_are_made(tmp_path):
    import os
    import time
    store = Store(tmp_path)
    assert store.claim("f" * 20)
    claim = tmp_path / "claims" / ("f" * 20)
    os.utime(claim, (0, 0))
    with store.heartbeat(["f" * 20], every=0.02):
        time.sleep(0.2)
    assert time.time() - claim.stat().st_mtime < 5
    os.utime(claim, (0, 0))
    time.sleep(0.1)
    assert claim.stat().st_mtime == 0  # the heartbeat stopped with its block


def test_a_full_disk_is_named_with_the_file_and_the_fix_and_keeps_nothing(tmp_path):
    import errno

    class Full:
        def save(self, f, format):
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    store = Store(tmp_path)
    with pytest.raises(OSError, match=r"No space left on device while writing .*images/genie/e+\.png: free space"):
        store.put("e" * 20, Full(), {"method": "genie"})
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_worker_waiting_on_another_s_claims_says_so_then_takes_over_a_stale_one(tmp_path, monkeypatch, capsys):
    import json
    import os

    store = Store(tmp_path)
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / ("a" * 20)).write_text(json.dumps({"pid": 1234, "host": "elsewhere", "time": 0}))

    def sleep(seconds):  # while this worker waits, the other host goes away: its claim is not refreshed
        os.utime(tmp_path / "claims" / ("a" * 20), (0, 0))

    monkeypatch.setattr("genie_utils.store.time.sleep", sleep)
    batches = list(claimed_batches(store, ["a" * 20, "b" * 20], lambda item: item, 1))
    assert batches == [["b" * 20], ["a" * 20]]
    assert "waiting for 1 image that other workers are making (the first held by process 1234 on elsewhere)" \
        in capsys.readouterr().err


def test_an_image_that_is_no_complete_png_or_lies_outside_and_a_row_that_is_no_row_are_named_and_made_again(tmp_path):
    import json

    from PIL import Image
    from genie_utils.store import StoreDamageError
    store = Store(tmp_path / "s")
    keys = [c * 20 for c in "abcd"]
    for key in keys:
        store.put(key, Image.new("RGB", (4, 4), "red"), {"method": "genie"})
    (tmp_path / "s" / store.row(keys[0])["file"]).write_text("not a png, written over it")
    cut = tmp_path / "s" / store.row(keys[1])["file"]
    cut.write_bytes(cut.read_bytes()[:-20])
    row = store._row_path(keys[2])
    row.write_text(json.dumps({k: v for k, v in json.loads(row.read_text()).items() if k != "file"}))
    Image.new("RGB", (4, 4), "green").save(tmp_path / "outside.png")
    row = store._row_path(keys[3])
    row.write_text(json.dumps({**json.loads(row.read_text()), "file": str(tmp_path / "outside.png")}))
    for key, said in zip(keys, ("is not a complete PNG file", "is not a complete PNG file", "it names no image file",
                                "outside.png', outside the store")):
        with pytest.raises(StoreDamageError, match=said):
            store.image_file(key)
        with pytest.warns(UserWarning, match=said):
            assert not store.has(key)  # not counted as done: its row is removed ...
        store.put(key, Image.new("RGB", (4, 4), "blue"), {"method": "genie"})  # ... and the image made again
        assert store.load_image(key).getpixel((0, 0)) == (0, 0, 255)
    row = store._row_path(keys[0])
    row.write_text("[1, 2]")
    with pytest.raises(StoreDamageError, match=r"aaaa.*json is damaged \(a JSON list, not an object\): delete it"):
        store.manifest()
    row.write_text(json.dumps({"key": "../../escaped", "method": "genie", "file": "images/genie/x.png"}))
    with pytest.raises(StoreDamageError, match=r"is damaged \(its key '../../escaped' is not its file name\)"):
        store.manifest()


def test_a_bad_claim_bound_is_named_before_any_claim_and_claims_are_refreshed_within_the_bound(tmp_path, monkeypatch):
    import time

    store = Store(tmp_path)
    monkeypatch.setenv("GENIE_CLAIM_STALE_SECONDS", "soon")
    with pytest.raises(ValueError, match="GENIE_CLAIM_STALE_SECONDS='soon' is not a time"):
        next(claimed_batches(store, ["a" * 20], lambda item: item, 1))
    assert not (tmp_path / "claims").exists()
    monkeypatch.setenv("GENIE_CLAIM_STALE_SECONDS", "0.6")  # below the default heartbeat of 30 s
    assert store.claim("f" * 20)
    claim = tmp_path / "claims" / ("f" * 20)
    with store.heartbeat(["f" * 20]):  # refreshed every 0.2 s, a third of the bound: never stale while held
        time.sleep(1.0)
        assert time.time() - claim.stat().st_mtime < 0.6


def test_run_jobs_names_missing_class_names_an_unknown_class_and_an_unreadable_source_before_any_work(
        fast_generator, openmoji, class_names, tmp_path):
    import shutil

    from genie_utils.images import ImageReadError
    rows = openmoji[openmoji.class_name == "heart"].head(2)
    paths = [shutil.copy(path, tmp_path / f"{n}.png") for n, path in enumerate(rows.path)]
    jobs = [Job("genie", f"src-{n}", str(path), "heart", "animal-mammal", 0.8) for n, path in enumerate(paths)]
    store = Store(tmp_path / "store")
    with pytest.raises(TypeError, match=r"class_names must map each class to its display name .*got NoneType"):
        run_jobs(fast_generator, jobs, store, None, progress=False)
    with pytest.raises(KeyError, match=r"unknown class 'animal-mammal' The dataset has 1 classes .*: use one of them, "
                                        r"or add the class to class_names"):
        run_jobs(fast_generator, jobs, store, {"heart": "heart"}, progress=False)
    whole = (tmp_path / "1.png").read_bytes()
    (tmp_path / "1.png").write_bytes(whole[:len(whole) // 2])  # cut short after the dataset was read
    with pytest.raises(ImageReadError, match=r"source image src-1 at .*1.png cannot be used \(truncated or damaged"):
        run_jobs(fast_generator, jobs, store, class_names, batch_size=1, progress=False)
    assert not (tmp_path / "store" / "rows").exists()  # refused before the first image


def test_settings_are_recorded_per_method_and_a_damaged_record_is_named(tmp_path):
    from genie_utils.store import StoreDamageError

    store = Store(tmp_path / "s")
    assert store.settings() == {}  # no record: the CLI reads the rows instead
    store.write_settings("genie", {"noise_ratio": 0.8})
    store.write_settings("txt2img", {})  # a second method, as a run beside the first would: each its own file
    assert store.settings() == {"genie": {"noise_ratio": 0.8}, "txt2img": {}}
    with pytest.raises(ValueError, match="not a valid store folder name"):
        store.write_settings("../x", {})
    for damage in ("0.8", "[1, 2]", "{\"noise_ratio\":", "\xff"):
        (tmp_path / "s" / "methods" / "genie.json").write_text(damage, encoding="latin-1")
        with pytest.raises(StoreDamageError, match="genie.json is damaged .*: delete it"):
            store.settings()


@pytest.mark.parametrize("key", ["../../../x", "../" + "a" * 17, "A" * 20, "a" * 19, "a" * 21, "", "a/" + "b" * 18,
                                 None, 7])
def test_a_key_that_is_not_a_store_key_is_refused_before_any_file_is_touched(tmp_path, key):
    store = Store(tmp_path / "store")
    for call in (lambda: store.put(key, Image.new("RGB", (4, 4)), {"method": "genie"}), lambda: store.row(key),
                 lambda: store.has(key), lambda: store.claim(key), lambda: store.release(key),
                 lambda: store.image_file(key), lambda: store.put_row(key, {"file": "x.png"})):
        with pytest.raises(ValueError, match="is not a store key: a key is 20 lower-case hex digits"):
            call()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # not even the store folder was made


def test_a_store_root_that_is_empty_or_a_file_is_refused(tmp_path):
    for root in ("", "  ", None):
        with pytest.raises(ValueError, match="is no folder path"):
            Store(root)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        Store(tmp_path / "file")


def test_a_method_that_would_leave_the_images_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a valid store folder name"):
        Store(tmp_path).image_path("../genie", "a" * 20)


def test_a_live_pid_whose_claim_records_no_start_time_is_taken_over_at_once(tmp_path):
    """The claim cannot confirm that its pid is still its writer (the pid may be reused): on a host that records
    start times it is taken over without waiting for the claim to age."""
    import json
    import os

    from genie_utils import store as store_module
    store = Store(tmp_path)
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / ("a" * 20)).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename,
                                                              "time": 0}))
    assert store_module.process_start(os.getpid()) is not None  # Linux: /proc records start times
    assert store.claim("a" * 20)


def test_a_rerun_removes_the_claims_of_images_whose_rows_exist(tmp_path):
    """A run killed after writing a batch's rows but before releasing its claims leaves them; the next run's
    `claimed_batches` clears every claim whose row exists, and claims the rest as usual."""
    store = Store(tmp_path)
    done, todo = spec_key({"n": 1}), spec_key({"n": 2})
    store.put(done, Image.new("RGB", (4, 4)), {"method": "genie"})
    assert store.claim(done) and store.claim(todo)  # both left behind by the killed run (this very process)
    batches = list(claimed_batches(store, [done, todo], lambda key: key, 8))
    assert batches == [[todo]]
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == []
