"""Shared fixtures: a tiny random-weight SD-style pipeline saved as a diffusers folder, the embedded dataset
rendered once per test session, an emoji style served from a local folder instead of the npm registry, and a tiny
backbone that counts what it embeds."""
import base64
import hashlib
import io
import tarfile

import pytest
import torch
from PIL import Image
from torch import nn

from genie_utils import companion, data, features, generate, pipeline
from genie_utils.emoji_styles import EMOJI_STYLES
from genie_utils.openmoji import load_openmoji
from genie_utils.recipe import Recipe


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A StableDiffusionImg2ImgPipeline with SD v1.5's structure and schedule, random weights, on disk."""
    folder = tmp_path_factory.mktemp("tiny-sd")
    companion.build_pipeline(companion.TINY, seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_dir):
    return pipeline.load_pipeline(tiny_model_dir, device="cpu")


@pytest.fixture
def generator(tiny_pipeline):
    """A fresh generator (own counters and prompt cache) on the shared pipeline, 64 px, 50 steps."""
    pipe, info = tiny_pipeline
    return generate.GenieGenerator(pipe, Recipe(), info)


@pytest.fixture(scope="session")
def openmoji(tmp_path_factory):
    """The embedded dataset at 64 px, rendered into a temporary cache (about 10 s)."""
    return load_openmoji(tmp_path_factory.mktemp("openmoji"), 64, progress=False)


@pytest.fixture
def fake_emoji_style(tmp_path, monkeypatch):
    """Registers emoji style "fake", served from a file:// registry under tmp_path. Call it with the tarball's
    files (name -> bytes, or a PIL image stored as PNG) and optionally the sha512 to pin instead of the true one."""
    def make(files: dict, integrity: str | None = None):
        registry = tmp_path / "registry"
        tarball = registry / "emoji-datasource-fake" / "-" / "emoji-datasource-fake-1.0.0.tgz"
        tarball.parent.mkdir(parents=True)
        with tarfile.open(tarball, "w:gz") as archive:
            for name, content in files.items():
                if isinstance(content, Image.Image):
                    buffer = io.BytesIO()
                    content.save(buffer, format="PNG")
                    content = buffer.getvalue()
                info = tarfile.TarInfo(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        monkeypatch.setattr("genie_utils.emoji_styles.NPM_REGISTRY", registry.as_uri())
        monkeypatch.setitem(EMOJI_STYLES, "fake", ("emoji-datasource-fake", "1.0.0", integrity or digest,
                                                        "Fake, MIT"))
    return make


@pytest.fixture(scope="session")
def class_names(openmoji):
    return data.class_display_names(openmoji)


@pytest.fixture
def fast_generator(tiny_pipeline):
    """10 denoising steps: for tests of bookkeeping rather than of the schedule."""
    pipe, info = tiny_pipeline
    return generate.GenieGenerator(pipe, Recipe(num_inference_steps=10), info)


class CountingBackbone(features.Backbone):
    """A tiny random conv net that counts the images it embeds."""

    def __init__(self):
        torch.manual_seed(0)
        network = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__("counting", "random", network, features.Transform(resize=40, crop=32), network)
        self.embedded = 0

    def embed_inputs(self, batch):
        self.embedded += len(batch)
        return super().embed_inputs(batch)


@pytest.fixture
def counting_backbone():
    """The `CountingBackbone` class: each call makes a new one, with its own count."""
    return CountingBackbone
