"""Running generation jobs into the store: one image per `Job`, keyed by everything that determines it, batched
per noise ratio, each batch claimed first so that several processes (or `accelerate launch` shards) share the work,
and each image written with its manifest row as soon as its batch is done."""
from __future__ import annotations

import difflib
import importlib.metadata
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from .images import ImageReadError, check_image_file, file_sha256, load_image
from .recipe import METHODS, Recipe, pair_seed
from .store import Store, claimed_batches, spec_key
from .validation import check_batch_size, check_class, check_count, check_noise_ratio, check_shard


class ImageGenerator(Protocol):
    """What running jobs needs of a generator (`generate.GenieGenerator` is one): its recipe, its identity for the
    store keys and manifest, and one batch of images at one noise ratio."""
    recipe: Recipe
    model_info: dict             # model, model_revision, model_fingerprint
    batch_size: int              # images per batch unless `run_jobs` is given one
    speed: str                   # the speed setting, for the manifest

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def size(self) -> tuple[int, int]: ...  # (height, width) of the images

    def timesteps(self, noise_ratio: float) -> torch.Tensor: ...

    def generate(self, sources: Sequence[Image.Image] | None, display_names: Sequence[str], noise_ratio: float,
                 seeds: Sequence[int], output_type: str = "pil"): ...


@dataclass(frozen=True)
class Job:
    """One image to generate: a source image, the class its prompt names, a noise ratio.

    The method must be one of METHODS (it names the store's image folder); r is normalised by
    `check_noise_ratio`, so r = 1 and r = 1.0 are one job."""
    method: str
    source_id: str
    source_path: str
    source_class: str
    target_class: str
    noise_ratio: float
    variant: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            close = difflib.get_close_matches(str(self.method), list(METHODS), n=1)
            raise ValueError(f"unknown method {self.method!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" Known methods: {sorted(METHODS)}")
        object.__setattr__(self, "noise_ratio", check_noise_ratio(self.noise_ratio))
        check_count(self.variant, "a job's variant (which of several images of one source and class)", minimum=0)
        for name in ("source_id", "target_class"):  # a direct genie() call knows no source class
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"a job's {name} must be a non-empty name, got {value!r}")


def job_seed(recipe: Recipe, job: Job) -> int:
    """The seed of a job's image: the one place seeds come from, for `run_jobs` and `genie()` alike."""
    return pair_seed(recipe.seed, job.source_id, job.target_class, job.variant)


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether the job with store key `key` belongs to worker `shard` = (index, count): decided by the key
    alone, so it depends on neither the order of the jobs nor the process that lists them."""
    index, count = check_shard(shard)
    return int(key[:15], 16) % count == index


def process_state():
    """accelerate's state of this process under `accelerate launch` or `torchrun` (several GPUs or nodes; on
    CPUs, torchrun: accelerate's own CPU launcher needs MPI), None when launched alone.

    Give each process the jobs `in_shard(key, (state.process_index, state.num_processes))`: every image depends
    only on its job (per-image seeds), so the union of the shards is the single-process result."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState  # only under a launcher: accelerate's state setup reads its variables

    return PartialState(cpu=not torch.cuda.is_available())


def _versions() -> dict:
    return {name: importlib.metadata.version(name) for name in ("torch", "diffusers", "transformers",
                                                                  "genie-companion")}


def job_spec(generator: ImageGenerator, job: Job, prompt: str, source_sha256: str) -> dict:
    """Everything that determines a job's image: its store key is a hash of this."""
    recipe = generator.recipe
    identity = version_spec(generator)
    return {
        "method": job.method, "source_id": job.source_id, "source_sha256": source_sha256,
        "source_class": job.source_class, "target_class": job.target_class, "noise_ratio": job.noise_ratio,
        "variant": job.variant, "seed": job_seed(recipe, job),
        "base_seed": identity.pop("base_seed"), "prompt": prompt, "negative_prompt": recipe.negative_prompt,
        **identity,
    }


def version_spec(generator: ImageGenerator) -> dict:
    """What makes one version of every image: the model, the recipe, the size, the dtype and the base seed. Two
    of them in one store would give each (source, target) pair twice; `genie generate` refuses that."""
    recipe = generator.recipe
    height, width = generator.size
    return {
        "base_seed": recipe.seed,
        "num_inference_steps": recipe.num_inference_steps, "guidance_scale": recipe.guidance_scale,
        "scheduler": "DPMSolverMultistepScheduler(dpmsolver++, order 2, linspace)", "latent": "vae-mode",
        "height": height, "width": width, "dtype": str(generator.dtype).replace("torch.", ""),
        # a local folder is identified by its content (the same key in every checkout), a hub model by id@revision
        "model_identity": generator.model_info["model_fingerprint"]
        or f"{generator.model_info['model']}@{generator.model_info['model_revision']}",
        # only when set, so that the keys of images guided at every step stay what they were
        **({"guidance_timesteps": list(recipe.guidance_timesteps)}
           if recipe.guidance_timesteps and recipe.guidance_scale > 1 else {}),
    }


