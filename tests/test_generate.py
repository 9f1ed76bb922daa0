"""The generator: timesteps, noising, seeds, batching, errors. Tiny random-weight pipeline on CPU."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from genie_utils import generate, pipeline, validation
from genie_utils.images import ImageReadError, load_image
from genie_utils.jobs import Job, job_spec, run_jobs
from genie_utils.recipe import METHODS, Recipe, kept_steps, pair_seed, profile_recipe

# SD v1.5's 50-step DPM-Solver++ schedule ("linspace" spacing), computed independently of diffusers.
SCHEDULE_50 = np.linspace(0, 999, 51).round()[::-1][:-1].astype(int).tolist()


@contextlib.contextmanager
def unet_calls(pipe):
    """Record (timestep, batch rows, input) of every UNet call."""
    calls = []

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        calls.append((int(timestep), sample.shape[0], sample.detach().clone()))

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def sources(openmoji, count, start=0):
    rows = openmoji.iloc[start:start + count]
    return rows.path.tolist(), rows.image_id.tolist()


@pytest.mark.parametrize("noise_ratio, steps, first", [(0.3, 15, 300), (0.5, 25, 500), (0.8, 40, 799), (1.0, 50, 999)])
def test_unet_calls_and_exact_timesteps(generator, openmoji, class_names, noise_ratio, steps, first):
    paths, ids = sources(openmoji, 2)
    with unet_calls(generator.pipe) as calls:
        generate.genie(generator, paths, "animal-mammal", noise_ratio, class_names, source_ids=ids)
    timesteps = [t for t, _, _ in calls]
    assert len(calls) == steps == int(50 * noise_ratio)
    assert timesteps == SCHEDULE_50[50 - steps:]
    assert timesteps[0] == first
    assert all(rows == 4 for _, rows, _ in calls)  # 2 images x (unconditional, conditional)
    assert generator.counts.unet_steps == 2 * steps


def test_source_is_vae_mode_noised_at_first_denoised_timestep(generator, openmoji, class_names):
    """Pins the two documented choices: latent = posterior mode x scaling factor, noised at t = 799
    (not 800) for r = 0.8, with the image's own seeded noise."""
    paths, ids = sources(openmoji, 1)
    image = Image.open(paths[0]).convert("RGB")
    with unet_calls(generator.pipe) as calls:
        generate.genie(generator, [image], "animal-mammal", 0.8, class_names, source_ids=ids)
    vae = generator.pipe.vae
    with torch.no_grad():
        mode = vae.encode(generator.preprocess([image])).latent_dist.mode() * vae.config.scaling_factor
    noise = torch.randn(generator.latent_shape,
                        generator=torch.Generator().manual_seed(pair_seed(0, ids[0], "animal-mammal")))
    alpha_bar = generator.scheduler().alphas_cumprod[799]
    expected = alpha_bar.sqrt() * mode[0] + (1 - alpha_bar).sqrt() * noise
    first_input = calls[0][2][0]  # unconditional branch of the first call
    torch.testing.assert_close(first_input, expected, atol=1e-5, rtol=1e-5)
    wrong_t = generator.scheduler().alphas_cumprod[800]
    assert not torch.allclose(first_input, wrong_t.sqrt() * mode[0] + (1 - wrong_t).sqrt() * noise, atol=1e-5)


def test_noise_ratio_one_ignores_the_source(generator, openmoji, class_names):
    paths, _ = sources(openmoji, 2)
    a = generate.genie(generator, [paths[0]], "heart", 1.0, class_names, source_ids=["x"], output_type="pt")
    b = generate.genie(generator, [paths[1]], "heart", 1.0, class_names, source_ids=["x"], output_type="pt")
    assert torch.equal(a, b)
    assert generator.counts.vae_encodes == 0
    c = generate.genie(generator, [paths[0]], "heart", 0.9, class_names, source_ids=["x"], output_type="pt")
    d = generate.genie(generator, [paths[1]], "heart", 0.9, class_names, source_ids=["x"], output_type="pt")
    assert not torch.allclose(c, d)  # below 1 the source shows through


