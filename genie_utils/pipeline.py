"""Loading a Stable-Diffusion-style diffusers pipeline from a local folder or a hub model id, checking it first:
a wrong path, a broken folder (naming the file at fault) or a silent hub gives a `ModelLoadError` naming the fix."""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import threading
import time
import warnings
from pathlib import Path

import torch
from diffusers import StableDiffusionImg2ImgPipeline
from huggingface_hub import HfApi, constants, try_to_load_from_cache
from safetensors import safe_open

from . import speed as speed_settings
from .images import file_sha256
from .profiles import project_root
from .validation import seconds_setting

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_timeout_seconds(text: str | None) -> float:
    """The value of GENIE_HUB_TIMEOUT_SECONDS: a positive number of seconds, 20 when unset or empty."""
    return seconds_setting("GENIE_HUB_TIMEOUT_SECONDS", text, 20.0)


# A hub that accepts the connection but does not answer, or stops sending, fails after this many seconds.
HUB_TIMEOUT_SECONDS = hub_timeout_seconds(os.environ.get("GENIE_HUB_TIMEOUT_SECONDS"))


class ModelLoadError(OSError):
    """The diffusion model could not be loaded (wrong path, broken folder, hub unreachable)."""


def default_device() -> torch.device:
    """A GPU if there is one, else the CPU. Under `accelerate launch` or `torchrun` each process of a node gets its own
    GPU (LOCAL_RANK), as accelerate gives it: a notebook those launchers run does not pile every process on GPU 0."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    rank = os.environ.get("LOCAL_RANK")
    return torch.device(f"cuda:{int(rank) % torch.cuda.device_count()}") if rank else torch.device("cuda")


def default_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA (as the official code), float32 elsewhere: the built-in speed setting's dtype."""
    return speed_settings.dtype_of(speed_settings.builtin_default(device))


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """sha256 over the configs and weights of a diffusers folder (README and images excluded)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"} \
                and not path.name.startswith("."):
            digest.update(f"{path.relative_to(folder).as_posix()} {file_sha256(path)}\n".encode())
    return digest.hexdigest()[:16]


# A model folder may carry the sha256 of each weight file (`sha256sum` format), which loading checks.
CHECKSUMS = "SHA256SUMS"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def write_checksums(folder: str | os.PathLike) -> Path:
    """Record the sha256 of every weight file of a diffusers folder in `folder`/SHA256SUMS (`sha256sum -c` reads it)."""
    folder = Path(folder)
    lines = [f"{file_sha256(path)}  {path.relative_to(folder).as_posix()}\n" for path in sorted(folder.rglob("*"))
             if path.is_file() and path.suffix in WEIGHT_SUFFIXES]
    (folder / CHECKSUMS).write_text("".join(lines))
    return folder / CHECKSUMS


def check_checksums(folder: Path) -> None:
    """Where `folder` carries SHA256SUMS, every weight file it lists must have its sha256: a flipped bit or a file
    replaced is a `ModelLoadError` naming the file and how to restore it."""
    listed = folder / CHECKSUMS
    if not listed.is_file():
        return
    for number, line in enumerate(listed.read_text().splitlines(), 1):
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = folder / name
        if not name or len(expected) != 64 or not path.resolve().is_relative_to(folder.resolve()):
            raise ModelLoadError(f"broken local model folder: {listed} line {number} is not '<sha256>  <file>': "
                                 "restore it (git checkout), or write it again (pipeline.write_checksums)")
        if not path.is_file():
            raise ModelLoadError(f"broken local model folder: {path} is missing; {CHECKSUMS} lists it. Restore it "
                                 f"(git checkout -- {path}).")
        if file_sha256(path) != expected:
            raise ModelLoadError(f"broken local model folder: {path} does not have the sha256 that {listed.name} "
                                 f"records (a changed or damaged file). Restore it: git checkout -- {path} (or, for "
                                 f"weights you changed on purpose, write {CHECKSUMS} again: pipeline.write_checksums).")


def _hub_revision(model_id: str) -> str:
    try:
        cached = try_to_load_from_cache(model_id, "model_index.json")
        return Path(cached).parent.name if isinstance(cached, str) else ""
    except Exception:  # the revision is informative only
        return ""


def model_location(model: str | os.PathLike) -> tuple[str, Path | None]:
    """("folder", path) for a local diffusers folder, ("hub", None) for a hub model id.

    A relative path is looked up under the project root first, then the working directory, so that
    `models/genie-companion` means the shipped folder from a notebook's folder too."""
    text = os.path.expanduser(str(model))
    path = Path(text)
    candidates = [path] if path.is_absolute() else [project_root() / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.exists():
            return "folder", candidate.resolve()
    for candidate in candidates:  # `models/nope`: a typo inside a local folder, not a hub id
        if not path.is_absolute() and len(path.parts) > 1 and (candidate.parents[len(path.parts) - 2]).is_dir():
            parent = candidate.parent
            while not parent.is_dir():
                parent = parent.parent
            held = sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))
            raise ModelLoadError(f"no folder {candidate}: {parent} holds {held}. Check the path (a hub model id is "
                                 "asked for only when no local folder starts its path).")
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return "hub", None
    raise ModelLoadError(f"no diffusers model folder at {model} (looked in {', '.join(map(str, candidates))}). "
                         "Check the path, or give a hub model id such as stable-diffusion-v1-5/stable-diffusion-v1-5.")


