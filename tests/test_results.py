"""Result tables: intervals, paired differences, the paper's layout."""
import numpy as np
import pandas as pd
import pytest

from genie_utils import results


def test_t_quantile_is_students_for_n_minus_1_degrees_of_freedom():
    assert results.t_quantile(3) == pytest.approx(4.303, abs=5e-4)   # the 3 five-shot episodes
    assert results.t_quantile(12) == pytest.approx(2.201, abs=5e-4)  # the 12 one-shot episodes
    assert results.t_quantile(5) == pytest.approx(2.776, abs=5e-4)   # the long tail's 5 seeds
    assert results.t_quantile(2) == pytest.approx(12.706, abs=5e-4)
    with pytest.raises(ValueError, match="at least 2"):
        results.t_quantile(1)


def test_interval_is_t_times_sample_std_over_sqrt_n():
    mean, half, n = results.interval([0.5, 0.7, 0.6, 0.8])
    assert (mean, n) == (pytest.approx(0.65), 4)
    # s = sqrt((0.15^2 * 2 + 0.05^2 * 2) / 3) = 0.129099; t(0.975, 3) = 3.182446
    assert half == pytest.approx(3.182446 * 0.129099 / 2, rel=1e-5)
    assert results.interval([0.4]) == (0.4, 0.0, 1)
    with pytest.raises(ValueError, match="no values"):
        results.interval([])


def test_episodes_needed_solves_t_n_minus_1_std_over_sqrt_n_at_most_the_target():
    # std 1, target 1: n = 6 gives t(5) / sqrt(6) = 2.5706 / 2.4495 = 1.049 > 1, n = 7 gives 2.4469 / 2.6458 = 0.925
    assert results.episodes_needed(1.0, 1.0) == 7   # the normal rule would say ceil(1.96^2) = 4
    assert results.half_width(1.0, 7) <= 1.0 < results.half_width(1.0, 6)
    assert results.episodes_needed(0.0, 1.0) == 2
    with pytest.raises(ValueError, match="positive"):
        results.episodes_needed(1.0, 0.0)


def tidy():
    rows = []
    for episode, (weak, genie, ada) in enumerate([(0.5, 0.6, 0.62), (0.7, 0.75, 0.74), (0.4, 0.55, 0.6)]):
        for method, accuracy in (("weak", weak), ("genie", genie), ("genie_ada", ada)):
            rows.append({"backbone": "b", "shots": 1, "episode": episode, "method": method, "accuracy": accuracy})
    return pd.DataFrame(rows)


def test_paired_differences_are_per_episode():
    table = results.paired_differences(tidy()).set_index("comparison")
    assert set(table.index) == {"genie - weak", "genie - genie_ada", "genie_ada - genie"}
    differences = np.array([10, 5, 15])  # genie - weak, percentage points
    assert table.loc["genie - weak", "mean"] == pytest.approx(10)
    # s = 5, n = 3: 4.302653 * 5 / sqrt(3) = 12.4207 points
    assert table.loc["genie - weak", "half_width"] == pytest.approx(12.4207, abs=1e-4)
    assert table.loc["genie - weak", "std"] == pytest.approx(5.0)
    assert table.loc["genie - weak", "first_better_share"] == 1.0
    assert table.loc["genie_ada - genie", "mean"] == pytest.approx((2 - 1 + 5) / 3)