def test_batch_size_and_order_do_not_change_images(generator, openmoji, class_names):
    paths, ids = sources(openmoji, 4, start=100)
    batch = generate.genie(generator, paths, "face-smiling", 0.8, class_names, source_ids=ids, output_type="pt")
    single = torch.cat([generate.genie(generator, [p], "face-smiling", 0.8, class_names, source_ids=[i],
                                       output_type="pt") for p, i in zip(paths, ids)])
    reverse = generate.genie(generator, paths[::-1], "face-smiling", 0.8, class_names, source_ids=ids[::-1],
                             output_type="pt")
    assert batch.shape == (4, 3, 64, 64)
    assert (batch - single).abs().max() < 1e-4
    assert (batch - reverse.flip(0)).abs().max() < 1e-4


def test_seeds_are_per_pair_golden_and_shared_across_noise_ratios(generator):
    # golden values: sha256("0|1F600|heart|0") read as a big-endian 63-bit integer; a change breaks every store key
    assert pair_seed(0, "1F600", "heart") == 5860225998515536740
    assert pair_seed(0, "1F600", "heart", 1) == 2424508658757225429
    assert len({pair_seed(1, "1F600", "heart"), pair_seed(0, "1F603", "heart"),
                pair_seed(0, "1F600", "office"), pair_seed(0, "1F600", "heart", 1),
                5860225998515536740}) == 5
    job = Job("genie", "1F600", "p.png", "face-smiling", "heart", 0.5)
    specs = [job_spec(generator, Job(**{**job.__dict__, "noise_ratio": r}), "prompt", "sha")
             for r in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert {s["seed"] for s in specs} == {5860225998515536740}
    expected = torch.randn(generator.latent_shape, generator=torch.Generator().manual_seed(5860225998515536740))
    assert torch.equal(generator.noise([5860225998515536740])[0], expected)


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, 2, "0.8", True, None])
def test_noise_ratio_outside_zero_one_is_rejected(generator, openmoji, class_names, bad):
    paths, ids = sources(openmoji, 1)
    with pytest.raises(ValueError, match=r"noise ratio r must be in \(0, 1\]"):
        generate.genie(generator, paths, "heart", bad, class_names, source_ids=ids)


def test_unknown_class_names_close_matches(generator, openmoji, class_names):
    paths, ids = sources(openmoji, 1)
    with pytest.raises(KeyError, match=r"unknown class 'animal-mamal'.*animal-mammal"):
        generate.genie(generator, paths, "animal-mamal", 0.8, class_names, source_ids=ids)
    # without class_names the class is its own prompt word, but a WordNet id never reaches a prompt
    with pytest.raises(ValueError, match=r"class 'n02085620' is a WordNet id and no class_names were given"):
        generate.genie(generator, paths, "n02085620", 0.8, source_ids=ids)
    with pytest.raises(ValueError, match="WordNet id"):
        generate.txt2img(generator, "n02085620", 1)


def test_missing_and_corrupt_images_are_named(generator, tmp_path, class_names):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ImageReadError, match="broken.png.*corrupt"):
        generate.genie(generator, [corrupt], "heart", 0.8, class_names)
    with pytest.raises(ImageReadError, match="image not found.*nowhere.png"):
        generate.genie(generator, [tmp_path / "nowhere.png"], "heart", 0.8, class_names)


def test_wrong_model_paths_fail_with_the_fix(tmp_path):
    with pytest.raises(pipeline.ModelLoadError, match="no diffusers model folder at ./no/such/model"):
        pipeline.load_pipeline("./no/such/model")
    with pytest.raises(pipeline.ModelLoadError, match="not a diffusers pipeline folder"):
        pipeline.load_pipeline(tmp_path)


def load_in_a_subprocess(model_id: str, **env) -> tuple[float, str]:
    """(seconds, stdout) of load_pipeline(model_id) in a fresh interpreter with `env` set."""
    code = ("from genie_utils import pipeline\n"
            f"try:\n pipeline.load_pipeline({model_id!r}, device='cpu')\n"
            "except pipeline.ModelLoadError as e:\n print('ModelLoadError:', e)\n")
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "0", **env},
                            capture_output=True, text=True, timeout=120)
    return time.perf_counter() - began, result.stdout


