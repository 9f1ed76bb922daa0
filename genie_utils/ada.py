"""GeNIe-Ada: a noise ratio per (source image, target class) pair, chosen where the image switches class.

For each pair, candidates are generated at R = 0.5, 0.6, 0.7, 0.8, 0.9 with one noise draw, embedded with the
frozen backbone, and projected on the line from the source embedding to the target class prototype. The
largest jump between consecutive projections marks the switch; Ada keeps the candidate right after it
(the paper's section 3 and the official code; the rule and where this project departs from it: docs/method.md).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .images import load_image
from .features import Backbone, FeatureCache, embed
from .generate import GenieGenerator
from .jobs import Job, in_shard, keyed_jobs, manifest_row, run_jobs
from .pairing import episode_jobs, sample_episode
from .recipe import ADA_RATIOS, METHODS, kept_steps
from .store import Store, claimed_batches, spec_key
from .validation import UsageError, check_batch_size, check_noise_ratio


@dataclass(frozen=True)
class AdaChoice:
    noise_ratio: float           # r*, the ratio right after the largest jump
    projections: np.ndarray      # s_r for each candidate ratio
    jumps: np.ndarray            # |s_{r_i+1} - s_{r_i}|, one fewer than the ratios


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def check_ratios(ratios: Sequence[float]) -> list[float]:
    """GeNIe-Ada's candidate ratios: at least two noise ratios in (0, 1], increasing (a jump lies between two)."""
    ratios = [check_noise_ratio(r) for r in ratios]
    if len(ratios) < 2 or ratios != sorted(set(ratios)):
        raise ValueError(f"GeNIe-Ada's ratios must be at least two increasing noise ratios (the paper's: "
                         f"{list(ADA_RATIOS)}), got {ratios}")
    return ratios


def select_noise_ratio(source: np.ndarray, target_support: np.ndarray, candidates: np.ndarray,
                       ratios: Sequence[float] = ADA_RATIOS) -> AdaChoice:
    """GeNIe-Ada's rule on embeddings.

    source: (D,) embedding of the source image; target_support: (K, D) embeddings of the target class's real
    support images (K = 1 in 1-shot); candidates: (len(ratios), D), one per ratio in increasing order.
    Every embedding is L2-normalised first; the prototype p_T is the mean of the normalised support
    embeddings (not re-normalised). v = p_T - z_s; s_r = e_r . v / |v|; r* = ratios[argmax jump + 1] (first
    maximum on ties), so the smallest ratio is never chosen.
    """
    ratios = check_ratios(ratios)
    source, candidates = np.asarray(source, dtype=float), np.asarray(candidates, dtype=float)
    target_support = np.atleast_2d(np.asarray(target_support, dtype=float))
    if source.ndim != 1 or target_support.ndim != 2 or candidates.ndim != 2:
        raise ValueError(f"expected a source embedding (D,), target support embeddings (K, D) and candidate "
                         f"embeddings (ratios, D); got shapes {source.shape}, {target_support.shape}, {candidates.shape}")
    if candidates.shape[0] != len(ratios):
        raise ValueError(f"need one candidate embedding per ratio: {len(ratios)} ratios {ratios}, "
                         f"{candidates.shape[0]} candidates")
    if not target_support.shape[1] == candidates.shape[1] == source.shape[0]:
        raise ValueError(f"the embeddings differ in dimension: source {source.shape[0]}, target support "
                         f"{target_support.shape[1]}, candidates {candidates.shape[1]} (one backbone embeds all)")
    direction = _unit(target_support).mean(axis=0) - _unit(source)
    length = np.linalg.norm(direction)
    if length == 0:
        raise ValueError("the source embedding equals the target prototype: no direction to project on")
    projections = _unit(candidates) @ direction / length
    jumps = np.abs(np.diff(projections))
    return AdaChoice(float(ratios[int(np.argmax(jumps)) + 1]), projections, jumps)