# The parts GenieGenerator runs: model_index.json must list each.
PIPELINE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# The configuration file each part is built from
PART_CONFIGS = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json",
                "scheduler": "scheduler_config.json"}

_VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")
# diffusers renames these parameters of its old attention blocks on loading (ModelMixin._fix_state_dict_keys_on_load)
_LEGACY_ATTENTION = re.compile(r"\.(query|key|value|proj_attn)\.(weight|bias)$")
_LEGACY_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _one_line(error: BaseException) -> str:
    """An error's text on one line (the hub's and the loaders' messages span several)."""
    return " ".join(str(error).split())


def check_model_folder(folder: Path) -> None:
    """Refuse a broken diffusers folder before loading, naming the file at fault."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{folder} is not a diffusers pipeline folder (no model_index.json). "
                             "Give the folder that save_pretrained wrote, e.g. models/genie-companion.")
    restore = "Restore the file (git checkout, or save_pretrained again)."
    try:
        components = json.loads(index.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"broken local model folder: {index} is not valid JSON ({error}). {restore}") from None
    if not isinstance(components, dict) or not isinstance(components.get("_class_name"), str):
        raise ModelLoadError(f"broken local model folder: {index} names no pipeline class (no \"_class_name\"): it is "
                             f"not what save_pretrained writes. {restore}")
    parts = {name: spec for name, spec in components.items()
             if not name.startswith("_") and isinstance(spec, list) and len(spec) == 2 and spec[0] is not None}
    unlisted = [name for name in PIPELINE_PARTS if name not in parts]
    if unlisted:
        raise ModelLoadError(f"broken local model folder: {index} lists no {', '.join(unlisted)} (a Stable-Diffusion-"
                             f"style pipeline has {', '.join(PIPELINE_PARTS)}). {restore}")
    parameters = {}  # weights part -> the parameter names its safetensors files hold
    for name, spec in parts.items():
        part = folder / name
        if not part.is_dir():
            raise ModelLoadError(f"broken local model folder: {folder} has no {name} folder, which {index.name} lists "
                                 f"({spec[1]}). Restore it.")
        if name in PART_CONFIGS and not (part / PART_CONFIGS[name]).is_file():
            raise ModelLoadError(f"broken local model folder: {part} has no {PART_CONFIGS[name]}, which loading the "
                                 f"{name} needs. Restore it (git checkout, or save_pretrained again).")
        for config in ("config.json", "scheduler_config.json", "tokenizer_config.json"):
            if (part / config).is_file():
                try:
                    json.loads((part / config).read_text())
                except (ValueError, UnicodeDecodeError) as error:
                    raise ModelLoadError(f"broken local model folder: {part / config} is not valid JSON ({error}). "
                                         "Restore the file.") from None
        if str(spec[1]).endswith(("Tokenizer", "TokenizerFast")) and not (
                any((part / f).is_file() for f in _VOCABULARY_FILES) or any(part.glob("*.model"))):
            raise ModelLoadError(f"broken local model folder: {part} holds no vocabulary "
                                 f"({', '.join(_VOCABULARY_FILES)} or a sentencepiece .model): every prompt would become "
                                 "unknown tokens. Restore it.")
        if name in ("unet", "vae", "text_encoder"):
            weights = sorted(part.glob("*.safetensors")) + sorted(part.glob("*.bin"))
            shard_index = next(iter(part.glob("*.index.json")), None)
            if shard_index is not None:
                shards = set(json.loads(shard_index.read_text()).get("weight_map", {}).values())
                missing = sorted(s for s in shards if not (part / s).is_file())
                if missing:
                    raise ModelLoadError(f"broken local model folder: {part} lacks the weights file(s) {missing} "
                                         f"that {shard_index.name} lists. Restore them.")
            if not weights:
                raise ModelLoadError(f"broken local model folder: no weights file in {part}. Restore it.")
            for file in weights:
                if file.suffix != ".safetensors":
                    continue
                try:
                    with safe_open(str(file), "pt") as handle:
                        parameters.setdefault(name, set()).update(handle.keys())
                except Exception as error:  # safetensors raises its own error types for corrupt headers
                    raise ModelLoadError(f"broken local model folder: weights file {file} is corrupt or "
                                         f"truncated ({error}). Restore it.") from None
    _check_weights_fit(folder, parts, parameters)


def _parameter_names(part: Path, library: str, class_name: str) -> set[str] | None:
    """The parameter names a part's config.json describes (its model built on the meta device: no memory, no
    weights read); None when the class or config is not one this can build (the loader then names its error)."""
    try:
        cls = getattr(importlib.import_module(library), class_name)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = (cls.from_config(cls.load_config(part)) if library == "diffusers"
                     else cls(cls.config_class.from_pretrained(part)))
    except Exception:
        return None
    ignored = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_missing", None) or []]
    return {name for name in model.state_dict() if not any(p.search(name) for p in ignored)}


def _check_weights_fit(folder: Path, parts: dict, parameters: dict[str, set[str]]) -> None:
    """Refuse weights that lack parameters their part's config.json describes (the loader would leave them empty:
    an error deep inside torch, or random weights), naming the part whose weights they are when they fit another."""
    expected = {name: _parameter_names(folder / name, *parts[name]) for name in parameters}
    for name, found in parameters.items():
        if expected[name] is None:
            continue
        found = found | {_LEGACY_ATTENTION.sub(lambda m: f".{_LEGACY_NAMES[m[1]]}.{m[2]}", key) for key in found}
        missing = expected[name] - found
        if not missing:
            continue
        owner = next((other for other, names in expected.items() if other != name and names and names <= found), None)
        hint = (f"they are the {owner}'s: are the {name} and {owner} weights files swapped?" if owner
                else "are they another model's, or saved with another config.json?")
        raise ModelLoadError(f"broken local model folder: the weights in {folder / name} lack {len(missing)} of the "
                             f"{len(expected[name])} parameters its config.json describes (e.g. {min(missing)!r}): "
                             f"{hint} Restore them.")


def _from_pretrained(source: str, dtype, **kwargs):
    return StableDiffusionImg2ImgPipeline.from_pretrained(source, dtype=dtype, safety_checker=None,
                                                          requires_safety_checker=False, **kwargs)


def _load_from_hub(model_id: str, dtype):
    """From the local cache if it holds the model (no network at all), else download it (`_download`), after
    checking within HUB_TIMEOUT_SECONDS that the hub answers: a silent or stalling endpoint cannot hang the caller."""
    try:
        return _from_pretrained(model_id, dtype, local_files_only=True)
    except (OSError, ValueError):
        pass  # not (completely) in the cache
    fix = ("Download it once with internet access (it is then read from the Hugging Face cache), or point the "
           "profile's [generation] model at a local diffusers folder.")
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(f"cannot load the diffusion model {model_id!r}: it is not in the Hugging Face cache and "
                             f"HF_HUB_OFFLINE is set. {fix}")
    try:
        HfApi().model_info(model_id, timeout=HUB_TIMEOUT_SECONDS)
    except Exception as error:  # network errors come from httpx, hub errors from huggingface_hub
        raise ModelLoadError(f"cannot load the diffusion model {model_id!r}: the hub at {constants.ENDPOINT} did not "
                             f"answer within {HUB_TIMEOUT_SECONDS} s or refused "
                             f"({type(error).__name__}: {_one_line(error)}). "
                             f"{fix}") from error
    try:
        return _from_pretrained(_download(model_id, fix), dtype)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load the diffusion model {model_id!r} from the hub: {_one_line(error)} {fix}") \
            from error


def _cached_bytes(folder: Path) -> int:
    """The bytes under a model's Hugging Face cache folder, unfinished downloads included."""
    total = 0
    for path in folder.rglob("*") if folder.exists() else ():
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:  # a temporary file renamed between the listing and the stat
            pass
    return total


