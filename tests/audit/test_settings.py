"""Settings: checked before any work (options, environment variables, recipes, profiles)."""
from pathlib import Path

import pytest

from .harness import CLEAR, Cases, Run, generate, lib, reproduce
from .inputs import GENERATOR, copy_data, draw

pytestmark = pytest.mark.audit
CASES = Cases("settings")


for _name, _args, _names in (
        ("template-two-fields", ["--prompt-template", "{0} {1}"], ("prompt template",)),
        ("template-no-field", ["--prompt-template", "a photo"], ("prompt template",)),
        ("template-unclosed", ["--prompt-template", "a photo of a {"], ("prompt template",)),
        ("steps-zero", ["--steps", "0"], ("steps",)),
        ("steps-text", ["--steps", "ten"], ("--steps",)),
        ("steps-one", ["--steps", "1"], ("1",)),
        ("steps-one-dry-run", ["--steps", "1", "--dry-run"], ("1",)),
        ("noise-ratio-runs-no-step", ["--noise-ratio", "0.1"], ("0.1",)),
        ("guidance-nan", ["--guidance", "nan"], ("guidance",)),
        ("guidance-negative", ["--guidance", "-1"], ("guidance",)),
        ("noise-ratio-zero", ["--noise-ratio", "0"], ("noise ratio",)),
        ("noise-ratio-above-one", ["--noise-ratio", "1.5"], ("noise ratio",)),
        ("noise-ratio-nan", ["--noise-ratio", "nan"], ("noise ratio",)),
        ("batch-size-zero", ["--batch-size", "0"], ("--batch-size",)),
        ("variants-zero", ["--method", "txt2img", "--variants", "0"], ("--variants",)),
        ("speed-fp16-on-cpu", ["--speed", "fp16"], ("fp16",))):
    CASES.add(f"settings-{_name}", CLEAR, f"genie generate {' '.join(_args)}",
              lambda w, f, args=_args: generate(w, copy_data(w, f), f / "store", *args), names=_names)
for _variable, _value in (("GENIE_HUB_TIMEOUT_SECONDS", "abc"), ("GENIE_HUB_TIMEOUT_SECONDS", "0"),
                          ("GENIE_HUB_TIMEOUT_SECONDS", "nan"), ("GENIE_CLAIM_STALE_SECONDS", "soon"),
                          ("GENIE_CLAIM_STALE_SECONDS", "0")):
    CASES.add(f"settings-{_variable.lower().replace('_', '-')}-{_value}", CLEAR,
              f"genie generate with {_variable}={_value}",
              lambda w, f, v=_variable, x=_value: generate(w, copy_data(w, f), f / "store", env={v: x}),
              names=(_variable,))
CASES.add("settings-hub-timeout-abc-library", CLEAR, "import genie_utils.generate with "
          "GENIE_HUB_TIMEOUT_SECONDS=abc",
          lambda w, f: Run(lib("import genie_utils.generate\naudit_fail('imported')").argv, "lib",
                           {"GENIE_HUB_TIMEOUT_SECONDS": "abc"}),
          names=("GENIE_HUB_TIMEOUT_SECONDS",))
CASES.add("settings-claim-stale-abc-library", CLEAR, "run_jobs with GENIE_CLAIM_STALE_SECONDS=soon",
          lambda w, f: Run(lib(GENERATOR + '''
from genie_utils import class_folders, data, pairing
from genie_utils.jobs import run_jobs
from genie_utils.store import Store
dataset = class_folders.load_class_folders(V["data"])
run_jobs(generator, pairing.hard_negative_jobs(dataset), Store(V["store"]), data.class_display_names(dataset), progress=False)
''', model=w.model, data=copy_data(w, f), store=f / "store").argv, "lib", {"GENIE_CLAIM_STALE_SECONDS": "soon"}),
          names=("GENIE_CLAIM_STALE_SECONDS",))
for _name, _code, _names in (
        ("recipe-steps-zero", "Recipe(num_inference_steps=0)", ("steps",)),
        ("recipe-guidance-nan", "Recipe(guidance_scale=float('nan'))", ("guidance",)),
        ("recipe-height-63", "Recipe(height=63)", ("height",)),
        ("recipe-template", "Recipe(prompt_template='{0} {1}')", ("prompt template",)),
        ("recipe-guidance-interval", "Recipe(guidance_timesteps=(600, 100))", ("guidance_timesteps",))):
    CASES.add(f"settings-lib-{_name}", CLEAR, _code, lambda w, f, code=_code: lib(
        f"from genie_utils.recipe import Recipe\n{code}"), names=_names)
