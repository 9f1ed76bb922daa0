"""The editing benchmark: the copy test, source keep, the hard-negative rule, the summary, the targets, and the
wiring of generated images to their sources and text-only references (tiny random pipeline)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from genie_utils import editing, generate, oracle, pairing
from genie_utils.images import images_tensor
from genie_utils.jobs import Job, job_spec
from genie_utils.recipe import Recipe
from genie_utils.store import Store, spec_key


def training_set():
    """Five training images: identities a (two renderings, as skin-tone variants), b, c, d."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 16, 16, generator=g) * 2 - 1
    images[1] = images[0] + 0.05 * torch.randn(3, 16, 16, generator=g)  # a sibling rendering of identity a
    return editing.TrainingImages(images, ["a", "a", "b", "c", "d"])


def test_an_exact_training_image_is_a_copy_even_with_a_sibling_rendering():
    training = training_set()
    result = editing.copy_test(training.images[[0, 3]], training)
    assert list(result.nearest) == [0, 3]
    assert np.allclose(result.nearest_distance, 0, atol=1e-5) and result.is_copy.all()
    # the sibling of identity a is much closer than any other identity, yet the ratio skips it
    assert (result.other_distance > 10).all()


def test_an_image_between_two_identities_is_no_copy():
    training = training_set()
    between = (training.images[2] + training.images[3])[None] / 2
    result = editing.copy_test(between, training).iloc[0]
    assert result.nearest in (2, 3) and not result.is_copy
    assert math.isclose(result.copy_ratio, 1.0, rel_tol=1e-4)


def test_copy_ratio_threshold_is_a_third():
    training = training_set()
    direction = training.images[3] - training.images[2]
    # a quarter of the way from b to c: 0.25 / 0.75 = 1/3 exactly is the boundary; 0.2 / 0.8 is a copy
    near = editing.copy_test((training.images[2] + 0.2 * direction)[None], training).iloc[0]
    far = editing.copy_test((training.images[2] + 0.3 * direction)[None], training).iloc[0]
    assert near.is_copy and math.isclose(near.copy_ratio, 0.25, rel_tol=1e-3)
    assert not far.is_copy and math.isclose(far.copy_ratio, 0.3 / 0.7, rel_tol=1e-3)


def test_copy_test_refuses_bad_input():
    training = training_set()
    with pytest.raises(ValueError, match="resize them"):
        editing.copy_test(torch.zeros(1, 3, 8, 8), training)
    with pytest.raises(ValueError, match="identities"):
        editing.TrainingImages(training.images, ["a", "b"])
    with pytest.raises(ValueError, match="two identities"):
        editing.TrainingImages(training.images[:2], ["a", "a"])


def test_source_keep_is_zero_for_the_source_and_one_for_the_text_only_output():
    g = torch.Generator().manual_seed(1)
    source, text_only = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))
    halfway = (source + text_only) / 2
    keep = editing.source_keep(torch.cat([source, text_only, halfway]), source.repeat(3, 1, 1, 1),
                               text_only.repeat(3, 1, 1, 1))
    assert np.allclose(keep, [0, 0, 1, 1, 0.5, 0.5], atol=1e-5)


