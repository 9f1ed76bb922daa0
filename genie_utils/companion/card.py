"""Evidence for the companion model: the oracle's judgement of GeNIe outputs, and the model card."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plots
from ..data import class_display_names, load_dataset
from ..generate import GenieGenerator, profile_recipe
from ..oracle import consistency_summary, crossover, label_consistency, load_oracle, pairs_per_target
from ..profiles import resolve
from ..splits import EVALUATION, pool_images
from ..store import Store
from .train import hardware

SAMPLING_WORDS = {"uniform": "uniformly over images (classes in proportion to their size)",
                  "sqrt": "with each class in proportion to the square root of its size",
                  "balanced": "class-balanced (every class equally often, however few its images)"}
JUDGE_RATIOS = (0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def judge(profile: dict, folder=None, per_class: int = 2, ratios=JUDGE_RATIOS, seed: int = 0, progress: bool = True):
    """GeNIe outputs judged by the oracle at each r, for `per_class` pairs with each of the dataset's classes as
    the target (sources: evaluation-pool images of other classes, never seen by the generator).

    Writes `judge_curve.csv` into the model folder: one curve per group of target classes, each class weighing
    the same: all classes, the long-tail bins by generator-pool size (many > 100, few < 20 images), and the 15
    classes few-shot eligible with 16 queries (the first model card's classes). Also GeNIe's images per second
    at r = 0.8 on the machine that judged. Returns that table."""
    from ..splits import GENERATOR, fewshot_eligibility
    from ..longtail import bin_of

    folder = Path(folder) if folder else resolve(profile, profile["companion"]["output"])
    dataset = load_dataset(profile, progress=False)
    evaluation = pool_images(profile, dataset, EVALUATION)
    classes = sorted(dataset.class_name.unique())
    chosen = pairs_per_target(evaluation, classes, per_class, seed)
    recipe = profile_recipe(profile)
    generator = GenieGenerator.from_pretrained(folder, recipe, batch_size=profile["generation"]["batch_size"])
    results = resolve(profile, profile["paths"]["results"]) / "companion"
    store = Store(results / "judge-store")
    table = label_consistency(generator, load_oracle(resolve(profile, profile["oracle"]["output"])), chosen, ratios,
                              store, class_display_names(dataset), progress=progress)
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "judge_images.csv", index=False)
    sizes = pool_images(profile, dataset, GENERATOR).class_name.value_counts()
    splits = profile["splits"]
    bins = {c: bin_of(int(sizes.get(c, 0)), splits["many_shot_threshold"], splits["few_shot_threshold"]) for c in classes}
    old = fewshot_eligibility(evaluation, [1], 16)
    groups = {"all classes": classes, **{f"{b} (generator pool)": [c for c in classes if bins[c] == b]
                                         for b in ("many", "medium", "few")},
              "15 classes of the first card": list(old[old.eligible_1shot].class_name)}
    seconds = [store.row(k)["seconds"] for k, r in zip(table.key, table.noise_ratio) if r == 0.8]
    parts = [consistency_summary(table[table.target_class.isin(members)], per_target_class=True)
             .assign(group=name, classes=len(members)) for name, members in groups.items()]
    summary = pd.concat(parts, ignore_index=True).assign(steps=recipe.num_inference_steps,
                                                         genie_images_per_second=1 / np.mean(seconds),
                                                         hardware=hardware(generator.device))
    summary.to_csv(folder / "judge_curve.csv", index=False)
    return summary


def judge_table(curve: pd.DataFrame) -> str:
    """`judge_curve.csv` as a markdown table: one row per r, one column per group of target classes, each cell
    mean P(target) / mean P(source) / share of images the oracle names the target."""
    groups = list(dict.fromkeys(curve.group))
    wide = curve.pivot_table(index="noise_ratio", columns="group", values=["p_target", "p_source", "oracle_target"])
    header = "| r | " + " | ".join(f"{g} ({int(curve[curve.group == g].classes.iloc[0])} classes)" for g in groups) + " |"
    return "\n".join([header, "| ---: |" + " ---: |" * len(groups)] + [
        f"| {r:g} | " + " | ".join(f"{wide.loc[r, ('p_target', g)]:.2f} / {wide.loc[r, ('p_source', g)]:.2f} / "
                                   f"{wide.loc[r, ('oracle_target', g)]:.2f}" for g in groups) + " |"
        for r in wide.index])


def crossing(cross: float | None, lowest: float) -> str:
    """The crossover of P(target) over P(source) in words (it may lie below the lowest r judged)."""
    if cross is None:
        return "P(target) never overtakes P(source)"
    if cross <= lowest:
        return f"P(target) is above P(source) already at the lowest r judged ({lowest:g})"
    return f"P(target) crosses P(source) at r = {cross:.2f}"


def model_files(folder) -> pd.DataFrame:
    """Every file of a model folder with its size in MB (the limits: 40 MB in all, 16 MB per file)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return pd.DataFrame({"file": [str(p.relative_to(folder)) for p in files],
                         "megabytes": [p.stat().st_size / 1e6 for p in files]})


def write_model_card(profile: dict, folder=None, samples: int = 6) -> Path:
    """README.md of the model folder, from its result files (training.json, loss CSVs, judge_curve.csv), with
    the loss curve, the judge curve and sample outputs as PNGs beside it."""
    folder = Path(folder) if folder else resolve(profile, profile["companion"]["output"])
    record = json.loads((folder / "training.json").read_text())
    oracle = json.loads(resolve(profile, profile["oracle"]["output"]).with_suffix(".json").read_text())
    curve = pd.read_csv(folder / "judge_curve.csv")
    results = resolve(profile, profile["paths"]["results"]) / "companion"
    plots.loss_curves(folder / "training_loss_vae.csv", folder / "training_loss_denoiser.csv").savefig(
        folder / "loss.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    everyone = curve[curve.group == "all classes"]
    everyone.to_csv(results / "judge_curve_all_classes.csv", index=False)
    plots.class_probability_curve(results / "judge_curve_all_classes.csv",
                                  f"oracle on GeNIe outputs, all {int(everyone.classes.iloc[0])} target classes").savefig(
        folder / "judge.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    images = pd.read_csv(results / "judge_images.csv")
    store = Store(results / "judge-store")
    rows = pd.DataFrame([store.row(k) for k in images.key])
    plots.pairs_by_noise_ratio(store, rows, samples).savefig(folder / "samples.png", dpi=90, bbox_inches="tight",
                                                             metadata={"Software": None})
    cross = crossover(everyone)
    parameters = record["parameters"]
    files = model_files(folder)
    table = judge_table(curve)
    pairs = int(everyone.pairs.iloc[0])
    minutes = lambda s: f"{s / 60:.1f} min"  # noqa: E731
    text = f"""# genie-companion: a small latent-diffusion model for the embedded profile

A Stable-Diffusion-v1.5-shaped text-to-image pipeline (`StableDiffusionImg2ImgPipeline`: AutoencoderKL,
UNet2DConditionModel with cross-attention, CLIPTextModel, SD's CLIP BPE tokenizer), trained from scratch on
64x64 OpenMoji emoji so that GeNIe runs offline. It loads exactly like SD v1.5:
`StableDiffusionImg2ImgPipeline.from_pretrained("models/genie-companion")`.

## Data
- {record["training_images"]} images of the **generator pool** ({record["classes"]} classes), never the evaluation
  pool (genie_utils/splits/openmoji). Prompts `a photo of a {{class name}}.` (the Unicode subgroup, hyphens as spaces),
  10% empty prompts for classifier-free guidance. Batches drawn {SAMPLING_WORDS[record["settings"].get("sampling", "uniform")]}.
- OpenMoji emoji (openmoji.org) are CC BY-SA 4.0; this model is trained on them and shared under the same licence.

## Model
| part | parameters | note |
| --- | ---: | --- |
| VAE (AutoencoderKL) | {parameters["vae"] / 1e6:.2f}M | 64x64x3 -> 16x16x4 (f = 4), scaling factor {record["vae_scaling_factor"]:.4f} (1 / latent std) |
| UNet2DConditionModel | {parameters["unet"] / 1e6:.2f}M | channels {record["size"]["unet_channels"]}, cross-attention at levels {record["size"]["attention_levels"]} |
| CLIPTextModel | {parameters["text_encoder"] / 1e6:.2f}M | width {record["size"]["text_width"]}, {record["size"]["text_layers"]} layers; trained jointly with the UNet |

SD's noise schedule (scaled_linear 0.00085-0.012, 1000 steps), epsilon prediction; sampled with DPM-Solver++ (order 2).
Stored in half precision: {files.megabytes.sum():.1f} MB in {len(files)} files, largest {files.megabytes.max():.1f} MB.

## Training (`make companion`)
| stage | steps | batch | learning rate | wall time |
| --- | ---: | ---: | ---: | ---: |
| VAE (L1 + MSE + {record["settings"]["kl_weight"]:g} KL) | {record["settings"]["vae_steps"]} | {record["settings"]["vae_batch_size"]} | {record["settings"]["vae_learning_rate"]:g} | {minutes(record["vae_seconds"])} |
| UNet + text encoder (min-SNR-{record["settings"]["snr_gamma"]:g}, EMA) | {record["settings"]["unet_steps"]} | {record["settings"]["unet_batch_size"]} | {record["settings"]["unet_learning_rate"]:g} | {minutes(record["denoiser_seconds"])} |

Hardware: {record["hardware"]}, {record["torch_threads"]} torch threads, torch {record.get("torch", "(not recorded)")}.
AdamW, cosine schedule, checkpoints every {record["settings"]["checkpoint_every"]} steps (an interrupted
`make companion` resumes).

![loss](loss.png)

## Does GeNIe work with it? The oracle's judgement
An independent classifier, the oracle (a small CNN trained only on real generator-pool images, with random zoom,
shift and blur so that it does not reject an image for being slightly soft: it is lenient on blurry outputs;
top-1 {oracle["evaluation_top1"]:.3f} on the {oracle["evaluation_images"]} unseen evaluation-pool images), scores GeNIe
outputs of {pairs} (source, target) pairs: every class of the dataset as the target the same number of times,
sources drawn from the evaluation pool's images of other classes, {int(curve.steps.iloc[0])} DPM-Solver++ steps,
guidance 7.5. Each cell: mean P(target) / mean P(source) / share of images the oracle names the target, each
target class weighing the same; groups by the target class (bins by generator-pool images: many > 100, few < 20).

{table}

Over all classes, {crossing(cross, everyone.noise_ratio.min())}.
GeNIe at r = 0.8 made {curve.genie_images_per_second.iloc[0]:.2f} images/s while judging ({curve.hardware.iloc[0]},
batch {profile["generation"]["batch_size"]}).

![judge](judge.png)

Sample outputs (source, then GeNIe at each r):

![samples](samples.png)
"""
    (folder / "README.md").write_text(text)
    return folder / "README.md"