def manifest_row(generator: ImageGenerator, spec: dict, source_path: str, seconds: float | None) -> dict:
    """A job's specification plus what is known once its image exists: timesteps run, time, versions."""
    timesteps = generator.timesteps(spec["noise_ratio"])
    return {**spec, **generator.model_info, "source_path": source_path, "denoising_steps": len(timesteps),
            "first_timestep": int(timesteps[0]),
            "seconds": None if seconds is None else round(seconds, 4), "device": str(generator.device),
            "speed_setting": generator.speed,
            "versions": _versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def keyed_jobs(generator: ImageGenerator, jobs: Iterable[Job], class_names: dict[str, str]) -> list[tuple[str, Job, dict]]:
    """(store key, job, spec) per job, checking every class and source file (present, and readable as
    `images.check_image_file` checks a dataset's files) before any work."""
    if not isinstance(class_names, Mapping):
        raise TypeError(f"class_names must map each class to its display name (data.class_display_names(dataset)), "
                        f"got {type(class_names).__name__}")
    hashes: dict[str, str] = {}
    keyed = []
    for job in jobs:
        if not isinstance(job, Job):
            raise TypeError(f"expected Job objects, got {type(job).__name__}")
        prompt = generator.recipe.prompt(check_class(job.target_class, class_names))
        if job.source_path not in hashes:
            if not Path(job.source_path).is_file():
                raise FileNotFoundError(f"source image {job.source_id} not found at {job.source_path}")
            why = check_image_file(Path(job.source_path)) if job.noise_ratio < 1 else None  # r = 1 never reads it
            if why:
                raise ImageReadError(f"source image {job.source_id} at {job.source_path} cannot be used ({why}): "
                                     "replace or delete it, and load the dataset again")
            hashes[job.source_path] = file_sha256(job.source_path)
        spec = job_spec(generator, job, prompt, hashes[job.source_path])
        keyed.append((spec_key(spec), job, spec))
    return keyed


def generate_batch(generator: ImageGenerator, batch: list[tuple[str, Job, dict]], class_names: dict[str, str],
                    sources: list[Image.Image] | None = None, output_type: str = "pil"):
    """The images of jobs sharing one noise ratio: sources loaded (unless given), seeds from the specs."""
    ratio = batch[0][1].noise_ratio
    if sources is None and ratio < 1.0:
        sources = [load_image(job.source_path) for _, job, _ in batch]
    return generator.generate(sources if ratio < 1.0 else None, [class_names[j.target_class] for _, j, _ in batch],
                              ratio, [spec["seed"] for _, _, spec in batch], output_type)


def run_jobs(generator: ImageGenerator, jobs: Iterable[Job], store: Store, class_names: dict[str, str],
             batch_size: int | None = None, progress: bool = True,
             shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """Generate every job not yet in the store; return the manifest rows of all `jobs`, in order.

    Jobs are grouped by noise ratio and batched (`batch_size`, default the generator's); each image is
    written (atomically, with its row) as soon as its batch is done, so an interrupted run loses at most one
    batch and a rerun resumes. Several processes may run the same jobs on one store: each claims a batch
    before generating it, so no image is made twice. With `shard` = (index, count) a process takes only the
    jobs `in_shard` and returns only their rows (see `process_state` for `accelerate launch`).
    """
    batch_size = check_batch_size(batch_size if batch_size is not None else generator.batch_size)
    keyed = [item for item in keyed_jobs(generator, jobs, class_names) if in_shard(item[0], shard)]
    todo = {key: (key, job, spec) for key, job, spec in keyed if not store.has(key)}
    ordered = sorted(todo.values(), key=lambda item: (item[1].noise_ratio, item[1].target_class, item[0]))
    with tqdm(total=len(ordered), desc=f"generating ({len(keyed) - len(todo)} already in store)",
              unit="img", disable=not progress or not ordered) as bar:
        for ratio in sorted({job.noise_ratio for _, job, _ in ordered}):
            group = [item for item in ordered if item[1].noise_ratio == ratio]
            for batch in claimed_batches(store, group, lambda item: item[0], batch_size):
                began = time.perf_counter()
                images = generate_batch(generator, batch, class_names)
                seconds = (time.perf_counter() - began) / len(batch)
                for (key, job, spec), image in zip(batch, images):
                    store.put(key, image, manifest_row(generator, spec, job.source_path, seconds))
                bar.update(len(batch))
    return pd.DataFrame([store.row(key) for key, _, _ in keyed])
