"""Evidence for the companion model: the oracle's judgement of GeNIe outputs, and the model card."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import editing, plots
from ..data import class_display_names, load_dataset
from ..editing import TARGETS, profile_target_groups
from ..emoji_styles import EMOJI_STYLES, STYLE_SCALE
from ..generate import GenieGenerator
from ..jobs import run_jobs
from ..oracle import consistency_summary, crossover, label_consistency, load_oracle
from ..pairing import pairs_per_target, sweep_jobs
from ..profiles import resolve
from ..recipe import GENIE_NOISE_RATIO, JUDGE_RATIOS, SAMPLE_RATIOS, profile_recipe
from ..run_files import RunFiles
from ..splits import EVALUATION, fewshot_eligibility, pool_images
from ..store import Store
from .train import hardware

SAMPLING_WORDS = {"uniform": "uniformly over images (classes in proportion to their size)",
                  "sqrt": "with each class in proportion to the square root of its size",
                  "balanced": "class-balanced (every class equally often, however few its images)"}


def judge(profile: dict, folder=None, per_class: int = 2, ratios=JUDGE_RATIOS, seed: int = 0, progress: bool = True):
    """GeNIe outputs judged by the oracle at each r, for `per_class` pairs with each of the dataset's classes as
    the target (sources: evaluation-pool images of other classes, never seen by the generator).

    Writes `judge_curve.csv` into the model folder: one curve per group of target classes, each class weighing
    the same: all classes, the long-tail bins by generator-pool size (the profile's `[splits]` thresholds), and the
    15 classes few-shot eligible with 16 queries (the first model card's classes). Also GeNIe's images per second
    at its r (`recipe.GENIE_NOISE_RATIO`) on the machine that judged. The judge is the profile's oracle `path`
    (where the embedded profile's `make companion` also writes a retrained one), as in the editing benchmark.
    Returns that table."""
    folder = Path(folder) if folder else resolve(profile, profile["companion"]["output"])
    dataset = load_dataset(profile, progress=False)
    evaluation = pool_images(profile, dataset, EVALUATION)
    classes = sorted(dataset.class_name.unique())
    chosen = pairs_per_target(evaluation, classes, per_class, seed)
    recipe = profile_recipe(profile)
    generator = GenieGenerator.from_pretrained(folder, recipe, batch_size=profile["generation"]["batch_size"])
    evidence = RunFiles.of(profile).companion
    store = Store(evidence.judge_store)
    table = label_consistency(generator, load_oracle(resolve(profile, profile["oracle"]["path"])), chosen, ratios,
                              store, class_display_names(dataset), progress=progress)
    evidence.folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(evidence.judge_images, index=False)
    sixteen = fewshot_eligibility(evaluation, [1], 16)  # what 1-shot episodes with the paper's 16 queries can use
    groups = {**profile_target_groups(profile, dataset),
              "15 classes eligible at 16 queries": list(sixteen[sixteen.eligible_1shot].class_name)}
    seconds = [store.row(k)["seconds"] for k, r in zip(table.key, table.noise_ratio) if r == GENIE_NOISE_RATIO]
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
    oracle = json.loads(resolve(profile, profile["oracle"]["path"]).with_suffix(".json").read_text())
    curve = pd.read_csv(folder / "judge_curve.csv")
    evidence = RunFiles.of(profile).companion
    losses = [folder / f"training_loss_{stage}.csv" for stage in ("vae", "denoiser", "finetune")]
    plots.loss_curves(*[path for path in losses if path.is_file()]).savefig(
        folder / "loss.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    everyone = curve[curve.group == "all classes"]
    everyone.to_csv(evidence.judge_curve_all_classes, index=False)
    plots.class_probability_curve(evidence.judge_curve_all_classes,
                                  f"oracle on GeNIe outputs, all {int(everyone.classes.iloc[0])} target classes").savefig(
        folder / "judge.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    images = pd.read_csv(evidence.judge_images)
    store = Store(evidence.judge_store)
    rows = pd.DataFrame([store.row(k) for k in images.key])
    plots.pairs_by_noise_ratio(store, rows, samples).savefig(folder / "samples.png", dpi=90, bbox_inches="tight",
                                                             metadata={"Software": None})
    editing_section = editing_text(profile, folder, record["training_images"])
    cross = crossover(everyone)
    parameters = record["parameters"]
    files = model_files(folder)
    table = judge_table(curve)
    pairs = int(everyone.pairs.iloc[0])
    thresholds = profile["splits"]  # the long-tail bins' (`splits.bin_of`), as the judge's groups use them
    minutes = lambda s: f"{s / 60:.1f} min"  # noqa: E731
    base = record.get("fine_tuned_from", record)  # the VAE and the first denoiser training
    settings = base["settings"]
    finetune = ""
    if "fine_tuned_from" in record:
        tuned = record["settings"]
        finetune = (f"\n| fine-tuning: UNet + text encoder{training_words(tuned)} | {tuned['unet_steps']} | "
                    f"{tuned['unet_batch_size']} | {tuned['unet_learning_rate']:g} | {minutes(record['denoiser_seconds'])} |")
        checkpoint_words = f", {tuned['checkpoint_every']} in the fine-tuning"
        finetune_hardware = (f"\nFine-tuning hardware: {record['hardware']}, {record['torch_threads']} torch threads, "
                             f"torch {record['torch']}.{snapshot_words(record)}")
    else:
        finetune_hardware = checkpoint_words = ""
    text = f"""# genie-companion: a small latent-diffusion model for the embedded profile

A Stable-Diffusion-v1.5-shaped text-to-image pipeline (`StableDiffusionImg2ImgPipeline`: AutoencoderKL,
UNet2DConditionModel with cross-attention, CLIPTextModel, SD's CLIP BPE tokenizer), trained from scratch on
64x64 OpenMoji emoji{", then fine-tuned (below)," if finetune else ""} so that GeNIe runs offline. It loads exactly like SD v1.5:
`StableDiffusionImg2ImgPipeline.from_pretrained("models/genie-companion")`.

## Data
- {record["training_images"]} images of the **generator pool** ({record["classes"]} classes), never the evaluation
  pool (genie_utils/splits/openmoji). Prompts `a photo of a {{class name}}.` (the Unicode subgroup, hyphens as spaces){caption_words(record)},
  10% empty prompts for classifier-free guidance. Batches drawn {SAMPLING_WORDS[record["settings"].get("sampling", "uniform")]}.
- OpenMoji emoji (openmoji.org) are CC BY-SA 4.0; this model is trained on them and shared under the same licence.{style_words(record)}

## Model
| part | parameters | note |
| --- | ---: | --- |
| VAE (AutoencoderKL) | {parameters["vae"] / 1e6:.2f}M | 64x64x3 -> 16x16x4 (f = 4), scaling factor {record["vae_scaling_factor"]:.4f} (1 / latent std) |
| UNet2DConditionModel | {parameters["unet"] / 1e6:.2f}M | channels {record["size"]["unet_channels"]}, cross-attention at levels {record["size"]["attention_levels"]} |
| CLIPTextModel | {parameters["text_encoder"] / 1e6:.2f}M | width {record["size"]["text_width"]}, {record["size"]["text_layers"]} layers; trained jointly with the UNet |

{schedule_words(record["settings"])}; sampled with DPM-Solver++ (order 2).
Stored in half precision: {files.megabytes.sum():.1f} MB in {len(files)} files, largest {files.megabytes.max():.1f} MB.

## Training (`make companion`)
| stage | steps | batch | learning rate | wall time |
| --- | ---: | ---: | ---: | ---: |
| VAE (L1 + MSE + {settings["kl_weight"]:g} KL) | {settings["vae_steps"]} | {settings["vae_batch_size"]} | {settings["vae_learning_rate"]:g} | {minutes(base["vae_seconds"])} |
| UNet + text encoder{training_words(settings)} | {settings["unet_steps"]} | {settings["unet_batch_size"]} | {settings["unet_learning_rate"]:g} | {minutes(base["denoiser_seconds"])} |{finetune}

Hardware: {base["hardware"]}, {base["torch_threads"]} torch threads, torch {base.get("torch", "(not recorded)")}.{finetune_hardware}
AdamW, cosine schedule, checkpoints every {settings["checkpoint_every"]} steps{checkpoint_words} (an interrupted
`make companion` resumes).

![loss](loss.png)

## Does GeNIe work with it? The oracle's judgement
An independent classifier, the oracle (a small CNN trained only on real generator-pool images, with random zoom,
shift and blur so that it does not reject an image for being slightly soft: it is lenient on blurry outputs;
top-1 {oracle["evaluation_top1"]:.3f} on the {oracle["evaluation_images"]} unseen evaluation-pool images), scores GeNIe
outputs of {pairs} (source, target) pairs: every class of the dataset as the target the same number of times,
sources drawn from the evaluation pool's images of other classes, {int(curve.steps.iloc[0])} DPM-Solver++ steps,
guidance {profile_recipe(profile).guidance_scale:g}. Each cell: mean P(target) / mean P(source) / share of images the oracle names the target, each
target class weighing the same; groups by the target class (bins by generator-pool images: many > {thresholds["many_shot_threshold"]}, few < {thresholds["few_shot_threshold"]}).

{table}

Over all classes, {crossing(cross, everyone.noise_ratio.min())}.
GeNIe at r = {GENIE_NOISE_RATIO:g} made {curve.genie_images_per_second.iloc[0]:.2f} images/s while judging ({curve.hardware.iloc[0]},
batch {profile["generation"]["batch_size"]}).

![judge](judge.png)

Sample outputs (source, then GeNIe at each r):

![samples](samples.png)
{editing_section}"""
    (folder / "README.md").write_text(text)
    return folder / "README.md"


def one_target_samples(profile: dict, folder=None, sources: int = 6,
                       ratios=SAMPLE_RATIOS) -> Path:
    """Several sources to one target: GeNIe outputs of `sources` evaluation-pool images of other classes towards
    the walkthrough's first target class, at each r; drawn as `samples_one_target.png` in the model folder."""
    folder = Path(folder) if folder else resolve(profile, profile["companion"]["output"])
    dataset = load_dataset(profile, progress=False)
    target = profile["walkthrough"]["targets"][0]
    pairs = pairs_per_target(pool_images(profile, dataset, EVALUATION), [target], sources, seed=0)
    generator = GenieGenerator.from_pretrained(folder, profile_recipe(profile), batch_size=profile["generation"]["batch_size"])
    store = Store(RunFiles.of(profile).companion.judge_store)
    rows = run_jobs(generator, sweep_jobs(pairs, ratios), store, class_display_names(dataset), progress=False)
    path = folder / "samples_one_target.png"
    plots.pairs_by_noise_ratio(store, rows, sources).savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
    return path


def caption_words(record: dict) -> str:
    """The training's captions besides the prompt template, if it had any."""
    templates = record["settings"].get("caption_templates") or []
    if not templates:
        return ""
    shown = ["`" + t.replace("{}", "{class name}") + "`" for t in templates]
    return "; also " + ", ".join(shown) + ", one drawn at random per image and step"


def snapshot_words(record: dict) -> str:
    """Which EMA snapshot of a fine-tuning was kept, and how the snapshots compared, for the model card."""
    choice = record.get("snapshot_choice")
    if not choice:
        return ""
    rows = "\n".join(f"| {row['step']} | {row['copy_rate']:.3f} | {row['p_target']:.3f} | {row['hard_negative_rate']:.3f} |"
                     for row in choice["snapshots"])
    return f"""

The weights kept are the EMA snapshot of step **{choice['chosen_step']}**, chosen by `choose_snapshot`: the lowest
copy rate at r = {choice['ratio']:g} among the snapshots whose P(target) there reaches {TARGETS['p_target_at_0.8']:g} (the highest P(target) if none
does), on {choice['pairs_per_class']} pair per target class (seed {choice['seed']}, other pairs than below), {choice['setting']}:

| step | copy rate | P(target) | hard negatives |
| ---: | ---: | ---: | ---: |
{rows}
"""

def schedule_words(settings: dict) -> str:
    """The noise schedule and prediction target of a training record's settings, in words."""
    shift, zero = settings.get("schedule_shift", 0.0), settings.get("zero_terminal_snr", False)
    if not shift and not zero:
        return "SD's noise schedule (scaled_linear 0.00085-0.012, 1000 steps), epsilon prediction"
    return ("SD's noise schedule (scaled_linear 0.00085-0.012, 1000 steps) with its log-SNR raised by "
            f"{shift:g} at every timestep, for the 4x coarser latent (stored as `trained_betas`)"
            + (", rescaled to zero terminal SNR (`rescale_betas_zero_snr`), v-prediction" if zero else
               ", epsilon prediction"))


def style_words(record: dict) -> str:
    """The other emoji sets a training drew the generator pool's emoji from (`renderings`), with their licences."""
    counts = record.get("styles") or {}  # images per style, in records written since the pack counts them
    styles = record["settings"].get("renderings") or []
    if not styles:
        return ""
    sets = ", ".join(f"{EMOJI_STYLES[k][3]} ({f'{counts[k]} images, ' if k in counts else ''}npm "
                     f"`{EMOJI_STYLES[k][0]}@{EMOJI_STYLES[k][1]}`)" for k in styles)
    stage = "The fine-tuning" if "fine_tuned_from" in record else "The training"
    prompts = ("same identities and classes, their captions naming the set before the class (`a photo of a twitter "
               "{class name}.`), so that the recipe's plain prompts ask for OpenMoji's style"
               if record["settings"].get("style_captions") else "same identities, classes and prompts")
    return (f"\n- {stage} also shows the same generator-pool emoji as other emoji sets draw them, where they do: "
            f"{sets}, scaled to {STYLE_SCALE:g} of the side on white (`emoji_styles.style_renderings`); {prompts}; never an "
            "evaluation-pool identity.")


def training_words(settings: dict) -> str:
    """What a denoiser training did besides the basics, for the training table."""
    words = [f"min-SNR-{settings['snr_gamma']:g}", "EMA"]
    if settings.get("zero_terminal_snr"):
        words.append("v-prediction")
    if settings.get("flip"):
        words.append("mirrored images where the meaning allows")
    if settings.get("caption_templates"):
        words.append(f"{len(settings['caption_templates']) + 1} caption templates")
    if settings.get("unet_dropout"):
        words.append(f"dropout {settings['unet_dropout']:g}")
    return f" ({', '.join(words)})"


def editing_table(summary: pd.DataFrame, group: str = "all classes") -> str:
    """One setting's editing benchmark for one group as a markdown table: a row per r, each measure with its 95%
    half-width over target classes."""
    rows = summary[summary.group == group].sort_values("noise_ratio")
    measures = {"p_target": "P(target)", "p_source": "P(source)", "copy_rate": "copy rate", "keep": "source keep",
                "hard_negative_rate": "hard negatives"}
    cell = lambda row, m: f"{row[m]:.2f} ± {row[m + '_half_width']:.2f}"  # noqa: E731
    return "\n".join(["| r | " + " | ".join(measures.values()) + " |", "| ---: |" + " ---: |" * len(measures)]
                     + [f"| {row.noise_ratio:g} | " + " | ".join(cell(row, m) for m in measures) + " |"
                        for _, row in rows.iterrows()])


def editing_rows(profile: dict, path: Path) -> tuple[str, pd.DataFrame]:
    """The label of the profile's own recipe and the rows of the editing benchmark's `path` (editing.csv) at it; a
    ValueError when the file has none."""
    summary = pd.read_csv(path)
    recipe = profile_recipe(profile)
    own = editing.Setting(recipe.num_inference_steps, recipe.guidance_scale, recipe.guidance_timesteps).label
    if own not in set(summary.setting):
        raise ValueError(f"{path} has no rows at the profile's recipe ({own}): run the editing stage again")
    return own, summary[summary.setting == own]


def targets_table(rows: pd.DataFrame) -> str:
    """The editing benchmark's targets (`editing.TARGETS`) against what `rows` (one setting) reached, as Markdown."""
    return "\n".join(["| target | asked | reached | met |", "| --- | --- | ---: | --- |"]
                     + [f"| {row.target} | {row.asked} | {row.reached:.2f} | {'yes' if row.met else '**no**'} |"
                        for row in editing.target_check(rows).itertuples()])


def editing_text(profile: dict, folder: Path, training_images: int) -> str:
    """The model card's section on the editing benchmark, from `editing.csv` in the model folder (written by
    `benchmarks/editing.py --card` or `make companion`); empty when there is none. Draws editing.png beside it."""
    path = folder / "editing.csv"
    if not path.is_file():
        return ""
    summary = pd.read_csv(path)
    plots.editing_curves(path).savefig(folder / "editing.png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    own, mine = editing_rows(profile, path)
    everyone = mine[mine.group == "all classes"]
    tables = "\n\n".join(f"**{setting}** (all classes):\n\n{editing_table(part)}"
                          for setting, part in summary.groupby("setting", sort=False))
    bins = "\n\n".join(f"**{group}** ({int(mine[mine.group == group].classes.iloc[0])} classes):\n\n"
                        f"{editing_table(mine, group)}" for group in dict.fromkeys(mine.group) if group != "all classes")
    one_target = ("" if not (folder / "samples_one_target.png").is_file() else
                  f"\nSeveral sources (evaluation pool) to one target class, {profile['walkthrough']['targets'][0]}, "
                  f"at the embedded recipe:\n\n![one target](samples_one_target.png)\n")
    targets = targets_table(mine)
    return f"""
## Does it edit like Stable Diffusion? The editing benchmark
GeNIe needs a middle range of r in which the output keeps the source's layout and colours but shows the target
class. `benchmarks/editing.py` (`genie_utils.editing`) measures it on {int(everyone.pairs.iloc[0])} pairs per r: every
class the target {int(everyone.pairs.iloc[0]) // int(everyone.classes.iloc[0])} times, sources from the evaluation pool
(images the generator never saw), one noise draw per pair. Per r, each target class weighing the same, with 95%
half-widths over target classes:
- **P(target), P(source)**: the oracle's mean probabilities;
- **copy rate**: outputs whose nearest training image (pixel L2, all {training_images}
  generator-pool images it trained on, in every emoji set named above, and the mirror images of those that mirroring leaves meaningful) is under {editing.COPY_RATIO:.3g} times as far as the nearest image of another identity (the ratio
  test of Gu et al. 2023, with skin-tone renderings of one emoji counted as one identity);
- **source keep**: the distance of the output's {editing.KEEP_PIXELS}x{editing.KEEP_PIXELS} block means to the source's,
  divided by the same for the text-only output (r = 1) of the same seed and prompt: 0 keeps the source's layout,
  1 keeps nothing of it;
- **hard negatives**: the oracle names the target, keep <= {editing.HARD_NEGATIVE_KEEP:g}, and the output is no copy.

Targets, at the embedded recipe ({own}):

{targets}

{tables}

By the long-tail bin of the target class ({own}):

{bins}

![editing](editing.png)
{one_target}"""
