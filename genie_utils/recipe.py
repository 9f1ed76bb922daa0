"""The paper's methods (GeNIe and its baselines, each a noise ratio and whose class the prompt names), the grids
of r the experiments sweep, and the sampling recipe: steps, guidance, prompt, seeds, and how r selects the
schedule's last steps. docs/method.md specifies each choice against the paper and the official code."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .validation import (check_guidance_scale, check_image_size, check_noise_ratio, check_prompt_template,
                         check_seed, check_steps)


@dataclass(frozen=True)
class Method:
    """An augmentation method: its noise ratio and whose class the prompt names."""
    name: str
    noise_ratio: float
    prompt_class: str  # "target": another class (GeNIe); "own": the source's class (baselines)


GENIE_NOISE_RATIO = 0.8  # GeNIe's r, the paper's: the source's layout kept, the target's class shown

METHODS = {
    "genie": Method("genie", GENIE_NOISE_RATIO, "target"),
    "img2img_low": Method("img2img_low", 0.3, "own"),     # Img2Img^L
    "img2img_high": Method("img2img_high", 0.7, "own"),   # Img2Img^H
    # The official script runs its "txt2img" at r = 0.8 by mistake; text-to-image is r = 1.0.
    "txt2img": Method("txt2img", 1.0, "own"),
}

# The grids of r, each its experiment's own (an image's store key holds its r, so a grid is part of the results).
ADA_RATIOS = (0.5, 0.6, 0.7, 0.8, 0.9)  # GeNIe-Ada's candidates, one noise draw per pair (the paper's R)
EDITING_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the editing benchmark: every tenth of the range
JUDGE_RATIOS = (0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the model card's oracle curve: the editing r but 0.4
SAMPLE_RATIOS = ADA_RATIOS + (1.0,)  # the model card's samples of one target: GeNIe-Ada's R and text-to-image
STEPS_BENCHMARK_RATIOS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the denoising-steps benchmark: Img2Img^L, R, Txt2Img

# Scheduler settings that decide the timesteps: pinned, so that a model folder cannot change them silently.
SCHEDULER_SETTINGS = dict(algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="linspace",
                          use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
                          use_lu_lambdas=False)


@dataclass(frozen=True)
class Recipe:
    """Sampling settings; defaults are the official GeNIe recipe."""
    num_inference_steps: int = 50
    guidance_scale: float = 7.5          # classifier-free guidance; <= 1 turns guidance off
    prompt_template: str = "a photo of a {}."
    negative_prompt: str = ""            # the unconditional branch is the empty prompt
    seed: int = 0                        # base seed; each image's seed derives from it (pair_seed)
    height: int | None = None            # None: the UNet's native size (512 for SD v1.5)
    width: int | None = None
    # Guidance only at timesteps low <= t <= high, the conditional prediction alone elsewhere (Kynkaanniemi et
    # al. 2024, "Applying guidance in a limited interval"); None guides every step, as the official recipe.
    guidance_timesteps: tuple[int, int] | None = None

    def __post_init__(self):
        # checked, not converted: the values go into every image's store key as given
        check_steps(self.num_inference_steps)
        check_guidance_scale(self.guidance_scale)
        check_seed(self.seed, "seed")
        if not isinstance(self.negative_prompt, str):
            raise ValueError(f"negative_prompt must be text (the unconditional branch's prompt, '' by default), got "
                             f"{self.negative_prompt!r}")
        check_prompt_template(self.prompt_template)
        check_image_size(self.height, "height")
        check_image_size(self.width, "width")
        if self.guidance_timesteps is not None:
            low, high = self.guidance_timesteps
            if not 0 <= low <= high <= 999:
                raise ValueError(f"guidance_timesteps must be (low, high) with 0 <= low <= high <= 999, got "
                                 f"{self.guidance_timesteps!r}")
            object.__setattr__(self, "guidance_timesteps", (int(low), int(high)))

    def prompt(self, display_name: str) -> str:
        return self.prompt_template.format(display_name)

    def guides_at(self, timestep) -> bool:
        """Whether the step at `timestep` runs classifier-free guidance."""
        if self.guidance_scale <= 1:
            return False
        if self.guidance_timesteps is None:
            return True
        low, high = self.guidance_timesteps
        return low <= int(timestep) <= high


def kept_steps(num_inference_steps: int, noise_ratio: float) -> int:
    """How many of the schedule's last steps r runs: int(steps * r), exactly as diffusers img2img's
    `strength` (so r = 0.58 with 50 steps runs 28, since 50 * 0.58 = 28.999...)."""
    return min(int(num_inference_steps * check_noise_ratio(noise_ratio)), num_inference_steps)


def pair_seed(seed: int, source_id: str, target_class: str, variant: int = 0) -> int:
    """The seed of one generated image, from (base seed, source id, target class, variant).

    It does not depend on r (a pair gets the same noise at every r, as GeNIe-Ada needs), nor on batch
    size or order. `variant` numbers several images of one (source, class), as the baselines make.
    """
    text = f"{seed}|{source_id}|{target_class}|{variant}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


def profile_recipe(profile: dict) -> Recipe:
    """The sampling recipe a profile's `[generation]` table names, at the dataset's resolution."""
    settings, size = profile["generation"], profile["dataset"]["resolution"]
    interval = settings.get("guidance_timesteps")
    if interval is not None and len(interval) != 2:
        raise ValueError(f"[generation] guidance_timesteps must be [low, high], got {interval!r}")
    return Recipe(settings["num_inference_steps"], settings["guidance_scale"], settings["prompt_template"],
                  seed=settings["seed"], height=size, width=size,
                  guidance_timesteps=tuple(interval) if interval else None)