def class_prototypes(features: np.ndarray, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Each class's embeddings (K, D): the rows of `features` labelled with it, in order (`select_noise_ratio` takes
    their normalised mean as the class's prototype)."""
    labels = np.asarray(labels)
    if len(labels) != len(features):
        raise ValueError(f"{len(features)} embeddings but {len(labels)} labels")
    return {c: features[labels == c] for c in dict.fromkeys(labels)}


def pair_choices(candidates: pd.DataFrame, source_embedding, prototypes, embedding,
                 ratios: Sequence[float] = ADA_RATIOS, source_column: str = "source_id", sort: bool = True):
    """GeNIe-Ada's choice for every (source, target) pair of `candidates` (one row per pair and ratio: source_id,
    target_class, noise_ratio, key, ...): yields the pair's rows indexed by r in the order of `ratios`, and its
    `AdaChoice`. `source_embedding[row[source_column]]` is the source's embedding, `prototypes[target]` the target's
    (K, D) support embeddings, `embedding[key]` a candidate's. Pairs in order of (source_id, target_class), or of
    their first row with `sort=False`; an error names a pair that lacks a candidate or a target without support."""
    ratios = list(ratios)
    for (source, target), group in candidates.groupby(["source_id", "target_class"], sort=sort):
        group = group.set_index("noise_ratio")
        if sorted(group.index) != sorted(ratios):
            raise ValueError(f"every GeNIe pair needs one candidate at each of {ratios}; "
                             f"{source} -> {target} has {sorted(group.index)}")
        if target not in prototypes:
            raise KeyError(f"target class {target!r} has no support images to make a prototype from")
        group = group.loc[ratios]
        yield group, select_noise_ratio(source_embedding[group[source_column].iloc[0]], prototypes[target],
                                        np.stack([embedding[k] for k in group.key]), ratios)


def choose_candidates(candidates: pd.DataFrame, source_embedding, prototypes, embedding,
                      ratios: Sequence[float] = ADA_RATIOS, source_column: str = "source_id") -> pd.DataFrame:
    """GeNIe-Ada on embeddings already at hand, as the experiments evaluate it: for every pair of `candidates` the
    candidate row after the largest jump (`pair_choices`, which names the arguments), in order of (source_id,
    target_class)."""
    chosen = [group.loc[[choice.noise_ratio]].reset_index()
              for group, choice in pair_choices(candidates, source_embedding, prototypes, embedding, ratios,
                                                source_column)]
    return pd.concat(chosen, ignore_index=True)[list(candidates.columns)] if chosen else candidates.iloc[:0]


def _candidate_jobs(job: Job, ratios: Sequence[float]) -> list[Job]:
    return [Job("genie", job.source_id, job.source_path, job.source_class, job.target_class, float(r), job.variant)
            for r in ratios]


def sweep(generator: GenieGenerator, sources, display_names: Sequence[str], seeds: Sequence[int],
          ratios: Sequence[float] = ADA_RATIOS, wanted=None, output_type: str = "pil"):
    """The candidates of one batch of pairs: sources encoded once, prompts once, one noise draw per pair (the same
    at every r), then denoised and decoded at each ratio. Yields (ratio index, batch positions, images) per ratio;
    `wanted(k)` gives the positions still needed at ratio k (default: all; none skips the ratio)."""
    latents = generator.encode(sources)
    cond, uncond = generator.prompt_embeddings(display_names)
    noise = generator.noise(seeds)
    for k, r in enumerate(ratios):
        todo = list(range(len(seeds))) if wanted is None else list(wanted(k))
        if todo:
            index = torch.tensor(todo)
            latent = generator.denoise(latents[index], noise[index], cond[index], uncond[index], r)
            yield k, todo, generator.decode(latent, output_type)


def generate_candidates(generator: GenieGenerator, pairs: Sequence[Job], store: Store, class_names: dict[str, str],
                        ratios: Sequence[float] = ADA_RATIOS, batch_size: int | None = None,
                        progress: bool = True, shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """The candidates of every pair at every ratio, in the store (method `genie`, so the r = 0.8 candidate
    is the GeNIe image itself). Per batch of pairs the sources are encoded once, the prompts once per class
    and the noise once, then denoised at each missing ratio. A pair listed twice is made once; parallel
    workers claim pairs. Returns the manifest rows, pair by pair (`batch_size`: pairs per batch, default
    the generator's). With `shard` = (index, count) a process takes only the pairs whose first candidate's key
    is `in_shard`, and returns their rows."""
    ratios = check_ratios(ratios)
    batch_size = check_batch_size(batch_size if batch_size is not None else generator.batch_size)
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no (source, target) pairs given: GeNIe-Ada needs at least one")
    keyed = [keyed_jobs(generator, _candidate_jobs(pair, ratios), class_names) for pair in pairs]
    mine = [i for i, row in enumerate(keyed) if in_shard(row[0][0], shard)]
    pairs, keyed = [pairs[i] for i in mine], [keyed[i] for i in mine]
    keys = [[key for key, _, _ in row] for row in keyed]
    unique = list({row[0]: i for i, row in reversed(list(enumerate(keys)))}.values())  # first of each pair
    missing = [i for i in unique if not all(store.has(k) for k in keys[i])]
    with tqdm(total=len(missing), desc="GeNIe-Ada candidates", unit="pair", disable=not progress or not missing) as bar:
        for batch in claimed_batches(store, missing, lambda i: keys[i][0], batch_size,
                                     done=lambda i: all(store.has(k) for k in keys[i])):
            began = time.perf_counter()
            made = sweep(generator, [load_image(pairs[i].source_path) for i in batch],
                         [class_names[pairs[i].target_class] for i in batch], [keyed[i][0][2]["seed"] for i in batch],
                         ratios, wanted=lambda k: [j for j, i in enumerate(batch) if not store.has(keys[i][k])])
            for k, todo, images in made:
                seconds = (time.perf_counter() - began) / len(todo)
                for j, image in zip(todo, images):
                    key, job, spec = keyed[batch[j]][k]
                    store.put(key, image, manifest_row(generator, spec, job.source_path, seconds))
                began = time.perf_counter()
            bar.update(len(batch))
    return pd.DataFrame([store.row(k) for row in keys for k in row])


def ada_choices(backbone: Backbone, candidates: pd.DataFrame, support: pd.DataFrame, store: Store,
                cache: FeatureCache | None = None, ratios: Sequence[float] = ADA_RATIOS) -> pd.DataFrame:
    """Select r* for every pair of `candidates` (rows from `generate_candidates`) against the support set's
    class prototypes, and write one `genie_ada` manifest row per pair pointing at the chosen image.

    Returns one row per pair with the candidates' keys, projections, jumps, r* and the chosen key."""
    ratios = list(ratios)
    support_features = embed(backbone, list(support.path), cache)
    prototypes = class_prototypes(support_features, support.class_name)
    feature_of = dict(zip(candidates.key, embed(backbone, [store.root / f for f in candidates.file], cache)))
    sources = list(dict.fromkeys(candidates.source_path))
    source_feature_of = dict(zip(sources, embed(backbone, sources, cache)))
    rows = []
    for group, choice in pair_choices(candidates, source_feature_of, prototypes, feature_of, ratios, "source_path",
                                      sort=False):
        source_id, target = group.source_id.iloc[0], group.target_class.iloc[0]
        chosen = group.loc[choice.noise_ratio]
        row = {"source_id": source_id, "source_class": chosen.source_class, "target_class": target,
               "noise_ratio": choice.noise_ratio, "chosen_key": chosen.key,
               **{f"s_{r:g}": s for r, s in zip(ratios, choice.projections)},
               **{f"jump_{a:g}_{b:g}": d for a, b, d in zip(ratios, ratios[1:], choice.jumps)},
               "candidate_keys": list(group.key), "backbone": backbone.name, "backbone_key": backbone.key}
        ada_key = spec_key({"method": "genie_ada", "candidates": list(group.key), "backbone": backbone.key,
                            "support": sorted(support.image_id[support.class_name == target])})
        store.put_row(ada_key, {**store.row(chosen.key), "method": "genie_ada", "noise_ratio": choice.noise_ratio,
                                "candidate_keys": list(group.key), "backbone": backbone.name,
                                "projections": [float(s) for s in choice.projections],
                                "jumps": [float(d) for d in choice.jumps]})
        rows.append({**row, "ada_key": ada_key})
    return pd.DataFrame(rows)


def generate_choices(generator: GenieGenerator, backbone: Backbone, pairs: Sequence[Job], support: pd.DataFrame,
                     store: Store, class_names: dict[str, str], progress: bool = True,
                     shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """GeNIe-Ada on `pairs`: their candidates (`generate_candidates`), then each pair's choice (`ada_choices`)
    against the prototype of its target class from that class's images in `support` (the `genie` command: all of
    its images in the data folder). Returns the choices, one row per pair of this process's `shard`."""
    candidates = generate_candidates(generator, pairs, store, class_names, progress=progress, shard=shard)
    return ada_choices(backbone, candidates, support, store) if len(candidates) else candidates


def sharpest_rise(choices: pd.DataFrame) -> pd.Series:
    """The pair to draw as paper figure 3: of the pairs whose largest jump is a rise toward the target (the
    paper's picture), the one with the largest jump; the largest jump overall when no pair rises. Ada itself
    uses |jump| (as the official code), so a fall can decide r* too."""
    projections = choices.filter(regex=r"^s_[0-9.]+$").to_numpy(dtype=float)
    steps = np.diff(projections, axis=1)
    largest = np.abs(steps).argmax(axis=1)
    size = np.abs(steps).max(axis=1)
    rises = steps[np.arange(len(steps)), largest] > 0
    return choices.iloc[int(np.where(rises, size, -np.inf).argmax() if rises.any() else size.argmax())]


def cost_per_kept_image(ratios: Sequence[float], num_inference_steps: int = 50) -> dict:
    """UNet denoising steps, VAE encodes and decodes per kept image: GeNIe keeps its one image, Ada one of
    len(ratios) candidates (175 versus 40 steps with 50 steps)."""
    steps = [kept_steps(num_inference_steps, r) for r in ratios]
    return {"unet_steps": sum(steps), "vae_encodes": 1, "vae_decodes": len(ratios)}


def image_steps(jobs: list, method: str, steps: int) -> int:
    """UNet evaluations (guidance batched) the jobs need: GeNIe-Ada runs every candidate ratio of each pair."""
    if method == "genie_ada":
        return len(jobs) * sum(kept_steps(steps, r) for r in ADA_RATIOS)
    return sum(kept_steps(steps, job.noise_ratio) for job in jobs)


def check_runs_a_step(method: str, noise_ratio: float, steps: int) -> None:
    """Every noise ratio the method runs must keep at least one of the schedule's `steps` (int(steps * r) >= 1)."""
    ratios = (ADA_RATIOS if method == "genie_ada" else [noise_ratio] if method == "genie"
              else [METHODS[method].noise_ratio])
    idle = [r for r in ratios if kept_steps(steps, r) == 0]
    if idle:
        raise UsageError(f"--steps {steps} runs no denoising step at r = {idle[0]:g} (int(steps * r) = 0: the source "
                         f"would come back unchanged): use --steps {math.ceil(1 / idle[0] - 1e-9)} or more")


def run_episodes(generator: GenieGenerator, backbone: Backbone, dataset: pd.DataFrame, tables: dict, store: Store,
                 class_names: dict[str, str], episodes: Sequence[int], ways: int, shots: int,
                 cache: FeatureCache | None = None, batch_size: int | None = None, progress: bool = True) -> pd.DataFrame:
    """GeNIe-Ada on the GeNIe pairs of several few-shot episodes: one row per pair, with the episode."""
    tables_out = []
    for episode in episodes:
        support, _ = sample_episode(dataset, tables, ways, shots, 1, episode)
        pairs = episode_jobs(support, "genie")
        candidates = generate_candidates(generator, pairs, store, class_names, ADA_RATIOS, batch_size, progress)
        tables_out.append(ada_choices(backbone, candidates, support, store, cache).assign(episode=episode))
    return pd.concat(tables_out, ignore_index=True)


def measure_cost(generator: GenieGenerator, pairs: Sequence[Job], class_names: dict[str, str], root,
                 ratios: Sequence[float] = ADA_RATIOS, batch_size: int | None = None) -> pd.DataFrame:
    """Generate the same pairs with GeNIe and with GeNIe-Ada into two fresh stores under `root`, counting UNet
    steps, VAE calls and wall time per kept image (one image per pair for both methods)."""
    rows = []
    for method in ("genie", "genie_ada"):
        store = Store(Path(root) / method)
        if store.manifest().shape[0]:
            raise FileExistsError(f"{store.root} is not empty: cost is measured on fresh stores")
        before = dict(vars(generator.counts))
        began = time.perf_counter()
        if method == "genie":
            run_jobs(generator, pairs, store, class_names, batch_size, progress=False)
        else:
            generate_candidates(generator, pairs, store, class_names, ratios, batch_size, progress=False)
        seconds = time.perf_counter() - began
        kept = len(pairs)
        counts = {k: (v - before[k]) / kept for k, v in vars(generator.counts).items()}
        rows.append({"method": method, "kept_images": kept, "unet_steps_per_image": counts["unet_steps"],
                     "vae_encodes_per_image": counts["vae_encodes"], "vae_decodes_per_image": counts["vae_decodes"],
                     "seconds_per_image": seconds / kept, "device": str(generator.device),
                     "num_inference_steps": generator.recipe.num_inference_steps})
    table = pd.DataFrame(rows)
    return table.assign(relative_time=table.seconds_per_image / table.seconds_per_image.iloc[0])


def write_choices(choices: pd.DataFrame, path) -> Path:
    """Save GeNIe-Ada's choices as CSV (candidate keys joined by spaces)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    choices.assign(candidate_keys=choices.candidate_keys.map(" ".join)).to_csv(path, index=False)
    return path


def read_choices(path) -> pd.DataFrame:
    """GeNIe-Ada's choices from `write_choices`, with candidate keys as lists again."""
    table = pd.read_csv(path)
    return table.assign(candidate_keys=table.candidate_keys.str.split(" "))
