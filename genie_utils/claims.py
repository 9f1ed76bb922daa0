"""The paper's claims and their verdicts: each claim is a paired difference A - B (few-shot accuracy episode by
episode, or long-tail Few-bin top-1 seed by seed) with its 95% Student-t interval, and the verdict that interval
allows at the half-width m asked of it before the run (2.0 points in 1-shot, 2.5 in 5-shot, the profile's
`[fewshot] target_half_widths` and `[longtail] target_half_width`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .results import episodes_needed, interval, method_label

HOLDS, REVERSED, NO_DIFFERENCE, UNRESOLVED = "holds", "reversed", "no difference beyond m", "unresolved"
NOT_RUN = "not yet run"


@dataclass(frozen=True)
class Claim:
    """`first` beats `second`: the paper's statement, and the rows of the result tables it compares."""
    statement: str
    first: str
    second: str
    experiment: str  # "fewshot" (per shot count) or "longtail" (on the Few bin)


FEWSHOT_CLAIMS = tuple(
    [Claim(f"GeNIe beats {method_label(m)}", "genie", m, "fewshot") for m in ("weak", "strong", "mixup", "cutmix")]
    + [Claim(f"GeNIe beats {method_label(m)}", "genie", m, "fewshot") for m in ("img2img_low", "img2img_high", "txt2img")]
    + [Claim("GeNIe-Ada beats GeNIe", "genie_ada", "genie", "fewshot")])
LONGTAIL_CLAIMS = (
    Claim("GeNIe's Few-bin gain beats plain cross-entropy", "genie", "plain", "longtail"),
    Claim("GeNIe's Few-bin gain beats Txt2Img's", "genie", "txt2img", "longtail"),
    Claim("with logit adjustment, GeNIe's Few-bin gain beats logit adjustment alone", "genie+logit_adjusted",
          "logit_adjusted", "longtail"),
    Claim("with logit adjustment, GeNIe's Few-bin gain beats Txt2Img's", "genie+logit_adjusted",
          "txt2img+logit_adjusted", "longtail"))
CLAIMS = FEWSHOT_CLAIMS + LONGTAIL_CLAIMS


def verdict(low: float, high: float, margin: float) -> str:
    """The verdict a 95% interval [low, high] of A - B allows: `holds` when it lies above 0, `reversed` when below,
    `no difference beyond m` when it lies within ±`margin`, else `unresolved`."""
    if not low <= high:
        raise ValueError(f"an interval needs low <= high, not [{low}, {high}]")
    if margin <= 0:
        raise ValueError(f"the margin m must be positive, not {margin}")
    if low > 0:
        return HOLDS
    if high < 0:
        return REVERSED
    if -margin <= low and high <= margin:
        return NO_DIFFERENCE
    return UNRESOLVED


def units_to_resolve(mean: float, std: float, margin: float) -> int:
    """The episodes (or seeds) an unresolved difference would need, at its measured mean and spread, for an
    interval that resolves it: a half-width below |mean| (holds or reversed), or at most m - |mean| (no
    difference beyond m), whichever is reached first."""
    reach = max(abs(mean), margin - abs(mean))
    return episodes_needed(std, reach * (1 - 1e-9))


def paired(values: pd.DataFrame, first: str, second: str, unit: str, value: str) -> pd.Series:
    """`first` minus `second`, unit by unit (episodes or seeds both rows have), in percentage points."""
    wide = values.pivot_table(index=unit, columns="method", values=value)
    for method in (first, second):
        if method not in wide:
            raise KeyError(f"no rows of {method!r} in the results (rows: {sorted(wide.columns)})")
    return ((wide[first] - wide[second]) * 100).dropna()


def judge(claim: Claim, differences: pd.Series, margin: float, needed: int | None = None, **labels) -> dict:
    """One claim's row of the verdict table from its paired differences (points): n, mean, the Student-t
    interval, the verdict, and for an unresolved one the units it would need (`units_to_resolve`). `needed`:
    the units the run was sized for (its shortfall is `needed - n`)."""
    mean, half, n = interval(differences)
    low, high = (mean - half, mean + half) if n > 1 else (float("-inf"), float("inf"))
    std = float(np.std(differences, ddof=1)) if n > 1 else float("nan")
    outcome = verdict(low, high, margin) if n > 1 else UNRESOLVED
    return {"claim": claim.statement, **labels, "first": claim.first, "second": claim.second, "n": n,
            "mean": mean, "half_width": half if n > 1 else float("nan"), "low": low, "high": high, "margin": margin,
            "verdict": outcome, "sized_for": needed,
            "would_need": units_to_resolve(mean, std, margin) if outcome == UNRESOLVED and n > 1 else None}


def fewshot_verdicts(results: pd.DataFrame, margins: dict[int, float], sized_for: dict[int, int] | None = None,
                     claims: Sequence[Claim] = FEWSHOT_CLAIMS) -> pd.DataFrame:
    """Every few-shot claim per backbone and shot count from per-episode `results` (columns backbone, shots,
    episode, method, accuracy as a fraction); `margins`: shots -> m (points); `sized_for`: shots -> episodes the
    run was sized for."""
    rows = []
    for (backbone, shots), group in results.groupby(["backbone", "shots"], sort=True):
        if shots not in margins:
            continue
        for claim in claims:
            differences = paired(group, claim.first, claim.second, "episode", "accuracy")
            rows.append(judge(claim, differences, margins[shots], (sized_for or {}).get(shots),
                              setting=f"{shots}-shot", backbone=backbone))
    return pd.DataFrame(rows)


