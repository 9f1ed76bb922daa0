"""Versions: one store, one version of its images; a second run with another recipe is refused."""
import pytest

from .harness import ACCEPT, CLEAR, Cases, generate
from .inputs import copy_data, copy_store, names_file, rows_check, unchanged_rows

pytestmark = pytest.mark.audit
CASES = Cases("versions")


def _second_run(*extra, model=None):
    return lambda w, f: generate(w, copy_data(w, f), copy_store(w, f), *extra, model=model)


CASES.add("versions-other-steps", CLEAR, "a second run with --steps 6", _second_run("--steps", "6"),
          names=("num_inference_steps",))
CASES.add("versions-other-model", CLEAR, "a second run with another model (other weights)",
          lambda w, f: generate(w, copy_data(w, f), copy_store(w, f), model=w.model_b), names=("model",))
CASES.add("versions-other-guidance", CLEAR, "a second run with --guidance 5", _second_run("--guidance", "5"),
          names=("guidance",))
CASES.add("versions-other-seed", CLEAR, "a second run with --seed 1", _second_run("--seed", "1"),
          names=("seed",))
CASES.add("versions-other-dtype", CLEAR, "a second run with --speed bf16", _second_run("--speed", "bf16"),
          names=("dtype",))
CASES.add("versions-other-prompt-template", CLEAR, "a second run with --prompt-template 'a picture of a {}'",
          _second_run("--prompt-template", "a picture of a {}"), names=("prompt",))
CASES.add("versions-other-class-names", CLEAR, "a second run with --class-names (other prompt words)",
          lambda w, f: generate(w, copy_data(w, f), copy_store(w, f), "--class-names",
                                names_file(f, "apple red apple\nboat sail boat\n")), names=("prompt",))
CASES.add("versions-other-noise-ratio", CLEAR, "a second genie run with --noise-ratio 0.5 (a second image "
          "per pair)", _second_run("--noise-ratio", "0.5"), names=("noise",))
CASES.add("versions-same-recipe-other-batch", ACCEPT, "a second run with --batch-size 1 (same images)",
          _second_run("--batch-size", "1"), check=unchanged_rows)
CASES.add("versions-other-method-same-recipe", ACCEPT, "txt2img into a store of genie images, same recipe",
          _second_run("--method", "txt2img"),
          check=lambda f, o: rows_check(4, "txt2img")(f, o) or rows_check(4, "genie")(f, o))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