def test_noise_sources_split_an_episode_difference_into_the_query_draw_and_the_rest():
    # two 2-way episodes, 2 queries per class; per-query differences genie - weak (1: genie right, weak wrong):
    # episode 0: class a (1, 0), class b (1, 1); episode 1: class a (0, 0), class b (0, 0)
    hits = {0: {"genie": [1, 1, 1, 1], "weak": [0, 1, 0, 0]}, 1: {"genie": [1, 0, 1, 0], "weak": [1, 0, 1, 0]}}
    rows = [{"backbone": "b", "shots": 1, "episode": e, "method": m, "query": q, "query_class": "ab"[q // 2],
             "correct": bool(c)} for e, per in hits.items() for m, cs in per.items() for q, c in enumerate(cs)]
    table = results.noise_sources(pd.DataFrame(rows)).set_index("comparison")
    row = table.loc["genie - weak"]
    episode_means = np.array([0.75, 0.0])
    draw = np.array([(0.5 / 2 + 0.0 / 2) / 2**2, 0.0])  # sum_c s_c^2 / n_c / C^2 per episode
    assert row["episodes"] == 2 and row["queries_per_episode"] == 4.0
    assert row["mean"] == pytest.approx(37.5)
    assert row["half_width"] == pytest.approx(12.7062 * episode_means.std(ddof=1) / np.sqrt(2) * 100, rel=1e-5)
    assert row["query_share"] == pytest.approx(draw.mean() / episode_means.var(ddof=1))
    assert row["half_width_without_queries"] == pytest.approx(
        12.7062 * np.sqrt((episode_means.var(ddof=1) - draw.mean()) / 2) * 100, rel=1e-5)


def test_precision_against_targets_keeps_the_claims_and_sizes_episodes_with_t():
    differences = pd.DataFrame([
        {"backbone": "b", "shots": 1, "comparison": "genie - weak", "half_width": 9.0, "n": 12},
        {"backbone": "b", "shots": 1, "comparison": "genie_ada - genie", "half_width": 2.0, "n": 12},
        {"backbone": "b", "shots": 1, "comparison": "genie - txt2img", "half_width": 4.0, "n": 12},
        {"backbone": "b", "shots": 5, "comparison": "genie - txt2img", "half_width": 1.0, "n": 3},
        {"backbone": "b", "shots": 10, "comparison": "genie - txt2img", "half_width": 5.0, "n": 3}])
    table = results.precision_against_targets(differences, {1: 2.0, 5: 2.5}, ["genie - txt2img", "genie_ada - genie"])
    assert list(zip(table.shots, table.comparison)) == [(1, "genie - txt2img"), (1, "genie_ada - genie"),
                                                        (5, "genie - txt2img")]  # claims only, in their order
    assert list(table.met) == [False, True, True]  # a half-width equal to the target meets it
    # std = half_width sqrt(n) / t(n - 1): 6.2955 (n 12), 3.1478 (n 12), 0.4026 (n 3); then the fewest n with
    # t(n - 1) std / sqrt(n) <= target: 41 (n 40 gives 2.013), 12, 3 (n 2 gives 12.706 * 0.4026 / 1.414 = 3.6)
    assert list(table.episodes_needed) == [41, 12, 3]
    lines = results.precision_table(table).splitlines()
    assert lines[2] == "| b | 1 | GeNIe (r = 0.8) - Txt2Img | 12 | 4.0 | 2.0 | no | 41 |"


def test_bootstrap_differences_resample_test_images_within_each_class():
    # class a: the method beats the reference on both images, class b: they tie; two seeds agree
    rows = [{"method": m, "seed": seed, "image_id": f"{c}{i}", "class_name": c, "correct": ok}
            for seed in (0, 1) for c in "ab" for i in range(2)
            for m, ok in (("plain", False), ("genie", c == "a"))]
    table = results.bootstrap_differences(pd.DataFrame(rows), {"a": ["a"], "both": ["a", "b"]}, "plain",
                                          draws=500).set_index("group")
    assert table.loc["a", ["mean", "low", "high"]].tolist() == [100.0, 100.0, 100.0]
    # within-class resampling keeps one half of the images in class a: never 0 or 100, always 50
    assert table.loc["both", ["mean", "low", "high"]].tolist() == [50.0, 50.0, 50.0]
    assert table.loc["both", "test_images"] == 4 and table.loc["both", "classes"] == 2
    # a varying class gives a real interval that holds the observed difference
    rows += [{"method": m, "seed": 0, "image_id": f"c{i}", "class_name": "c", "correct": ok}
             for i in range(10) for m, ok in (("plain", i < 5), ("genie", i < 7))]
    wide = results.bootstrap_differences(pd.DataFrame(rows), {"c": ["c"]}, "plain", draws=500).iloc[0]
    assert wide["mean"] == pytest.approx(20.0) and wide["low"] < 20.0 < wide["high"]
    with pytest.raises(KeyError, match="no outcomes of the reference 'weak'"):
        results.bootstrap_differences(pd.DataFrame(rows), {"c": ["c"]}, "weak")


def test_wide_table_has_the_paper_layout_and_bolds_the_best():
    summary = results.summarise(tidy(), ["backbone", "shots", "method"])
    markdown = results.wide_table(summary, ["weak", "genie", "genie_ada"], ["backbone", "shots"])
    assert list(markdown.index) == ["Weak aug.", "GeNIe (r = 0.8)", "GeNIe-Ada"]
    assert list(markdown.columns) == ["b / 1-shot"]
    assert markdown.iloc[2, 0].startswith("**65.3 ± ") and not markdown.iloc[0, 0].startswith("**")
    latex = results.wide_table(summary, ["weak", "genie_ada"], ["backbone", "shots"], latex=True)
    assert latex.iloc[1, 0].startswith("\\textbf{65.3 $\\pm$") and latex.index[0] == "Weak aug."
    assert results.method_label("genie_r0.6") == "GeNIe (r = 0.6)"
    assert results.method_label("img2img_high", latex=True) == "Img2Img$^H$"


def test_row_name_puts_genie_at_other_ratios_in_rows_of_their_own():
    assert results.row_name("genie", 0.8) == results.row_name("genie") == "genie"
    assert results.row_name("genie", np.float64(0.8000000001)) == "genie"  # r as the store rounds it
    assert [results.row_name("genie", r) for r in (0.5, 0.9)] == ["genie_r0.5", "genie_r0.9"]
    assert results.row_name("txt2img", 1.0) == "txt2img" and results.row_name("img2img_low", 0.3) == "img2img_low"


def test_read_augmentations_keeps_keys_and_ids_as_written(tmp_path):
    path = tmp_path / "augmentations.csv"
    path.write_text("method,key,source_id,target_class\ngenie,0123,0042,heart\ntxt2img,9e10,,heart\n")
    table = results.read_augmentations(path)
    assert table.key.tolist() == ["0123", "9e10"] and table.source_id.tolist() == ["0042", ""]
