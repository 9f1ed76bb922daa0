"""Evidence for the companion model: the oracle's judgement of GeNIe outputs, and the model card."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import plots
from ..data import class_display_names, load_dataset
from ..generate import GenieGenerator, profile_recipe
from ..oracle import consistency_summary, crossover, label_consistency, load_oracle, random_pairs
from ..profiles import resolve
from ..splits import EVALUATION, load_splits, pool_images
from ..store import Store

JUDGE_RATIOS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def judge(profile: dict, folder=None, pairs: int = 120, ratios=JUDGE_RATIOS, seed: int = 0, progress: bool = True):
    """GeNIe outputs of `pairs` random (source, target) pairs at each r, scored by the oracle.

    Sources come from the evaluation pool (never seen by the generator), source and target classes from the
    few-shot eligible classes (1-shot), where GeNIe is used. Writes `judge_curve.csv` (means per r) into the
    model folder and the per-image table into `results/<profile>/companion/`. Returns the summary."""
    folder = Path(folder) if folder else resolve(profile, profile["companion"]["output"])
    dataset = load_dataset(profile, progress=False)
    eligible = load_splits(profile, dataset)["fewshot_classes.csv"]
    classes = list(eligible[eligible.eligible_1shot.astype(bool)].class_name)
    chosen = random_pairs(pool_images(profile, dataset, EVALUATION), classes, pairs, seed)
    recipe = profile_recipe(profile)
    generator = GenieGenerator.from_pretrained(folder, recipe, batch_size=profile["generation"]["batch_size"])
    results = resolve(profile, profile["paths"]["results"]) / "companion"
    table = label_consistency(generator, load_oracle(resolve(profile, profile["oracle"]["output"])), chosen, ratios,
                              Store(results / "judge-store"), class_display_names(dataset), progress=progress)
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "judge_images.csv", index=False)
    summary = consistency_summary(table).assign(classes=len(classes), steps=recipe.num_inference_steps)
    summary.to_csv(folder / "judge_curve.csv", index=False)
    return summary


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
    plots.class_probability_curve(folder / "judge_curve.csv", "oracle on GeNIe outputs").savefig(
        folder / "judge.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    images = pd.read_csv(results / "judge_images.csv")
    store = Store(results / "judge-store")
    rows = pd.DataFrame([store.row(k) for k in images.key])
    plots.pairs_by_noise_ratio(store, rows, samples).savefig(folder / "samples.png", dpi=90, bbox_inches="tight",
                                                             metadata={"Software": None})
    at = curve.set_index("noise_ratio")
    cross = crossover(curve)
    parameters = record["parameters"]
    files = model_files(folder)
    table = "\n".join(f"| {r:g} | {at.p_target[r]:.3f} | {at.p_source[r]:.3f} | {at.oracle_target[r]:.2f} |"
                      for r in at.index)
    minutes = lambda s: f"{s / 60:.1f} min"  # noqa: E731
    text = f"""# genie-companion: a small latent-diffusion model for the embedded profile

A Stable-Diffusion-v1.5-shaped text-to-image pipeline (`StableDiffusionImg2ImgPipeline`: AutoencoderKL,
UNet2DConditionModel with cross-attention, CLIPTextModel, SD's CLIP BPE tokenizer), trained from scratch on
64x64 OpenMoji emoji so that GeNIe runs offline. It loads exactly like SD v1.5:
`StableDiffusionImg2ImgPipeline.from_pretrained("models/genie-companion")`.

## Data
- {record["training_images"]} images of the **generator pool** ({record["classes"]} classes), never the evaluation
  pool (genie_utils/splits/openmoji). Prompts `a photo of a {{class name}}.` (the Unicode subgroup, hyphens as spaces),
  10% empty prompts for classifier-free guidance.
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

Hardware: {record["hardware"]}, {record["torch_threads"]} torch threads. AdamW, cosine schedule, checkpoints every
{record["settings"]["checkpoint_every"]} steps (an interrupted `make companion` resumes).

![loss](loss.png)

## Does GeNIe work with it? The oracle's judgement
An independent classifier (the oracle: a small CNN trained only on real generator-pool images; top-1
{oracle["evaluation_top1"]:.3f} on the {oracle["evaluation_images"]} unseen evaluation-pool images) scores GeNIe
outputs of {int(at.pairs.iloc[0])} random (source, target) pairs: sources from the evaluation pool, classes from
the {int(curve.classes.iloc[0])} few-shot eligible classes, {int(curve.steps.iloc[0])} DPM-Solver++ steps, guidance 7.5.

| r | mean P(target) | mean P(source) | oracle says target |
| ---: | ---: | ---: | ---: |
{table}

P(target) crosses P(source) at r = {"%.2f" % cross if cross is not None else "(never)"}.

![judge](judge.png)

Sample outputs (source, then GeNIe at each r):

![samples](samples.png)
"""
    (folder / "README.md").write_text(text)
    return folder / "README.md"
