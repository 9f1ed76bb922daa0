"""Command-line options: an option the command does not use, or cannot use, is refused."""
import pytest

from .harness import CLEAR, Cases, cli, generate
from .inputs import copy_data

pytestmark = pytest.mark.audit
CASES = Cases("cli-options")


def _dry(*args):
    """A real run (not --dry-run) with `args`: an option refused only by a real run is refused too late."""
    return lambda w, f: generate(w, copy_data(w, f), f / "store", *args)


def _benchmark(text: str | bytes):
    def build(w, f):
        path = f / "throughput.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return generate(w, copy_data(w, f), f / "store", "--dry-run", "--device", "cpu", "--benchmark", path)
    return build


_ROW = "device,batch_size,images_per_second,steps,noise_ratio\n"
for _name, _build, _names in (
        ("source-classes-with-txt2img", _dry("--method", "txt2img", "--source-classes", "apple"), ("--source-classes",)),
        ("variants-with-genie", _dry("--variants", "2"), ("--variants",)),
        ("variants-with-genie-ada", _dry("--method", "genie_ada", "--variants", "2"), ("--variants",)),
        ("backbone-checkpoint-with-genie", _dry("--backbone-checkpoint", "x.pth"), ("--backbone-checkpoint",)),
        ("backbone-with-txt2img", _dry("--method", "txt2img", "--backbone", "resnet18"), ("--backbone",)),
        ("noise-ratio-with-txt2img", _dry("--method", "txt2img", "--noise-ratio", "0.5"), ("--noise-ratio",)),
        ("ada-resnet-without-checkpoint", _dry("--method", "genie_ada", "--backbone", "resnet18"), ("--backbone-checkpoint",)),
        ("ada-checkpoint-missing", _dry("--method", "genie_ada", "--backbone", "resnet18", "--backbone-checkpoint",
                                        "unisiam.pth"), ("unisiam.pth",)),
        ("benchmark-other-columns", _benchmark("when,speed\n2026-11-30,3.1\n"), ("--benchmark",)),
        ("benchmark-not-csv", _benchmark(bytes(range(256)) * 4), ("--benchmark",)),
        ("benchmark-text-speed", _benchmark(_ROW + "CPU,8,fast,20,0.8\n"), ("images_per_second",)),
        ("benchmark-text-steps", _benchmark(_ROW + "CPU,8,2.0,twenty,0.8\n"), ("steps",)),
        ("benchmark-numeric-device", _benchmark(_ROW + "0,8,2.0,20,0.8\n"), ("device",)),
        ("benchmark-folder-missing", _dry("--benchmark", "nowhere/throughput.csv"), ("nowhere",)),
        ("device-cuda", _dry("--device", "cuda"), ("cuda",)),
        ("device-unknown", _dry("--device", "gpu0"), ("gpu0",)),
        ("unknown-option", _dry("--noise_ratio", "0.5"), ("--noise_ratio",)),
        ("unknown-method", _dry("--method", "genie-ada"), ("--method",)),
        ("unknown-target-class", _dry("--target-classes", "boats"), ("boats",)),
        ("same-single-class", _dry("--source-classes", "apple", "--target-classes", "apple"), ("--source-classes",))):
    CASES.add(f"cli-{_name}", CLEAR, f"genie generate {_name.replace('-', ' ')}", _build, names=_names)
CASES.add("cli-ada-checkpoint-not-a-checkpoint", CLEAR, "--backbone-checkpoint notes.txt (a text file)",
          lambda w, f: ((f / "notes.txt").write_text("not a checkpoint"),
                        generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--backbone", "resnet18",
                                 "--backbone-checkpoint", f / "notes.txt"))[1], names=("notes.txt",))
CASES.add("cli-no-command", CLEAR, "genie (no command)", lambda w, f: cli(), names=("command",))
CASES.add("cli-generate-without-store", CLEAR, "genie generate DATA (no --store)",
          lambda w, f: cli("generate", copy_data(w, f)), names=("--store",))


def _store_is_file(w, f):
    (f / "store").write_text("a file")
    return generate(w, copy_data(w, f), f / "store")


CASES.add("cli-store-is-a-file", CLEAR, "--store names an existing file", _store_is_file,
          names=("store",))
CASES.add("cli-store-is-the-dataset", CLEAR, "--store DATA (the dataset folder itself)",
          lambda w, f: generate(w, copy_data(w, f), f / "data"), names=("data",))
CASES.add("cli-store-inside-the-dataset", CLEAR, "--store DATA/store (read as a class next time)",
          lambda w, f: generate(w, copy_data(w, f), f / "data" / "store"), names=("store",))
CASES.add("cli-dry-run-missing-model", CLEAR, "--dry-run with --model ./my-sd (no such folder)",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--dry-run", "--model", "./my-sd"), names=("my-sd",))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
