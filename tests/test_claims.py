"""The paper's claims: verdicts from paired Student-t intervals, and the settle run's size."""
import pandas as pd
import pytest

from genie_utils import claims, profiles


@pytest.mark.parametrize("low, high, expected", [
    (0.1, 3.0, claims.HOLDS),            # above 0
    (-3.0, -0.1, claims.REVERSED),       # below 0
    (-1.5, 1.9, claims.NO_DIFFERENCE),   # inside ±2
    (0.0, 1.0, claims.NO_DIFFERENCE),    # touching 0 is not above it
    (-2.0, 2.0, claims.NO_DIFFERENCE),   # the edges of ±m count as inside
    (-1.0, 2.5, claims.UNRESOLVED),      # across 0 and past m
    (-4.0, 4.0, claims.UNRESOLVED),
])
def test_verdict_of_an_interval(low, high, expected):
    assert claims.verdict(low, high, 2.0) == expected


def test_verdict_refuses_a_reversed_interval_or_no_margin():
    with pytest.raises(ValueError, match="low <= high"):
        claims.verdict(1.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="margin"):
        claims.verdict(-1.0, 1.0, 0.0)


def episodes(differences, shots=1, first="genie", second="weak"):
    """Per-episode results whose first - second is `differences` (points)."""
    rows = []
    for episode, d in enumerate(differences):
        rows += [{"backbone": "b", "shots": shots, "episode": episode, "method": second, "accuracy": 0.5},
                 {"backbone": "b", "shots": shots, "episode": episode, "method": first, "accuracy": 0.5 + d / 100}]
    return pd.DataFrame(rows)


def test_fewshot_verdict_from_paired_episodes_with_what_it_lacks():
    claim = claims.Claim("GeNIe beats weak", "genie", "weak", "fewshot")
    # differences 1, 2, 3: mean 2, s 1, half-width t(2) / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    table = claims.fewshot_verdicts(episodes([1, 2, 3]), {1: 2.0}, {1: 10}, claims=[claim])
    row = table.iloc[0]
    assert (row.n, row.setting, row.verdict) == (3, "1-shot", claims.UNRESOLVED)
    assert row["mean"] == pytest.approx(2.0) and row.half_width == pytest.approx(2.4841, abs=1e-4)
    assert (row.low, row.high) == (pytest.approx(-0.4841, abs=1e-4), pytest.approx(4.4841, abs=1e-4))
    # to resolve: a half-width below |mean| = 2 at s = 1: n = 4 gives t(3) / 2 = 1.59 (n = 3 gives 2.48)
    assert row.would_need == 4
    line = claims.verdict_table(table).splitlines()[2]
    assert line == ("| GeNIe beats weak | 1-shot | +2.0 | [-0.5, +4.5] | 3 | 2 | **unresolved** (interim) | about 4 episodes "
                    "at this spread; 7 of the 10 episodes sized for not yet run |")
    complete = claims.fewshot_verdicts(episodes([1, 2, 3]), {1: 2.0}, {1: 3}, claims=[claim])
    assert "| **unresolved** | about 4 episodes at this spread |" in claims.verdict_table(complete)
    # five differences of 2 and 3: mean 2.4, s 0.5477, half-width 2.7764 * 0.5477 / 2.2361 = 0.68: holds
    held = claims.fewshot_verdicts(episodes([2, 3, 2, 3, 2]), {1: 2.0}, claims=[claim]).iloc[0]
    assert held.verdict == claims.HOLDS and held.would_need is None


def test_longtail_verdict_pairs_the_few_bin_seed_by_seed():
    rows = [{"backbone": "b", "method": m, "seed": seed, "bin": b, "accuracy": acc}
            for seed, (plain, genie) in enumerate([(0.40, 0.405), (0.41, 0.41), (0.39, 0.40)])
            for b in ("few", "many") for m, acc in (("plain", plain), ("genie", genie if b == "few" else 0.9))]
    claim = claims.LONGTAIL_CLAIMS[0]
    row = claims.longtail_verdicts(pd.DataFrame(rows), 2.0, 3, claims=[claim]).iloc[0]
    # few: 0.5, 0, 1 points: mean 0.5, s 0.5, half-width 4.3027 * 0.5 / 1.7321 = 1.2421: inside ±2
    assert (row.n, row.setting) == (3, "long tail, few bin")
    assert row.half_width == pytest.approx(1.2421, abs=1e-4)
    assert row.verdict == claims.NO_DIFFERENCE


def test_a_missing_row_is_named():
    with pytest.raises(KeyError, match="txt2img"):
        claims.paired(episodes([1, 2]), "genie", "txt2img", "episode", "accuracy")


def test_the_settle_profile_is_sized_by_the_rule_from_its_pilot():
    """embedded-settle's episode counts are what `required_episodes` gives on the run it names as sized_from."""
    settle = profiles.load_profile("embedded-settle")
    pilot = pd.read_csv(profiles.resolve(settle, settle["settle"]["sized_from"]))
    margins = dict(zip(settle["fewshot"]["shots"], settle["fewshot"]["target_half_widths"]))
    assert claims.required_episodes(pilot, margins) == dict(zip(settle["fewshot"]["shots"], settle["fewshot"]["episodes"]))


def test_a_long_tail_claim_holds_only_if_its_test_image_interval_agrees():
    # plain 40%, genie 42 / 43 / 42 / 43 / 42 on the Few bin: over seeds +2.4 [+1.7, +3.1], holds
    rows = [{"backbone": "b", "method": m, "seed": seed, "bin": "few", "accuracy": acc}
            for seed, genie in enumerate([0.42, 0.43, 0.42, 0.43, 0.42]) for m, acc in (("plain", 0.40), ("genie", genie))]
    claim = claims.LONGTAIL_CLAIMS[0]
    seeds_only = claims.longtail_verdicts(pd.DataFrame(rows), 2.0, claims=[claim]).iloc[0]
    assert seeds_only.verdict == claims.HOLDS
    test_images = pd.DataFrame([{"group": "few", "method": "genie", "reference": "plain", "low": -0.5, "high": 4.0}])
    both = claims.longtail_verdicts(pd.DataFrame(rows), 2.0, 5, test_images, claims=[claim])
    assert both.iloc[0].verdict == claims.UNRESOLVED  # [-0.5, +4.0] spans 0 and m
    line = claims.verdict_table(both).splitlines()[2]
    assert "[+1.7, +3.1]; test images [-0.5, +4.0]" in line
    assert line.endswith("| **unresolved** | a larger test set (more seeds do not narrow its interval) |")
    with pytest.raises(KeyError, match="genie - plain"):
        claims.longtail_verdicts(pd.DataFrame(rows), 2.0, 5, test_images.assign(reference="txt2img"), claims=[claim])
