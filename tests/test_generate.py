"""The generator: timesteps, noising, seeds, batching, errors. Tiny random-weight pipeline on CPU."""
import contextlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from genie_utils import generate
from genie_utils.data import ImageReadError

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
                        generator=torch.Generator().manual_seed(generate.pair_seed(0, ids[0], "animal-mammal")))
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


def test_seeds_are_per_pair_and_shared_across_noise_ratios(generator):
    seed = generate.pair_seed(0, "1F600", "heart")
    assert seed == generate.pair_seed(0, "1F600", "heart")
    assert len({seed, generate.pair_seed(1, "1F600", "heart"), generate.pair_seed(0, "1F603", "heart"),
                generate.pair_seed(0, "1F600", "office"), generate.pair_seed(0, "1F600", "heart", 1)}) == 5
    job = generate.Job("genie", "1F600", "p.png", "face-smiling", "heart", 0.5)
    specs = [generate.job_spec(generator, generate.Job(**{**job.__dict__, "noise_ratio": r}), "prompt", "sha")
             for r in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert len({s["seed"] for s in specs}) == 1
    assert torch.equal(generator.noise([seed]), generator.noise([seed]))


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, 2, "0.8"])
def test_noise_ratio_outside_zero_one_is_rejected(generator, openmoji, class_names, bad):
    paths, ids = sources(openmoji, 1)
    with pytest.raises(ValueError, match=r"noise ratio r must be in \(0, 1\]"):
        generate.genie(generator, paths, "heart", bad, class_names, source_ids=ids)


def test_unknown_class_names_close_matches(generator, openmoji, class_names):
    paths, ids = sources(openmoji, 1)
    with pytest.raises(KeyError, match=r"unknown class 'animal-mamal'.*animal-mammal"):
        generate.genie(generator, paths, "animal-mamal", 0.8, class_names, source_ids=ids)


def test_missing_and_corrupt_images_are_named(generator, tmp_path, class_names):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ImageReadError, match="broken.png.*corrupt"):
        generate.genie(generator, [corrupt], "heart", 0.8, class_names)
    with pytest.raises(ImageReadError, match="image not found.*nowhere.png"):
        generate.genie(generator, [tmp_path / "nowhere.png"], "heart", 0.8, class_names)


def test_wrong_model_paths_fail_with_the_fix(tmp_path):
    with pytest.raises(generate.ModelLoadError, match="no diffusers model folder at ./no/such/model"):
        generate.load_pipeline("./no/such/model")
    with pytest.raises(generate.ModelLoadError, match="not a diffusers pipeline folder"):
        generate.load_pipeline(tmp_path)


def test_unreachable_hub_id_fails_fast():
    """No retry loop: a hub that refuses connections gives a ModelLoadError in seconds."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0",
           "HF_HOME": os.environ.get("HF_HOME", "") or "/nonexistent-hf-home"}
    code = ("from genie_utils import generate\n"
            "try:\n generate.load_pipeline('example-org/no-such-model', device='cpu')\n"
            "except generate.ModelLoadError as e:\n print('ModelLoadError:', e)\n")
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - began < 60
    assert "ModelLoadError: cannot load the diffusion model 'example-org/no-such-model'" in result.stdout
    assert "local diffusers folder" in result.stdout


def test_loaded_pipeline_is_float32_on_cpu_and_records_its_fingerprint(tiny_pipeline, tiny_model_dir):
    pipe, info = tiny_pipeline
    assert pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"
    assert info["model_fingerprint"] == generate.folder_fingerprint(tiny_model_dir)
    assert len(info["model_fingerprint"]) == 16
    assert generate.default_dtype(torch.device("cuda")) == torch.float16


def test_recipe_defaults_follow_the_spec():
    recipe = generate.Recipe()
    assert (recipe.num_inference_steps, recipe.guidance_scale, recipe.negative_prompt) == (50, 7.5, "")
    assert recipe.prompt("house finch, linnet, Carpodacus mexicanus") == \
        "a photo of a house finch, linnet, Carpodacus mexicanus."
    assert {m: generate.METHODS[m].noise_ratio for m in generate.METHODS} == \
        {"genie": 0.8, "img2img_low": 0.3, "img2img_high": 0.7, "txt2img": 1.0}


def test_scheduler_is_dpm_solver_pp_order_two(generator):
    scheduler = generator.scheduler()
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert scheduler.config.algorithm_type == "dpmsolver++" and scheduler.config.solver_order == 2
    assert scheduler.config.beta_schedule == "scaled_linear"