def test_source_keep_ignores_detail_finer_than_its_blocks():
    source = torch.zeros(1, 3, 64, 64)
    checker = torch.ones(64, 64)
    checker[::2, ::2] = checker[1::2, 1::2] = -1  # averages to zero over every 8x8 block
    keep = editing.source_keep(source + checker, source, torch.ones(1, 3, 64, 64))
    assert np.allclose(keep, 0, atol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        editing.source_keep(source, source, torch.ones(1, 3, 32, 32))


def test_hard_negative_needs_the_target_class_a_kept_layout_and_no_copy():
    table = pd.DataFrame({"target_class": ["t"] * 5, "oracle_class": ["t", "s", "t", "t", "t"],
                          "keep": [0.5, 0.5, 0.9, 0.7, 0.5], "is_copy": [False, False, False, False, True]})
    assert list(editing.hard_negatives(table)) == [True, False, False, True, False]


def measured(rows):
    """A per-image table as `editing_images` returns it, from (r, target, source, P(target), P(source), oracle
    class, copy, keep) tuples."""
    table = pd.DataFrame(rows, columns=["noise_ratio", "target_class", "source_class", "p_target", "p_source",
                                        "oracle_class", "is_copy", "keep"])
    return table.assign(hard_negative=editing.hard_negatives(table))


def test_summary_weighs_every_target_class_the_same_and_finds_the_crossover():
    rows = [(0.2, "x", "s", 0.1, 0.6, "s", False, 0.2), (0.5, "x", "s", 0.6, 0.2, "x", False, 0.5),
            # three pairs of class y against one of x: y must not weigh three times as much
            *[(0.2, "y", "s", 0.3, 0.4, "s", True, 0.3)] * 3, *[(0.5, "y", "s", 0.8, 0.0, "y", True, 0.6)] * 3]
    summary = editing.editing_summary(measured(rows), {"all classes": ["x", "y"], "x only": ["x"]})
    both = summary[summary.group == "all classes"].set_index("noise_ratio")
    assert both.loc[0.2, "p_target"] == pytest.approx(0.2) and both.loc[0.5, "p_target"] == pytest.approx(0.7)
    assert both.loc[0.5, "copy_rate"] == pytest.approx(0.5) and both.loc[0.5, "hard_negative_rate"] == pytest.approx(0.5)
    assert list(both.pairs) == [4, 4] and list(both.classes) == [2, 2]
    # P(target) - P(source): 0.2 - 0.5 = -0.3 at r = 0.2, 0.7 - 0.1 = +0.6 at 0.5: crosses at 0.2 + 0.3 * 0.3 / 0.9
    assert both.crossover.iloc[0] == pytest.approx(0.3)
    x = summary[summary.group == "x only"].set_index("noise_ratio")
    assert x.loc[0.5, "hard_negative_rate"] == 1 and x.loc[0.5, "p_target_half_width"] == 0


class FixedOracle:
    """An oracle whose probabilities are given per image path."""
    def __init__(self, classes, rows):
        self.classes, self.rows = list(classes), rows

    def probabilities(self, paths):
        return np.array([self.rows[p] for p in paths])

    def index(self, class_name):
        return self.classes.index(class_name)


def test_the_real_image_reference_weighs_every_class_the_same():
    # class x: one image, named with P 0.9; class y: three images, P(y) 0.1, 0.1, 0.7, named only for the last
    rows = {"x0": [0.9, 0.1], "y0": [0.9, 0.1], "y1": [0.9, 0.1], "y2": [0.3, 0.7]}
    images = pd.DataFrame({"path": list(rows), "class_name": ["x", "y", "y", "y"]})
    reference = editing.real_image_reference(FixedOracle(["x", "y"], rows), images,
                                             {"all classes": ["x", "y"], "y only": ["y"], "z only": ["z"]})
    both = reference.set_index("group").loc["all classes"]
    assert both.p_true == pytest.approx((0.9 + 0.3) / 2) and both.named == pytest.approx((1 + 1 / 3) / 2)
    assert both.p_true_per_image == pytest.approx((0.9 + 0.1 + 0.1 + 0.7) / 4) and both.named_per_image == 0.5
    assert (both.classes, both.images) == (2, 4)
    assert list(reference.group) == ["all classes", "y only"]  # a group without images is left out
    assert reference.set_index("group").loc["y only", "p_true"] == pytest.approx(0.3)


def summary_reaching(p_target_low, copy_at_08, hard_at_07):
    rows = []
    for ratio in (0.3, 0.5, 0.7, 0.8, 1.0):
        for target in ("x", "y"):
            p_target = {0.3: p_target_low, 0.5: 0.4}.get(ratio, 0.7)
            p_source = 0.7 if ratio == 0.3 else 0.3
            rows.append((ratio, target, "s", p_target, p_source, target if ratio > 0.3 else "s",
                         ratio == 0.8 and copy_at_08, 0.5 if ratio == 0.7 and hard_at_07 else 1.0))
    return editing.editing_summary(measured(rows), {"all classes": ["x", "y"], "few (generator pool)": ["y"]})


def test_target_groups_bin_each_class_by_its_generator_pool_images():
    """ImageNet-LT's bins (many > 100, few < 20 here) by the target's images in the generator pool; a class with no
    pool image is few-shot, and every class is in "all classes" once."""
    sizes = {"big": 101, "edge_many": 100, "mid": 20, "small": 19, "none": 0}
    pool = pd.DataFrame({"class_name": [c for c, n in sizes.items() for _ in range(n)]})
    groups = editing.target_groups(["small", "none", "mid", "big", "edge_many"], pool, many_above=100, few_below=20)
    assert groups == {"all classes": ["big", "edge_many", "mid", "none", "small"],
                      "many (generator pool)": ["big"], "medium (generator pool)": ["edge_many", "mid"],
                      "few (generator pool)": ["none", "small"]}


def test_target_check_meets_and_misses():
    # P(target) - P(source): -0.6 at r = 0.3, +0.1 at 0.5: crosses at 0.3 + 0.2 * 6 / 7 = 0.47
    good = editing.target_check(summary_reaching(0.1, False, True)).set_index("target")
    assert good.met.all(), good
    assert good.reached.iloc[-1] == 0.7  # the r of the best hard-negative rate
    bad = editing.target_check(summary_reaching(0.8, True, False)).set_index("target")
    crossover_row = bad.index[0]
    assert math.isnan(bad.loc[crossover_row, "reached"]) and not bad.loc[crossover_row, "met"]  # below r = 0.3
    assert not bad.loc["copy rate at r = 0.8", "met"] and not bad.loc["best hard-negative rate", "met"]


def test_editing_images_pairs_each_output_with_its_source_and_text_only_reference(fast_generator, openmoji, class_names,
                                                                                  tmp_path):
    classes = sorted(openmoji.class_name.unique())
    judge = oracle.Oracle(oracle.oracle_network(len(classes)), classes)
    pairs = pairing.pairs_per_target(openmoji.iloc[:40], classes[:2], 1, seed=0)
    training = editing.TrainingImages(torch.zeros(3, 3, 64, 64) + torch.tensor([-1.0, 0.0, 1.0])[:, None, None, None],
                                      ["a", "b", "c"])
    store = Store(tmp_path / "store")
    table = editing.editing_images(fast_generator, judge, pairs, [0.5], store, class_names, training, progress=False)
    assert sorted(table.noise_ratio.unique()) == [0.5, 1.0]  # the text-only reference is always made
    assert len(table) == 2 * len(pairs)
    text_only = table[table.noise_ratio == 1.0].set_index(["source_id", "target_class"])
    assert np.allclose(text_only.keep, 1.0)
    half = table[table.noise_ratio == 0.5].set_index(["source_id", "target_class"])
    assert set(half.index) == set(zip(pairs.image_id, pairs.target_class))
    # each r = 0.5 output measured against its own source and the text-only output of its own pair, recomputed here
    paths = dict(zip(pairs.image_id, pairs.path))
    for (source_id, target), row in half.iterrows():
        expected = editing.source_keep(images_tensor([store.load_image(row.key)]),
                                       images_tensor([paths[source_id]]),
                                       images_tensor([store.load_image(text_only.loc[(source_id, target), "key"])]))
        assert row.keep == pytest.approx(float(expected[0]), rel=1e-5)
    assert table.hard_negative.dtype == bool and {"copy_ratio", "is_copy", "nearest"} <= set(table.columns)
    assert (table.nearest < 3).all() and np.allclose(table.copy_ratio, table.nearest_distance / table.other_distance)


def test_guidance_only_in_its_interval(fast_generator, openmoji, class_names):
    """Steps outside `guidance_timesteps` run the conditional branch alone (one row per image, not two)."""
    from test_generate import unet_calls

    fast_generator.recipe = Recipe(num_inference_steps=10, guidance_timesteps=(0, 500))
    paths = openmoji.path.iloc[:2].tolist()
    with unet_calls(fast_generator.pipe) as calls:
        generate.genie(fast_generator, paths, "animal-mammal", 0.8, class_names)
    rows = {t: n for t, n, _ in calls}
    assert rows and all(n == (4 if t <= 500 else 2) for t, n in rows.items())
    assert {n for n in rows.values()} == {2, 4}
    with pytest.raises(ValueError, match="guidance_timesteps"):
        Recipe(guidance_timesteps=(600, 500))


def test_a_guidance_interval_changes_the_store_key_and_none_leaves_it_as_it_was(fast_generator):
    job = Job("genie", "x", "x.png", "a", "b", 0.8)
    plain = job_spec(fast_generator, job, "p", "sha")
    assert "guidance_timesteps" not in plain  # keys of images guided at every step are what they were
    fast_generator.recipe = Recipe(num_inference_steps=10, guidance_timesteps=(0, 500))
    limited = job_spec(fast_generator, job, "p", "sha")
    assert limited["guidance_timesteps"] == [0, 500] and spec_key(limited) != spec_key(plain)


def test_the_benchmark_refuses_a_profile_without_the_companion_s_training_images():
    from genie_utils import profiles

    with pytest.raises(ValueError, match="embedded profile"):
        editing.benchmark(profiles.load_profile("paper"), [editing.Setting(20, 7.5)])


def test_agreement_marks_each_cell_against_the_reference_half_width():
    def rows(setting, p_target, half=0.05):
        return [{"setting": setting, "group": "all classes", "noise_ratio": r, "p_target": p, "p_target_half_width": half}
                for r, p in zip((0.5, 0.8), p_target)]
    summary = pd.DataFrame(rows("ref", [0.2, 0.5]) + rows("close", [0.24, 0.46]) + rows("far", [0.2, 0.56])
                           + [{**rows("ref", [0.9])[0], "group": "few"}])
    cells = editing.agreement(summary, "ref", measures=("p_target",))
    assert cells.groupby("setting", sort=False).within.apply(list).to_dict() == \
        {"close": [True, True], "far": [True, False]}
    assert cells[cells.setting == "far"].reference.tolist() == [0.2, 0.5]  # the reference's own group only
    assert editing.agreeing_settings(cells) == ["close"]
    with pytest.raises(ValueError, match="no setting 'missing'"):
        editing.agreement(summary, "missing", measures=("p_target",))
    with pytest.raises(ValueError, match=r"lacks r = \[0.8\]"):
        editing.agreement(summary[~((summary.setting == "far") & (summary.noise_ratio == 0.8))], "ref",
                          measures=("p_target",))


def test_a_class_the_oracle_does_not_know_is_named_with_the_fix():
    judge = oracle.Oracle(oracle.oracle_network(2), ["boat", "apple"])
    assert judge.index("apple") == 1
    with pytest.raises(ValueError, match=r"the oracle knows no class 'n01500185': it judges its 2 classes \(boat, "
                                         r"apple, \.\.\.\)\. Give the profile an oracle of this dataset's classes "
                                         r"\(\[oracle\] path, or \[oracle\] architecture and weights"):
        judge.index("n01500185")
