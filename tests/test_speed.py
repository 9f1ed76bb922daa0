"""Speed settings: applied as named, refused where they cannot run, and each device's default read back from the
throughput benchmark's records."""
import json

import pandas as pd
import pytest
import torch
from PIL import Image

from genie_utils import generate, speed
from genie_utils.jobs import manifest_row
from genie_utils.recipe import Recipe

CPU = torch.device("cpu")


def record(folder, stamp, default, device=None, model="genie-companion"):
    path = folder / f"throughput-cpu-{stamp}.json"
    path.write_text(json.dumps({"device": device or speed.device_name(CPU), "rows": [{"model": model}],
                                "default": default}))
    return path


def timings(setting, batch_size, median, slowest, fastest, within_tolerance=True):
    return {"setting": setting, "batch_size": batch_size, "images_per_second": median, "slowest": slowest,
            "fastest": fastest, "within_tolerance": within_tolerance}


def test_a_setting_becomes_the_default_only_when_its_gain_exceeds_the_timing_spread():
    rows = [timings("plain", 16, 3.0, 2.5, 3.4), timings("channels-last", 16, 3.8, 3.3, 4.1),
            timings("bf16", 16, 9.0, 9.0, 9.0, within_tolerance=False),
            timings("compile", 16, 8.0, 7.9, 8.1)]  # compiled: named, never made the default
    assert speed.default_setting(pd.DataFrame(rows), "plain") == "plain"  # 3.3 < 3.4: within the drift
    rows[1] = timings("channels-last", 16, 3.8, 3.5, 4.1)
    assert speed.default_setting(pd.DataFrame(rows), "plain") == "channels-last"
    # at every batch size both were timed at: level with plain at 32 keeps plain
    rows += [timings("plain", 32, 3.1, 3.0, 3.2), timings("channels-last", 32, 3.2, 3.1, 3.3)]
    assert speed.default_setting(pd.DataFrame(rows), "plain") == "plain"
    rows[-1] = timings("channels-last", 32, 3.6, 3.5, 3.7)
    rows.append(timings("classic-attention", 16, 3.6, 3.45, 3.7))  # also beats plain, by less
    assert speed.default_setting(pd.DataFrame(rows), "plain") == "channels-last"


def test_a_run_without_the_built_in_default_decides_nothing(tmp_path):
    rows = pd.DataFrame([timings("plain", 16, 1.0, 1.0, 1.0), timings("fp16-channels-last", 16, 5.0, 5.0, 5.0)])
    assert speed.default_setting(rows, "fp16") is None  # a GPU run without fp16: not a reason to leave fp16
    record(tmp_path, "20261101-000000", None)
    assert speed.device_default(CPU, tmp_path, "genie-companion")[0] == "plain"


def test_the_device_default_is_the_newest_record_of_this_model_on_this_device(tmp_path):
    assert speed.device_default(CPU)[0] == "plain"  # no records: built-in
    assert speed.device_default(CPU, tmp_path / "absent")[0] == "plain"
    record(tmp_path, "20261101-000000", "channels-last")
    record(tmp_path, "20261102-000000", "classic-attention")
    record(tmp_path, "20261103-000000", "fused-qkv", device="NVIDIA H100 80GB HBM3")  # another device
    record(tmp_path, "20261104-000000", "fp16", device=speed.device_name(CPU))  # cannot run here
    record(tmp_path, "20261105-000000", "channels-last", model="sd15-shaped (random weights)")  # another model
    (tmp_path / "throughput-cpu-20261106-000000.json").write_text("{not json")  # a broken record
    assert speed.device_default(CPU, tmp_path, "genie-companion") == (
        "classic-attention", "measured: throughput-cpu-20261102-000000.json")
    setting, why = speed.device_default(CPU, tmp_path, "my-model")
    assert setting == "plain" and why == "built-in default on cpu: no benchmark of my-model here"
    if not torch.cuda.is_available():  # a GPU named on a machine without one: the built-in, no error
        assert speed.device_default(torch.device("cuda"), tmp_path, "genie-companion")[0] == "fp16"


def test_plain_settings_by_dtype_and_unknown_or_impossible_settings_are_refused():
    assert [speed.plain_setting(d) for d in (torch.float32, torch.float16, torch.bfloat16)] == ["plain", "fp16", "bf16"]
    with pytest.raises(ValueError, match="unknown speed setting 'fast'; known: plain"):
        speed.check_setting("fast")
    with pytest.raises(ValueError, match="fp16-channels-last needs a GPU"):
        speed.check_setting("fp16-channels-last", CPU)
    with pytest.raises(ValueError, match="no speed setting runs torch.float64"):
        speed.plain_setting(torch.float64)


def test_the_generator_loads_with_the_named_or_the_recorded_setting(tiny_model_dir, tmp_path):
    made = generate.GenieGenerator.from_pretrained(tiny_model_dir, device="cpu", speed="channels-last")
    weight = next(p for p in made.pipe.unet.parameters() if p.dim() == 4)
    assert made.speed == "channels-last" and weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    assert manifest_row(made, {"noise_ratio": 0.8}, "a.png", None)["speed_setting"] == "channels-last"
    assert generate.GenieGenerator.from_pretrained(tiny_model_dir, device="cpu").speed == "plain"
    record(tmp_path, "20261101-000000", "classic-attention", model=tiny_model_dir.name)
    recorded = generate.GenieGenerator.from_pretrained(tiny_model_dir, device="cpu", benchmarks=tmp_path)
    processors = {type(p).__name__ for p in recorded.pipe.unet.attn_processors.values()}
    assert recorded.speed == "classic-attention" and processors == {"AttnProcessor"}
    # an explicit dtype means the plain path in it, whatever the records say
    assert generate.GenieGenerator.from_pretrained(tiny_model_dir, device="cpu", dtype=torch.float32,
                                                   benchmarks=tmp_path).speed == "plain"


def test_settings_are_checked_before_the_model_loads():
    with pytest.raises(ValueError, match="fp16 needs a GPU"):  # not the missing folder's error: nothing loaded
        generate.GenieGenerator.from_pretrained("./no-such-model", device="cpu", speed="fp16")
    with pytest.raises(ValueError, match="speed setting bf16 runs torch.bfloat16, not the dtype torch.float32"):
        generate.GenieGenerator.from_pretrained("./no-such-model", device="cpu", dtype=torch.float32, speed="bf16")


@pytest.mark.parametrize("name", ["fused-qkv", "channels-last"])
def test_float32_settings_make_the_plain_images_within_one_grey_level(tiny_model_dir, name):
    plain = generate.GenieGenerator.from_pretrained(tiny_model_dir, Recipe(num_inference_steps=10), "cpu")
    fast = generate.GenieGenerator.from_pretrained(tiny_model_dir, Recipe(num_inference_steps=10), "cpu",
                                                   speed=name)
    sources = [Image.new("RGB", (64, 64), colour) for colour in ("red", "teal", "gold")]
    images = [generate.genie(g, sources, "heart", 0.8, source_ids=["a", "b", "c"], output_type="pt")
              for g in (plain, fast)]
    assert images[0].shape == (3, 3, 64, 64)
    assert float((images[0] - images[1]).abs().max()) <= speed.TOLERANCE["float32"]
    processors = {type(p).__name__ for p in fast.pipe.unet.attn_processors.values()}
    weight = next(p for p in fast.pipe.vae.parameters() if p.dim() == 4)
    assert (processors == {"FusedAttnProcessor2_0"}) == (name == "fused-qkv")  # the setting really ran
    assert weight.is_contiguous(memory_format=torch.channels_last) == (name == "channels-last")