def _download(model_id: str, fix: str, poll_seconds: float = 0.5) -> str:
    """The pipeline's files from the hub into the Hugging Face cache; returns the snapshot folder.

    Every request waits at most HUB_TIMEOUT_SECONDS for an answer or for the next bytes, and the download as a whole
    is given up once the model's cache folder has not grown for HUB_TIMEOUT_SECONDS: a hub that answers but then
    stalls (huggingface_hub retries each file five times) cannot hang the caller, and a slow download that keeps
    coming is never cut."""
    outcome: dict = {}

    def download():
        try:
            outcome["folder"] = StableDiffusionImg2ImgPipeline.download(model_id)
        except Exception as error:  # handed to the caller's thread
            outcome["error"] = error

    timeouts = constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT
    constants.HF_HUB_DOWNLOAD_TIMEOUT = constants.HF_HUB_ETAG_TIMEOUT = HUB_TIMEOUT_SECONDS
    cache = Path(constants.HF_HUB_CACHE) / f"models--{model_id.replace('/', '--')}"
    worker = threading.Thread(target=download, name=f"download {model_id}", daemon=True)  # left behind if stalled
    try:
        worker.start()
        seen, since = -1, time.monotonic()
        while worker.is_alive():
            worker.join(poll_seconds)
            size = _cached_bytes(cache)
            if size != seen:
                seen, since = size, time.monotonic()
            elif worker.is_alive() and time.monotonic() - since > HUB_TIMEOUT_SECONDS:
                raise ModelLoadError(f"cannot load the diffusion model {model_id!r}: the download from "
                                     f"{constants.ENDPOINT} made no progress for {HUB_TIMEOUT_SECONDS:g} s "
                                     f"(GENIE_HUB_TIMEOUT_SECONDS; {seen} bytes so far). {fix}")
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT = timeouts
    if "error" in outcome:
        raise outcome["error"]
    return str(outcome["folder"])


def load_pipeline(model: str | os.PathLike, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None):
    """Load an SD-style pipeline from a local diffusers folder or a hub model id.

    Returns `(pipeline, model_info)`; `model_info` (model, revision, fingerprint) goes into every manifest
    row. A wrong path, a broken folder (naming the file) or a hub that does not answer within
    HUB_TIMEOUT_SECONDS gives a `ModelLoadError` naming the fix; there is no retry loop.
    """
    device = torch.device(device) if device else default_device()
    dtype = dtype or default_dtype(device)
    kind, folder = model_location(model)
    if kind == "folder":
        check_model_folder(folder)
        check_checksums(folder)
        try:
            pipe = _from_pretrained(str(folder), dtype)
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"broken local model folder {folder}: {_one_line(error)} Restore it (git checkout, "
                                 "or save_pretrained again).") from error
        info = {"model": str(model), "model_revision": "", "model_fingerprint": folder_fingerprint(folder)}
    else:
        pipe = _load_from_hub(str(model), dtype)
        info = {"model": str(model), "model_revision": _hub_revision(str(model)), "model_fingerprint": ""}
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), info
