"""Model folders: refused before any work, naming the file; weights saved as .bin accepted."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import ACCEPT, CLEAR, PYTHON, ROOT, Cases, generate, lib
from .inputs import copy_data, edit_json, rows_check

pytestmark = pytest.mark.audit
CASES = Cases("model-folders")


def _model_copy(w, f) -> Path:
    return Path(shutil.copytree(w.model, f / "model"))


def _swap(model: Path, a: str, b: str):
    first = model / a / "diffusion_pytorch_model.safetensors"
    second = model / b / ("model.safetensors" if b == "text_encoder" else "diffusion_pytorch_model.safetensors")
    temporary = model / "swap"
    first.rename(temporary)
    second.rename(first)
    temporary.rename(second)


MODEL_DAMAGE = {
    "swapped-unet-vae": (lambda m: _swap(m, "unet", "vae"), ("unet",)),
    "swapped-vae-text-encoder": (lambda m: _swap(m, "vae", "text_encoder"), ("vae",)),
    "index-empty-object": (lambda m: (m / "model_index.json").write_text("{}"), ("model_index.json",)),
    "index-not-json": (lambda m: (m / "model_index.json").write_text("{\"_class_name\": "), ("model_index.json",)),
    "index-lists-no-unet": (lambda m: edit_json(m / "model_index.json", lambda d: {k: v for k, v in d.items()
                                                                                   if k != "unet"}), ("unet",)),
    "no-tokenizer-folder": (lambda m: shutil.rmtree(m / "tokenizer"), ("tokenizer",)),
    "tokenizer-without-vocabulary": (lambda m: [p.unlink() for p in (m / "tokenizer").iterdir()
                                                if p.name != "tokenizer_config.json"], ("tokenizer",)),
    "no-unet-weights": (lambda m: [p.unlink() for p in (m / "unet").glob("*.safetensors")], ("unet",)),
    "truncated-unet-weights": (lambda m: [p.write_bytes(p.read_bytes()[:1000]) for p in (m / "unet").glob("*.safetensors")],
                               ("unet",)),
    "unet-config-not-json": (lambda m: (m / "unet" / "config.json").write_text("{"), ("config.json",)),
    "unet-config-other-widths": (lambda m: edit_json(m / "unet" / "config.json", lambda d: {
        **d, "block_out_channels": [c * 2 for c in d["block_out_channels"]]}), ("unet",)),
    "no-scheduler-config": (lambda m: (m / "scheduler" / "scheduler_config.json").unlink(), ("scheduler",)),
    "empty-folder": (lambda m: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in m.iterdir()],
                     ("model_index.json",)),
}
for _damage, (_edit, _names) in MODEL_DAMAGE.items():
    def _model_case(w, f, edit=_edit):
        model = _model_copy(w, f)
        edit(model)
        return generate(w, copy_data(w, f), f / "store", "--model", model)
    CASES.add(f"model-{_damage}", CLEAR, f"genie generate --model FOLDER with {_damage.replace('-', ' ')}",
              _model_case, names=_names)
for _damage in ("swapped-unet-vae", "index-empty-object"):
    def _model_lib(w, f, edit=MODEL_DAMAGE[_damage][0]):
        model = _model_copy(w, f)
        edit(model)
        return lib("from genie_utils import pipeline\npipeline.load_pipeline(V['model'], device='cpu')", model=model)
    CASES.add(f"model-{_damage}-library", CLEAR, f"pipeline.load_pipeline on a folder with "
              f"{_damage.replace('-', ' ')}", _model_lib, names=MODEL_DAMAGE[_damage][1])
CASES.add("model-folder-missing", CLEAR, "--model ./my-sd (no such folder)",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", "./my-sd"), names=("my-sd",))
CASES.add("model-is-a-file", CLEAR, "--model pointing at a .safetensors file",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--model",
                                w.model / "unet" / "diffusion_pytorch_model.safetensors"), names=("safetensors",))
CASES.add("model-empty-string", CLEAR, "--model ''",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--model", ""), names=("model",))


CASES.add("model-bin-weights", ACCEPT, "a model folder saved with .bin (pickle) weights",
          lambda w, f: (subprocess.run([PYTHON, "-c", "import sys; from diffusers import StableDiffusionImg2ImgPipeline "
                                        "as P; P.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2], "
                                        "safe_serialization=False)",
                                        str(w.model), str(f / "model")], check=True, capture_output=True,
                                       env={**os.environ, "PYTHONPATH": str(ROOT)}),
                        generate(w, copy_data(w, f), f / "store", "--model", f / "model"))[1],
          check=rows_check(4))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
