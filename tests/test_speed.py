"""Speed settings: applied as named, refused where they cannot run, and each device's default read back from the
throughput benchmark's records."""
import json

import pandas as pd
import pytest
import torch
from PIL import Image

from genie_utils import generate, speed

CPU = torch.device("cpu")


def record(folder, stamp, default, device=None, model="genie-companion"):
    path = folder / f"throughput-cpu-{stamp}.json"
    path.write_text(json.dumps({"device": device or speed.device_name(CPU), "rows": [{"model": model}],
                                "default": {"setting": default, "batch_size": 16, "images_per_second": 1.0}}))
    return path


def test_a_setting_becomes_the_default_only_when_its_gain_exceeds_the_timing_spread():
    row = {"batch_size": 16, "within_tolerance": True}
    table = pd.DataFrame([{**row, "setting": "plain", "images_per_second": 3.0, "slowest": 2.5, "fastest": 3.4},
                          {**row, "setting": "channels-last", "images_per_second": 3.8, "slowest": 3.3, "fastest": 4.1},
                          {**row, "setting": "bf16", "images_per_second": 9.0, "slowest": 9.0, "fastest": 9.0,
                           "within_tolerance": False}])
    assert speed.default_setting(table).setting == "plain"  # 3.3 < 3.4: within the drift
    table.loc[1, "slowest"] = 3.5
    assert speed.default_setting(table).setting == "channels-last"


def test_the_device_default_is_the_newest_record_of_this_device(tmp_path):
    assert speed.device_default(CPU)[0] == "plain"  # no records: built-in
    assert speed.device_default(CPU, tmp_path / "absent")[0] == "plain"
    record(tmp_path, "20261101-000000", "channels-last")
    record(tmp_path, "20261102-000000", "classic-attention")
    record(tmp_path, "20261103-000000", "compile", device="NVIDIA H100 80GB HBM3")  # another device
    record(tmp_path, "20261104-000000", "fp16", device=speed.device_name(CPU))  # cannot run here
    (tmp_path / "throughput-cpu-20261105-000000.json").write_text("{not json")  # a broken record
    setting, why = speed.device_default(CPU, tmp_path, "genie-companion")
    assert setting == "classic-attention" and "20261102" in why
    record(tmp_path, "20261106-000000", "channels-last", model="sd15-shaped")
    assert speed.device_default(CPU, tmp_path, "genie-companion")[0] == "classic-attention"  # this model's first
    assert speed.device_default(CPU, tmp_path, "my-model") == (
        "channels-last", "the default throughput-cpu-20261106-000000.json measured on this device (another model)")


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
    assert generate.manifest_row(made, {"noise_ratio": 0.8}, "a.png", None)["speed_setting"] == "channels-last"
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
    plain = generate.GenieGenerator.from_pretrained(tiny_model_dir, generate.Recipe(num_inference_steps=10), "cpu")
    fast = generate.GenieGenerator.from_pretrained(tiny_model_dir, generate.Recipe(num_inference_steps=10), "cpu",
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