for _name, _code, _names in (
        ("genie-ratio-zero", "genie(generator, [V['path']], 'boat', noise_ratio=0.0)", ("noise ratio",)),
        ("genie-ratio-nan", "genie(generator, [V['path']], 'boat', noise_ratio=float('nan'))", ("noise ratio",)),
        ("genie-ratio-text", "genie(generator, [V['path']], 'boat', noise_ratio='0.8')", ("noise ratio",)),
        ("genie-no-sources", "genie(generator, [], 'boat')", ("source",)),
        ("generator-batch-zero", "GenieGenerator(generator.pipe, batch_size=0)", ("batch_size",)),
        ("txt2img-count-zero", "txt2img(generator, 'apple', 0)", ("count",))):
    CASES.add(f"settings-lib-{_name}", CLEAR, _code, lambda w, f, code=_code: lib(
        GENERATOR + code, model=w.model, path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=_names)


def _profile_file(f: Path, text: str, name="mine.toml") -> Path:
    (f / name).write_text(text)
    return f / name


_PROFILE_HEAD = 'name = "mine"\nextends = "smoke"\n'
for _name, _text, _names, _extra in (
        ("extends-loop", None, ("extends", "loop"), ()),
        ("extends-itself", 'name = "mine"\nextends = "SELF"\n', ("extends",), ()),
        ("unknown-key", _PROFILE_HEAD + "[generation]\nnum_inference_step = 4\n", ("num_inference_step",), ()),
        ("wrong-type", _PROFILE_HEAD + '[generation]\nnum_inference_steps = "ten"\n', ("num_inference_steps",), ()),
        ("syntax-error", _PROFILE_HEAD + "[generation\n", ("mine.toml",), ()),
        ("steps-zero", _PROFILE_HEAD + "[generation]\nnum_inference_steps = 0\n", ("num_inference_steps",), ())):
    def _build(w, f, name=_name, text=_text):
        if name == "extends-loop":
            _profile_file(f, 'name = "a"\nextends = "' + str(f / "b.toml") + '"\n', "a.toml")
            path = _profile_file(f, 'name = "b"\nextends = "' + str(f / "a.toml") + '"\n', "b.toml")
        else:
            path = _profile_file(f, text.replace("SELF", str(f / "mine.toml")))
        return reproduce("--profile", path, "--only", "zz-no-notebook")
    CASES.add(f"settings-reproduce-profile-{_name}", CLEAR, f"reproduce --profile (a profile: {_name})",
              _build, names=_names)
CASES.add("settings-reproduce-unknown-profile", CLEAR, "reproduce --profile embeded",
          lambda w, f: reproduce("--profile", "embeded"), names=("embeded",))
CASES.add("settings-reproduce-only-without-value", CLEAR, "reproduce --only",
          lambda w, f: reproduce("--only"), names=("--only",))
CASES.add("settings-reproduce-only-no-match", CLEAR, "reproduce --only 99 (no such notebook)",
          lambda w, f: reproduce("--profile", "smoke", "--only", "99"), names=("99",))
CASES.add("settings-reproduce-record-checks-not-smoke", CLEAR, "reproduce --record-checks without smoke",
          lambda w, f: reproduce("--record-checks", "--only", "00"), names=("smoke",))
CASES.add("settings-reproduce-unknown-option", CLEAR, "reproduce --profiles smoke",
          lambda w, f: reproduce("--profiles", "smoke"), names=("--profiles",))
for _name, _text, _names in (
        ("guidance-nan", "[generation]\nguidance_scale = nan\n", ("guidance",)),
        ("resolution-63", "[dataset]\nresolution = 63\n", ("63",)),
        ("template-two-fields", '[generation]\nprompt_template = "{0} {1}"\n', ("prompt",)),
        ("guidance-interval-reversed", "[generation]\nguidance_timesteps = [600, 100]\n", ("guidance_timesteps",))):
    CASES.add(f"settings-profile-{_name}", CLEAR, f"a profile with {_text.strip()!r}, loaded as reproduce "
              "--profile loads it (profiles.load_profile; no notebook is run)", lambda w, f, text=_text: lib('''
from genie_utils.profiles import load_profile
load_profile(V["path"])
''', path=_profile_file(f, _PROFILE_HEAD + text)), names=_names)
CASES.add("settings-lib-load-profile-loop", CLEAR, "profiles.load_profile on profiles that extend each other",
          lambda w, f: (_profile_file(f, 'name = "a"\nextends = "' + str(f / "b.toml") + '"\n', "a.toml"),
                        lib("from genie_utils.profiles import load_profile\nload_profile(V['path'])",
                            path=_profile_file(f, 'name = "b"\nextends = "' + str(f / "a.toml") + '"\n', "b.toml")))[1],
          names=("extends",))
CASES.add("settings-lib-profile-resolution-63", CLEAR, "GenieGenerator.from_profile with resolution 63",
          lambda w, f: lib('''
from genie_utils import profiles
from genie_utils.generate import GenieGenerator
profile = profiles.load_profile("smoke")
profile["dataset"]["resolution"] = 63
GenieGenerator.from_profile(profile, device="cpu")
'''), names=("63",))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
