"""Values: store keys and roots, values refused when made, no traceback from the API."""
import pytest

from .harness import ACCEPT, CLEAR, ROOT, Cases, cli, generate, lib
from .inputs import GENERATOR, copy_data, draw

pytestmark = pytest.mark.audit
CASES = Cases("values")


_SUPPORT = 'pd.DataFrame({"image_id": ["a"], "path": ["a.png"], "class_name": ["boat"]})'
for _name, _what, _code, _names in (
        ("store-key-escapes", "Store.put with the key '../../../x'", 'from PIL import Image\nfrom genie_utils.store '
         'import Store\nStore(V["store"]).put("../../../x", Image.new("RGB", (8, 8)), {"method": "genie"})',
         ("../../../x", "store key")),
        ("store-key-escapes-get", "Store.row with the key '../x'",
         'from genie_utils.store import Store\nStore(V["store"]).row("../x")', ("../x", "store key")),
        ("store-root-empty", "Store('')", 'from genie_utils.store import Store\nStore("")', ("store root",)),
        ("recipe-seed-text", "Recipe(seed='abc')", 'from genie_utils.recipe import Recipe\nRecipe(seed="abc")',
         ("seed", "abc")),
        ("job-variant-negative", "Job(..., variant=-1)", 'from genie_utils.jobs import Job\n'
         'Job("img2img_low", "a", "a.png", "boat", "boat", 0.3, -1)', ("variant", "-1")),
        ("job-variant-text", "Job(..., variant='a')", 'from genie_utils.jobs import Job\n'
         'Job("img2img_low", "a", "a.png", "boat", "boat", 0.3, "a")', ("variant", "'a'")),
        ("own-class-jobs-variants-negative", "own_class_jobs(support, 'img2img_low', variants=-1)",
         f'import pandas as pd\nfrom genie_utils import pairing\npairing.own_class_jobs({_SUPPORT}, "img2img_low", -1)',
         ("variants", "-1")),
        ("ada-candidates-no-ratios", "ada.generate_candidates(..., ratios=[])",
         'from genie_utils import ada\nada.generate_candidates(None, [object()], None, {}, ratios=[])', ("ratios",)),
        ("ada-select-lengths", "ada.select_noise_ratio with 5 ratios and 4 candidates", 'import numpy as np\n'
         'from genie_utils import ada\nada.select_noise_ratio(np.ones(3), np.ones((1, 3)), np.ones((4, 3)))',
         ("5 ratios", "4 candidates"))):
    CASES.add(f"values-{_name}", CLEAR, _what,
              lambda w, f, code=_code: lib(code, store=f / "store"), names=_names)
CASES.add("values-store-root-a-file", CLEAR, "Store(a file)", lambda w, f: lib(
    'from genie_utils.store import Store\nStore(V["root"])', root=(lambda p: (p.write_text("x"), p)[1])(f / "file")),
          names=("file", "not a folder"))
CASES.add("values-genie-empty-class", CLEAR, "genie(generator, [image], '')", lambda w, f: lib(
    GENERATOR + 'genie(generator, [V["path"]], "")\n', model=w.model,
    path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")), names=("no class name",))
CASES.add("values-genie-output-np", ACCEPT, "genie(..., output_type='np')", lambda w, f: lib(
    GENERATOR + 'out = genie(generator, [V["path"]] * 3, "boat", output_type="np")\n'
    'audit_ok() if out.shape[0] == 3 and out.ndim == 4 else audit_fail(f"shape {out.shape}")\n', model=w.model,
    path=(lambda p: (draw("red").save(p), p)[1])(f / "src.png")))
for _name, _text, _names in (
        ("evaluation-fraction", 'extends = "smoke"\n[splits]\nevaluation_fraction = 1.5\n',
         ("p.toml", "evaluation_fraction = 1.5")),
        ("noise-ratios", 'extends = "smoke"\n[walkthrough]\nnoise_ratios = [0, 2]\n', ("p.toml", "noise_ratios")),
        ("byte-order-mark", '\ufeffextends = "smoke"\n', ("p.toml", "byte-order mark")),
        ("relative-extends", 'extends = "absent.toml"\n', ("p.toml", "absent.toml", "relative"))):
    CASES.add(f"values-profile-{_name}", CLEAR, f"a profile: {_name.replace('-', ' ')}",
              lambda w, f, text=_text: lib('from genie_utils import profiles\nprofiles.load_profile(V["profile"])',
                                           profile=(lambda p: (p.write_text(text, encoding="utf-8"), p)[1])(
                                               f / "p.toml")),
              names=_names)
CASES.add("values-profile-latin1", CLEAR, "a profile saved in latin-1", lambda w, f: lib(
    'from genie_utils import profiles\nprofiles.load_profile(V["profile"])', profile=(lambda p: (p.write_bytes(
        'extends = "smoke"\ndescription = "caf\u00e9"\n'.encode("latin-1")), p)[1])(f / "p.toml")),
          names=("p.toml", "UTF-8"))
CASES.add("values-generate-unknown-backbone", CLEAR, "genie generate --method genie_ada --backbone resnet19",
          lambda w, f: generate(w, copy_data(w, f), f / "store", "--method", "genie_ada", "--backbone", "resnet19"),
          names=("resnet19", "unknown"))
CASES.add("values-export-no-store-folder", CLEAR, "genie export of a store folder that does not exist",
          lambda w, f: cli("export", f / "nowhere", f / "out"), names=("nowhere", "no store folder"))
CASES.add("values-model-typo-in-local-folder", CLEAR, "from_pretrained('models/nope') in the project",
          lambda w, f: lib('import os\nos.chdir(V["root"])\nfrom genie_utils.generate import GenieGenerator\n'
                           'GenieGenerator.from_pretrained("models/nope")', root=ROOT),
          names=("models/nope", "no folder"))


def _flipped_model(w, f):
    import shutil
    from genie_utils.pipeline import write_checksums
    model = f / "model"
    shutil.copytree(w.model, model)
    write_checksums(model)
    weights = next((model / "unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    return lib('from genie_utils.generate import GenieGenerator\nGenieGenerator.from_pretrained(V["model"])',
               model=model)


CASES.add("values-model-flipped-bit", CLEAR, "a model folder with SHA256SUMS whose UNet weights have a flipped "
          "bit", _flipped_model, names=("diffusion_pytorch_model", "sha256", "git checkout"))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case, run_case):
    outcome = run_case(case)
    assert outcome.observed == case.expected, outcome.report(case)