def not_run(shots: int, sized_for: int, margin: float, claims: Sequence[Claim] = FEWSHOT_CLAIMS) -> pd.DataFrame:
    """The verdict rows of a shot count none of whose episodes has run yet."""
    return pd.DataFrame([{"claim": c.statement, "setting": f"{shots}-shot", "first": c.first, "second": c.second,
                          "n": 0, "mean": float("nan"), "half_width": float("nan"), "low": float("nan"),
                          "high": float("nan"), "margin": margin, "verdict": NOT_RUN, "sized_for": sized_for,
                          "would_need": None} for c in claims])


def required_episodes(results: pd.DataFrame, margins: dict[int, float],
                      claims: Sequence[Claim] = FEWSHOT_CLAIMS) -> dict[int, int]:
    """The settle run's size, per shot count: the most episodes any claim needs for a 95% half-width of at most
    m (`margins`: shots -> points) at the spread of its per-episode differences in `results` (a pilot run)."""
    sizes = {}
    for (_, shots), group in results.groupby(["backbone", "shots"], sort=True):
        if shots in margins:
            needed = [episodes_needed(float(np.std(paired(group, c.first, c.second, "episode", "accuracy"), ddof=1)),
                                      margins[shots]) for c in claims]
            sizes[shots] = max(sizes.get(shots, 0), *needed)
    return sizes


def longtail_verdicts(bin_accuracy: pd.DataFrame, margin: float, sized_for: int | None = None,
                      test_images: pd.DataFrame | None = None, bin: str = "few",
                      claims: Sequence[Claim] = LONGTAIL_CLAIMS) -> pd.DataFrame:
    """Every long-tail claim on `bin` from per-seed `bin_accuracy` (columns backbone, method, seed, bin,
    accuracy), paired over training seeds: that interval covers the training noise of one generated set on one test
    set. `test_images` (`results.bootstrap_differences` rows: group, method, reference, low, high) adds the test
    set's noise: the verdict is then taken on the span of both intervals, so it holds only if both lie above 0."""
    rows = []
    for backbone, group in bin_accuracy[bin_accuracy.bin == bin].groupby("backbone", sort=True):
        for claim in claims:
            differences = paired(group, claim.first, claim.second, "seed", "accuracy")
            row = judge(claim, differences, margin, sized_for, setting=f"long tail, {bin} bin", backbone=backbone)
            if test_images is not None:
                match = test_images[(test_images.group == bin) & (test_images.method == claim.first)
                                    & (test_images.reference == claim.second)]
                if len(match) != 1:
                    raise KeyError(f"no test-image interval of {claim.first} - {claim.second} on the {bin} bin")
                row.update(test_low=float(match.low.iloc[0]), test_high=float(match.high.iloc[0]))
                row["test_set_short"] = verdict(row["test_low"], row["test_high"], margin) == UNRESOLVED
                if row["n"] > 1:
                    row["verdict"] = verdict(min(row["low"], row["test_low"]), max(row["high"], row["test_high"]),
                                             margin)
            rows.append(row)
    return pd.DataFrame(rows)


def verdict_table(verdicts: pd.DataFrame) -> str:
    """The verdicts as Markdown: one line per claim and setting, the interval with its n, the verdict (marked
    interim while fewer episodes or seeds have run than the run was sized for), and what an unresolved claim
    lacks."""
    lines = ["| claim | setting | A - B (points) | 95% interval (Student-t over n; bootstrap over test images) | n | m "
             "| verdict | what it lacks |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in verdicts.itertuples():
        units = "seeds" if row.setting.startswith("long tail") else "episodes"
        lacks = ""
        if row.verdict == UNRESOLVED and row.would_need is not None and not pd.isna(row.would_need) \
                and verdict(row.low, row.high, row.margin) == UNRESOLVED:
            lacks = f"about {int(row.would_need)} {units} at this spread"
        sized = row.sized_for is not None and not pd.isna(row.sized_for)
        if sized and row.n < row.sized_for:
            lacks = "; ".join(filter(None, [lacks, f"{int(row.sized_for) - row.n} of the {int(row.sized_for)} "
                                                   f"{units} sized for not yet run"]))
        interval_text = f"[{row.low:+.1f}, {row.high:+.1f}]" if row.n > 1 else "-"
        if not pd.isna(getattr(row, "test_low", float("nan"))):
            interval_text += f"; test images [{row.test_low:+.1f}, {row.test_high:+.1f}]"
            if row.verdict == UNRESOLVED and row.test_set_short:
                lacks = "; ".join(filter(None, [lacks, "a larger test set (more seeds do not narrow its interval)"]))
        mean = f"{row.mean:+.1f}" if row.n > 0 else "-"
        interim = row.verdict != NOT_RUN and sized and row.n < row.sized_for  # the run is not yet of its size
        lines.append(f"| {row.claim} | {row.setting} | {mean} | {interval_text} | {row.n} | {row.margin:g} "
                     f"| **{row.verdict}**{' (interim)' if interim else ''} | {lacks} |")
    return "\n".join(lines) + "\n"
