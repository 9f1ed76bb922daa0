"""Shared fixtures: a tiny random-weight SD-style pipeline saved as a diffusers folder, and the
embedded dataset rendered once per test session."""
import pytest

from genie_utils import companion, data, generate


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A StableDiffusionImg2ImgPipeline with SD v1.5's structure and schedule, random weights, on disk."""
    folder = tmp_path_factory.mktemp("tiny-sd")
    companion.build_pipeline(companion.TINY, seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_dir):
    return generate.load_pipeline(tiny_model_dir, device="cpu")


@pytest.fixture
def generator(tiny_pipeline):
    """A fresh generator (own counters and prompt cache) on the shared pipeline, 64 px, 50 steps."""
    pipe, info = tiny_pipeline
    return generate.GenieGenerator(pipe, generate.Recipe(), info)


@pytest.fixture(scope="session")
def openmoji(tmp_path_factory):
    """The embedded dataset at 64 px, rendered into a temporary cache (about 10 s)."""
    return data.load_openmoji(tmp_path_factory.mktemp("openmoji"), 64, progress=False)


@pytest.fixture(scope="session")
def class_names(openmoji):
    return data.class_display_names(openmoji)


@pytest.fixture
def fast_generator(tiny_pipeline):
    """10 denoising steps: for tests of bookkeeping rather than of the schedule."""
    pipe, info = tiny_pipeline
    return generate.GenieGenerator(pipe, generate.Recipe(num_inference_steps=10), info)