@contextlib.contextmanager
def local_hub(handler):
    """A hub served on this machine by `handler` (a BaseHTTPRequestHandler class); yields its endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_unreachable_hub_id_fails_fast():
    """No retry loop: a hub that refuses connections gives a ModelLoadError in seconds."""
    seconds, out = load_in_a_subprocess("example-org/no-such-model", HF_ENDPOINT="http://127.0.0.1:9",
                                        HF_HOME=os.environ.get("HF_HOME", "") or "/nonexistent-hf-home")
    assert seconds < 60
    assert "ModelLoadError: cannot load the diffusion model 'example-org/no-such-model'" in out
    assert "local diffusers folder" in out


def test_a_hub_that_answers_then_stalls_on_the_files_fails_within_the_bound(tmp_path):
    """The model-info call is answered; every file request then gets no answer at all: the load gives up once
    nothing has arrived for GENIE_HUB_TIMEOUT_SECONDS, instead of huggingface_hub's retries per file."""
    release = threading.Event()

    class StallingHub(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/api/models/"):
                body = json.dumps({"id": "example-org/stalling", "sha": "0" * 40,
                                   "siblings": [{"rfilename": "model_index.json"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                release.wait(120)  # a file request: no answer

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    with local_hub(StallingHub) as endpoint:
        try:
            seconds, out = load_in_a_subprocess("example-org/stalling", HF_ENDPOINT=endpoint,
                                                HF_HOME=str(tmp_path / "hf"), GENIE_HUB_TIMEOUT_SECONDS="2")
        finally:
            release.set()
    assert "ModelLoadError: cannot load the diffusion model 'example-org/stalling'" in out, out
    assert "made no progress for 2 s (GENIE_HUB_TIMEOUT_SECONDS" in out and seconds < 40


def test_loaded_pipeline_is_float32_on_cpu_and_records_its_fingerprint(tiny_pipeline, tiny_model_dir):
    pipe, info = tiny_pipeline
    assert pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"
    assert info["model_fingerprint"] == pipeline.folder_fingerprint(tiny_model_dir)
    assert len(info["model_fingerprint"]) == 16
    assert pipeline.default_dtype(torch.device("cuda")) == torch.float16


def test_recipe_defaults_follow_the_spec():
    recipe = Recipe()
    assert (recipe.num_inference_steps, recipe.guidance_scale, recipe.negative_prompt) == (50, 7.5, "")
    assert recipe.prompt("house finch, linnet, Carpodacus mexicanus") == \
        "a photo of a house finch, linnet, Carpodacus mexicanus."
    assert {m: METHODS[m].noise_ratio for m in METHODS} == \
        {"genie": 0.8, "img2img_low": 0.3, "img2img_high": 0.7, "txt2img": 1.0}


def test_scheduler_is_dpm_solver_pp_order_two(generator):
    scheduler = generator.scheduler()
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert scheduler.config.algorithm_type == "dpmsolver++" and scheduler.config.solver_order == 2
    assert scheduler.config.beta_schedule == "scaled_linear"


# --------------------------------------------------------------------------------------------------
# Loading: bounded time, the right culprit, paths relative to the project root


def test_a_silent_hub_fails_within_the_timeout(tmp_path):
    """A hub that accepts the connection and never answers: a ModelLoadError after the timeout, not a hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(16)], daemon=True).start()
    seconds, out = load_in_a_subprocess("stable-diffusion-v1-5/stable-diffusion-v1-5",
                                        HF_ENDPOINT=f"http://127.0.0.1:{server.getsockname()[1]}",
                                        HF_HOME=str(tmp_path / "hf"), GENIE_HUB_TIMEOUT_SECONDS="3")
    assert seconds < 60
    assert "did not answer within 3" in out and "local diffusers folder" in out
    server.close()


@pytest.fixture
def broken_copy(tiny_model_dir, tmp_path):
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_a_missing_weights_file_is_a_broken_local_folder(broken_copy):
    for weights in (broken_copy / "unet").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(pipeline.ModelLoadError, match=r"broken local model folder: no weights file in .*unet") as error:
        pipeline.load_pipeline(broken_copy, device="cpu")
    assert "hub" not in str(error.value)


def test_a_truncated_weights_file_is_named(broken_copy):
    weights = next((broken_copy / "vae").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(pipeline.ModelLoadError, match=rf"weights file .*vae/{weights.name} is corrupt or truncated"):
        pipeline.load_pipeline(broken_copy, device="cpu")


def test_a_corrupt_model_index_is_named(broken_copy):
    (broken_copy / "model_index.json").write_text('{"_class_name": ')
    with pytest.raises(pipeline.ModelLoadError, match=r"broken local model folder: .*model_index.json is not valid JSON"):
        pipeline.load_pipeline(broken_copy, device="cpu")
    (broken_copy / "model_index.json").unlink()
    with pytest.raises(pipeline.ModelLoadError, match="not a diffusers pipeline folder"):
        pipeline.load_pipeline(broken_copy, device="cpu")


def test_relative_model_paths_resolve_against_the_project_root(monkeypatch):
    from genie_utils import profiles
    root = profiles.project_root()
    monkeypatch.chdir(root / "notebooks")
    assert pipeline.model_location("models/genie-companion") == ("folder", (root / "models/genie-companion").resolve())
    assert pipeline.model_location("stable-diffusion-v1-5/stable-diffusion-v1-5") == ("hub", None)
    with pytest.raises(pipeline.ModelLoadError, match=r"no folder .*models/absent: .*models holds \[.*'genie-companion'"):
        pipeline.model_location("./models/absent")


def test_a_typo_inside_a_local_folder_is_no_hub_id_and_lists_the_folder(monkeypatch, tmp_path):
    """`models/nope` names a folder under `models/`, which exists: it is said at once, with what `models/` holds."""
    from genie_utils import profiles
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pipeline.ModelLoadError, match=r"no folder .*models/nope: .*models holds \[.*'genie-companion'") \
            as error:
        pipeline.model_location("models/nope")
    assert "hub" in str(error.value) and str(profiles.project_root()) in str(error.value)
    assert pipeline.model_location("example-org/example-model") == ("hub", None)  # no local folder example-org


def test_a_hub_that_refuses_is_said_with_its_cause(monkeypatch):
    from huggingface_hub import HfApi, constants

    def refuse(self, model_id, timeout=None):
        raise ConnectionError("connection refused by the test")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "model_info", refuse)
    monkeypatch.setattr(pipeline, "_from_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("not cached")))
    with pytest.raises(pipeline.ModelLoadError, match=r"\(ConnectionError: connection refused by the test\)"):
        pipeline.load_pipeline("example-org/example-model", device="cpu")


def test_a_flipped_bit_in_a_weights_file_is_named_with_the_fix(broken_copy):
    pipeline.write_checksums(broken_copy)
    pipeline.load_pipeline(broken_copy, device="cpu")  # as written: loads
    weights = next((broken_copy / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # a bit of the last weight: the file still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(pipeline.ModelLoadError, match=rf"{weights.name} does not have the sha256 that SHA256SUMS "
                                                      rf"records .* git checkout -- .*unet/{weights.name}"):
        pipeline.load_pipeline(broken_copy, device="cpu")


def test_the_shipped_model_carries_the_sha256_of_each_weight_file():
    from genie_utils import profiles
    folder = profiles.project_root() / "models" / "genie-companion"
    listed = dict(line.split("  ")[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    weights = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors"))
    assert sorted(listed) == weights
    from genie_utils.images import file_sha256
    assert all(file_sha256(folder / name) == digest for name, digest in listed.items())


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_every_output_type_gives_one_image_per_source(generator, openmoji, class_names, output_type):
    paths = list(openmoji.path[:3])
    out = generate.genie(generator, paths, "heart", 1.0, class_names, output_type=output_type)
    shapes = {"pil": lambda o: (len(o), o[0].size), "np": lambda o: (o.shape[0], o.shape[1:3]),
              "pt": lambda o: (o.shape[0], tuple(o.shape[2:]))}
    assert shapes[output_type](out) == (3, (64, 64))


def test_an_unknown_output_type_is_named_before_any_work(generator, openmoji, class_names):
    with pytest.raises(ValueError, match=r"output_type 'numpy' is not one of \['pil', 'np', 'pt'\]"):
        generate.genie(generator, list(openmoji.path[:1]), "heart", 0.8, class_names, output_type="numpy")
    assert generator.counts.unet_steps == 0


# --------------------------------------------------------------------------------------------------
# Inputs checked at the boundary


def test_noise_ratios_are_normalised_numpy_accepted_booleans_refused(generator):
    assert validation.check_noise_ratio(np.float32(0.8)) == 0.8 and type(validation.check_noise_ratio(np.float64(1))) is float
    one, one_float = (Job("genie", "a", "p.png", "x", "y", r) for r in (1, 1.0))
    assert one == one_float
    assert job_spec(generator, one, "p", "s") == job_spec(generator, one_float, "p", "s")
    with pytest.raises(ValueError, match=r"noise ratio r must be in \(0, 1\], got True"):
        Job("genie", "a", "p.png", "x", "y", True)


def test_a_ratio_that_runs_no_step_is_an_error(generator):
    with pytest.raises(ValueError, match=r"r = 0.01 with 50 steps runs no denoising step.*r >= 0.02"):
        generator.timesteps(0.01)
    assert len(generator.timesteps(0.02)) == 1


def test_kept_steps_agree_with_diffusers_img2img(generator):
    """r keeps int(steps * r) steps, as diffusers' own img2img `get_timesteps` (r = 0.58: 28, not 29)."""
    pipe = generator.pipe
    pipe.scheduler = generator.scheduler()
    for r in (0.3, 0.58, 0.7, 0.8, 0.9, 1.0):
        pipe.scheduler.set_timesteps(50)
        theirs, count = pipe.get_timesteps(50, r, "cpu")
        assert kept_steps(50, r) == count == len(generator.timesteps(r))
        assert generator.timesteps(r).tolist() == theirs.tolist()
    assert kept_steps(50, 0.58) == 28


def test_the_timestep_spacing_is_pinned_whatever_the_model_says(tiny_pipeline):
    from diffusers import DPMSolverMultistepScheduler
    pipe, info = tiny_pipeline
    original = pipe.scheduler
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(original.config, timestep_spacing="trailing",
                                                             use_karras_sigmas=True)
    try:
        generator = generate.GenieGenerator(pipe, Recipe(), info)
        assert generator.timesteps(1.0).tolist() == SCHEDULE_50
    finally:
        pipe.scheduler = original


def test_unknown_methods_and_bad_batch_sizes_are_refused(generator, openmoji, class_names, tmp_path):
    from genie_utils.store import Store
    with pytest.raises(ValueError, match=r"unknown method '../../escape'"):
        Job("../../escape", "a", openmoji.path[0], "heart", "heart", 0.8)
    with pytest.raises(ValueError, match="not a valid store folder name"):
        Store(tmp_path / "store").put("e" * 20, Image.new("RGB", (4, 4)), {"method": "../../escape"})
    assert not list(tmp_path.rglob("*.png"))
    job = Job("genie", "a", openmoji.path[0], "heart", "animal-mammal", 0.8)
    for bad in (0, 2.5, True, "8"):
        with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {bad!r}"):
            run_jobs(generator, [job], Store(tmp_path / "store"), class_names, batch_size=bad, progress=False)
    with pytest.raises(ValueError, match="no source images given"):
        generate.genie(generator, [], "heart", 0.8, class_names)
    assert generator.counts.unet_steps == 0


def test_transparent_sources_are_composited_on_white(generator, tmp_path):
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent black background
    image.paste((255, 0, 0, 255), (16, 16, 48, 48))
    image.save(tmp_path / "emoji.png")
    for loaded in (load_image(tmp_path / "emoji.png"), generate._as_images([image])[0]):
        assert loaded.mode == "RGB" and loaded.getpixel((0, 0)) == (255, 255, 255)
        assert loaded.getpixel((32, 32)) == (255, 0, 0)
    pixels = generator.preprocess(generate._as_images([image]))
    assert pixels[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]  # white, not black (-1)


def test_tiny_and_elongated_sources_warn(generator):
    with pytest.warns(UserWarning, match="upscaled more than 4x"):
        generator.preprocess([Image.new("RGB", (12, 12))])
    with pytest.warns(UserWarning, match="aspect ratio over 2.5: the centre crop keeps 33%"):
        generator.preprocess([Image.new("RGB", (192, 64))])


def test_preprocessing_is_resize_shorter_side_centre_crop_and_scale(generator):
    """Checked against arithmetic done here: a 96x64 ramp needs no resize, only a centre crop of columns
    16..79; a 128x128 flat colour is resized to 64x64 without changing its value."""
    ramp = np.tile(np.arange(96, dtype=np.uint8)[None, :, None] * 2, (64, 1, 3))
    pixels = generator.preprocess([Image.fromarray(ramp)])
    assert pixels.shape == (1, 3, 64, 64)
    expected = torch.from_numpy(ramp[:, 16:80].astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    torch.testing.assert_close(pixels[0], expected, atol=1e-6, rtol=0)
    flat = generator.preprocess([Image.new("RGB", (128, 128), (200, 100, 50))])
    torch.testing.assert_close(flat[0, :, 10, 10], torch.tensor([200, 100, 50]) / 127.5 - 1, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# One seed path, one batch size, one prompt cache


def test_direct_calls_give_the_images_run_jobs_stores(fast_generator, openmoji, class_names, tmp_path):
    from genie_utils.store import Store
    rows = openmoji[openmoji.class_name == "heart"].head(3)
    jobs = [Job("genie", r.image_id, r.path, r.class_name, "animal-mammal", 0.8) for r in rows.itertuples()]
    jobs += [Job("txt2img", r.image_id, r.path, r.class_name, r.class_name, 1.0, 2) for r in rows.itertuples()]
    stored = run_jobs(fast_generator, jobs, Store(tmp_path), class_names, batch_size=3, progress=False)
    direct = generate.genie(fast_generator, list(rows.path), "animal-mammal", 0.8, class_names,
                            source_ids=list(rows.image_id))
    direct += generate.txt2img(fast_generator, "heart", 3, class_names, source_ids=list(rows.image_id), variant=2)
    for key, image in zip(stored.key, direct):
        assert np.abs(np.asarray(Store(tmp_path).load_image(key), int) - np.asarray(image, int)).max() <= 1


def test_the_generator_batch_size_is_the_default(tiny_pipeline, openmoji, class_names, tmp_path):
    from genie_utils.store import Store
    pipe, info = tiny_pipeline
    generator = generate.GenieGenerator(pipe, Recipe(num_inference_steps=10), info, batch_size=3)
    rows = openmoji.head(7)
    jobs = [Job("genie", r.image_id, r.path, r.class_name, "heart", 0.8) for r in rows.itertuples()]
    with unet_calls(pipe) as calls:
        run_jobs(generator, jobs, Store(tmp_path), class_names, progress=False)
    assert sorted({rows for _, rows, _ in calls}) == [2, 6]  # batches of 3, 3, 1 (x2 for guidance)
    from genie_utils import profiles
    assert profiles.load_profile("smoke")["generation"]["batch_size"] == 8
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        generate.GenieGenerator(pipe, Recipe(), info, batch_size=0)


def test_the_prompt_cache_is_keyed_by_prompt_text(generator):
    first, _ = generator.prompt_embeddings(["heart"])
    generator.recipe = Recipe(prompt_template="a drawing of a {}.")
    second, _ = generator.prompt_embeddings(["heart"])
    reference, _ = generator.pipe.encode_prompt(["a drawing of a heart."], "cpu", 1, True, negative_prompt=[""])
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, reference)


# --------------------------------------------------------------------------------------------------
# Settings and model folders that used to fail late (or not at all): one clear error before any work


@pytest.mark.parametrize("settings, message", [
    (dict(prompt_template="{0} {1}"), r"prompt template '\{0\} \{1\}' needs one placeholder for the class name, "
                                      r"found \{0\}, \{1\}: write exactly one \{\}"),
    (dict(prompt_template="a photo"), r"prompt template 'a photo' needs one placeholder .* found none"),
    (dict(prompt_template="a {name}"), r"needs one placeholder for the class name, found \{name\}"),
    (dict(prompt_template="a photo of a {"), r"prompt template 'a photo of a \{' is not a format string"),
    (dict(prompt_template="a {:d}"), r"prompt template 'a \{:d\}' cannot format a class name"),
    (dict(num_inference_steps=0), r"number of inference steps must be a positive integer, got 0"),
    (dict(num_inference_steps=-5), r"number of inference steps must be a positive integer, got -5"),
    (dict(guidance_scale=float("nan")), r"guidance scale must be a finite number >= 0, got nan: 7.5 is the official"),
    (dict(guidance_scale=float("inf")), r"guidance scale must be a finite number >= 0, got inf"),
    (dict(guidance_scale=-1.0), r"guidance scale must be a finite number >= 0, got -1.0"),
    (dict(height=63), r"height = 63 px is not a positive multiple of 8 .* use 56 or 64, or None"),
    (dict(width=4), r"width = 4 px is not a positive multiple of 8 .* use 8, or None"),
    (dict(seed="abc"), r"seed must be a non-negative integer, got 'abc'"),
    (dict(seed=-1), r"seed must be a non-negative integer, got -1"),
    (dict(seed=1.5), r"seed must be a non-negative integer, got 1.5"),
    (dict(seed=True), r"seed must be a non-negative integer, got True"),
    (dict(negative_prompt=None), r"negative_prompt must be text"),
])
def test_bad_recipe_settings_are_refused_when_the_recipe_is_made(settings, message):
    with pytest.raises(ValueError, match=message):
        Recipe(**settings)


def test_valid_recipe_settings_pass_unchanged_and_a_profile_resolution_is_checked():
    recipe = Recipe(prompt_template="{0}, a {{kind}} of thing", guidance_scale=0, height=64, width=512)
    assert recipe.prompt("heart") == "heart, a {kind} of thing" and recipe.guidance_scale == 0  # store keys as given
    assert not recipe.guides_at(500)
    from genie_utils import profiles
    profile = profiles.load_profile("smoke")
    profile["dataset"]["resolution"] = 63
    with pytest.raises(ValueError, match=r"height = 63 px .* use 56 or 64"):
        profile_recipe(profile)


@pytest.mark.parametrize("text, seconds", [(None, 20.0), ("", 20.0), ("3", 3.0), ("0.5", 0.5)])
def test_the_hub_timeout_variable_takes_positive_numbers(text, seconds):
    assert pipeline.hub_timeout_seconds(text) == seconds


@pytest.mark.parametrize("text", ["abc", "0", "-1", "nan", "inf"])
def test_a_bad_hub_timeout_variable_is_named_with_the_valid_values(text):
    with pytest.raises(ValueError, match=rf"GENIE_HUB_TIMEOUT_SECONDS='{text}' is not a timeout: set it to a "
                                         r"positive number of seconds"):
        pipeline.hub_timeout_seconds(text)


def test_a_bad_hub_timeout_variable_is_a_usage_error_of_the_command_line(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "cat" / "0.png")
    result = subprocess.run([sys.executable, "-m", "genie_utils.cli", "generate", str(tmp_path / "data"),
                             "--store", str(tmp_path / "s"), "--dry-run"],
                            env={**os.environ, "GENIE_HUB_TIMEOUT_SECONDS": "abc"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "GENIE_HUB_TIMEOUT_SECONDS='abc' is not a timeout" in result.stderr and "positive number" in result.stderr
    assert not (tmp_path / "s").exists()


def test_swapped_unet_and_vae_weights_are_named(broken_copy):
    unet = broken_copy / "unet" / "diffusion_pytorch_model.safetensors"
    vae = broken_copy / "vae" / "diffusion_pytorch_model.safetensors"
    unet.rename(broken_copy / "swap")
    vae.rename(unet)
    (broken_copy / "swap").rename(vae)
    with pytest.raises(pipeline.ModelLoadError, match=r"broken local model folder: the weights in .*unet lack (\d+) "
                                                      r"of the \1 parameters its config.json describes .*they are "
                                                      r"the vae's: are the unet and vae weights files swapped\?"):
        pipeline.load_pipeline(broken_copy, device="cpu")


def test_a_model_index_without_a_pipeline_or_its_parts_is_named(broken_copy):
    (broken_copy / "model_index.json").write_text("{}")
    with pytest.raises(pipeline.ModelLoadError, match=r"broken local model folder: .*model_index.json names no "
                                                      r"pipeline class .*Restore the file"):
        pipeline.load_pipeline(broken_copy, device="cpu")
    (broken_copy / "model_index.json").write_text('{"_class_name": "StableDiffusionImg2ImgPipeline"}')
    with pytest.raises(pipeline.ModelLoadError, match=r"model_index.json lists no unet, vae, text_encoder, "
                                                      r"tokenizer, scheduler"):
        pipeline.load_pipeline(broken_copy, device="cpu")


def test_a_missing_tokenizer_or_vocabulary_is_named(broken_copy):
    import shutil
    (broken_copy / "tokenizer" / "tokenizer.json").unlink()  # tokenizer_config.json alone: no vocabulary
    with pytest.raises(pipeline.ModelLoadError, match=r"broken local model folder: .*tokenizer holds no vocabulary"):
        pipeline.load_pipeline(broken_copy, device="cpu")
    shutil.rmtree(broken_copy / "tokenizer")
    with pytest.raises(pipeline.ModelLoadError, match=r"broken local model folder: .* has no tokenizer folder, "
                                                      r"which model_index.json lists \(CLIPTokenizer\)"):
        pipeline.load_pipeline(broken_copy, device="cpu")


def test_old_attention_parameter_names_still_load(broken_copy):
    """diffusers renames the query/key/value/proj_attn weights of old VAE checkpoints (SD v1.5's era) on loading:
    the weights check must not refuse them."""
    from safetensors.torch import load_file, save_file
    file = broken_copy / "vae" / "diffusion_pytorch_model.safetensors"
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    weights = {}
    for key, value in load_file(file).items():
        for new, legacy in old.items():
            if ".attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{legacy}.")
        weights[key] = value
    assert any(".query." in key for key in weights)
    save_file(weights, file)
    pipe, _ = pipeline.load_pipeline(broken_copy, device="cpu")
    assert pipe.vae.encoder.mid_block.attentions[0].to_q.weight.device.type == "cpu"


def test_a_missing_part_config_is_named_with_the_fix(broken_copy):
    (broken_copy / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(pipeline.ModelLoadError, match=r"broken local model folder: .*scheduler has no "
                                                      r"scheduler_config.json, which loading the scheduler needs. "
                                                      r"Restore it"):
        pipeline.load_pipeline(broken_copy, device="cpu")


def test_a_hub_error_is_said_on_one_line_with_the_fix(tmp_path):
    """huggingface_hub's messages span several lines; the ModelLoadError says one, ending with the fix."""
    class MissingFiles(BaseHTTPRequestHandler):  # answers the model info, then 404 for every file
        def answer(self, body):
            found = self.path.startswith("/api/models/")
            content = (json.dumps({"id": "example-org/missing", "sha": "0" * 40,
                                   "siblings": [{"rfilename": "model_index.json"}]}).encode() if found
                       else b"Entry not found")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json" if found else "text/plain")
            self.send_header("Content-Length", str(len(content)))
            if not found:
                self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            if body:
                self.wfile.write(content)

        def do_GET(self):
            self.answer(True)

        def do_HEAD(self):
            self.answer(False)

        def log_message(self, *args):
            pass

    with local_hub(MissingFiles) as endpoint:
        _, out = load_in_a_subprocess("example-org/missing", HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"),
                                      GENIE_HUB_TIMEOUT_SECONDS="5")
    said = [line for line in out.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("ModelLoadError: cannot load the diffusion model 'example-org/missing'")
    assert "404" in said[0] and said[0].endswith("point the profile's [generation] model at a local diffusers folder.")


def test_txt2img_names_a_count_that_is_no_positive_integer(generator):
    for count in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=rf"count must be a positive integer \(the number of images to make\), "
                                             rf"got {count!r}"):
            generate.txt2img(generator, "heart", count)


@pytest.mark.parametrize("variant", [-1, "a", 1.0, True])
def test_a_job_variant_that_is_no_count_is_refused(variant):
    from genie_utils.jobs import Job
    with pytest.raises(ValueError, match=rf"a job's variant .* must be an integer of at least 0, got {variant!r}"):
        Job("img2img_low", "a", "a.png", "boat", "boat", 0.3, variant)


@pytest.mark.parametrize("field", ["source_id", "target_class"])
def test_a_job_without_a_source_id_or_target_class_is_refused(field):
    from genie_utils.jobs import Job
    values = dict(method="genie", source_id="a", source_path="a.png", source_class="boat", target_class="apple",
                  noise_ratio=0.8)
    with pytest.raises(ValueError, match=rf"a job's {field} must be a non-empty name, got ' '"):
        Job(**{**values, field: " "})


@pytest.mark.parametrize("target", ["", "   "])
def test_an_empty_class_never_becomes_a_prompt(generator, openmoji, target):
    with pytest.raises(ValueError, match=r"is no class name: the prompt would read 'a photo of a"):
        generate.genie(generator, list(openmoji.path[:1]), target)
    assert generator.counts.unet_steps == 0
