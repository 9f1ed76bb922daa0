"""Splits: identity-disjoint evaluation pool, few-shot eligibility, long-tail split."""
import pandas as pd
import pytest

from genie_utils import profiles, splits


@pytest.fixture(scope="module")
def settings():
    return profiles.load_profile("embedded")["splits"]


def test_committed_split_files_are_what_the_code_makes(openmoji, settings):
    committed = splits.load_splits(profiles.load_profile("embedded"), openmoji)
    for name, table in splits.make_splits(openmoji, settings).items():
        pd.testing.assert_frame_equal(committed[name].reset_index(drop=True), table.reset_index(drop=True),
                                      check_dtype=False)


def test_evaluation_pool_is_identity_disjoint(openmoji, settings):
    table = splits.make_splits(openmoji, settings)["splits.csv"]
    pools_per_identity = table.groupby("identity").pool.nunique()
    assert (pools_per_identity == 1).all()
    per_class = table.groupby("class_name").agg(ids=("identity", "nunique"), pools=("pool", "nunique"))
    assert (per_class[per_class.ids >= 2].pools == 2).all()  # every splittable class is on both sides
    assert (per_class[per_class.ids == 1].pools == 1).all()
    share = (table.drop_duplicates("identity").pool == splits.EVALUATION).mean()
    assert abs(share - settings["evaluation_fraction"]) < 0.05


def test_selection_depends_on_seed_not_row_order(openmoji, settings):
    a = splits.evaluation_identities(openmoji, 0.4, seed=0)
    assert a == splits.evaluation_identities(openmoji.sample(frac=1, random_state=3), 0.4, seed=0)
    assert a != splits.evaluation_identities(openmoji, 0.4, seed=1)
    with pytest.raises(ValueError, match=r"evaluation_fraction must be in \(0, 1\)"):
        splits.evaluation_identities(openmoji, 1.0)


def test_fewshot_eligibility_rule():
    pool = pd.DataFrame({
        "class_name": ["a"] * 20 + ["b"] * 20,
        # a: 20 identities of one image; b: one identity of 15 images + 5 singles
        "identity": [f"a{i}" for i in range(20)] + ["b0"] * 15 + [f"b{i}" for i in range(1, 6)],
    })
    table = splits.fewshot_eligibility(pool, [1, 5], queries_per_class=15).set_index("class_name")
    assert table.loc["a"].tolist() == [20, 20, True, True]
    # b: 1-shot may take b0 (15 images) leaving 5 < 15 queries: not eligible; 5-shot likewise
    assert table.loc["b"].tolist() == [20, 6, False, False]


def test_longtail_split_is_balanced_and_trains_only_on_the_generator_pool(openmoji, settings):
    tables = splits.make_splits(openmoji, settings)
    table, classes = tables["splits.csv"], tables["longtail_classes.csv"]
    test = table[table.longtail == "test"]
    assert (test.pool == splits.EVALUATION).all()
    assert (test.class_name.value_counts() == settings["longtail_test_per_class"]).all()
    assert (table[table.longtail == "train"].pool == splits.GENERATOR).all()
    assert set(test.class_name) == set(classes.class_name)
    many = classes.train_images > settings["many_shot_threshold"]
    few = classes.train_images < settings["few_shot_threshold"]
    assert (classes[many].bin == "many").all() and (classes[few].bin == "few").all()
    assert (classes[~many & ~few].bin == "medium").all()


def test_paper_profile_without_split_files_puts_everything_in_the_evaluation_pool(openmoji):
    profile = profiles.load_profile("paper")
    tables = splits.load_splits(profile, openmoji.head(50))
    assert (tables["splits.csv"].pool == splits.EVALUATION).all()


def test_split_files_that_do_not_match_the_dataset_are_refused(openmoji):
    with pytest.raises(ValueError, match="do not match the dataset"):
        splits.load_splits(profiles.load_profile("embedded"), openmoji.head(10))


def test_summary_counts(openmoji, settings):
    summary = splits.split_summary(splits.make_splits(openmoji, settings), [1, 5]).set_index("split")
    assert summary.loc["evaluation pool", "images"] + summary.loc["generator pool", "images"] == len(openmoji)
    assert summary.loc["few-shot eligible (5-shot)", "classes"] <= summary.loc["few-shot eligible (1-shot)", "classes"]


def test_the_class_table_holds_every_class_once_and_notebook_00_draws_it(openmoji, settings, tmp_path):
    """`class_sizes.csv`: one row per class, largest first, its images and long-tail bin; the class-size figure
    draws one bar per row at its height and colour, and the class grid labels each strip with its size."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_rgba

    from genie_utils import plots

    tables = splits.make_splits(openmoji, settings)
    profile = {"root": str(tmp_path), "paths": {"results": "results", "figures": "figures"}, "splits": settings}
    path = splits.write_summary(profile, openmoji, tables)["class_sizes"]
    assert path == tmp_path / "results" / "dataset" / "class_sizes.csv"
    table = pd.read_csv(path, keep_default_na=False)
    assert len(table) == openmoji.class_name.nunique() and table.class_name.is_unique
    assert table.images.sum() == len(openmoji) and table.images.is_monotonic_decreasing
    longtail = tables["longtail_classes.csv"].set_index("class_name").bin
    assert (table.set_index("class_name").longtail_bin.reindex(longtail.index) == longtail).all()
    axis = plots.class_sizes(path).axes[0]
    assert [bar.get_height() for bar in axis.patches[:len(table)]] == list(table.images)
    assert [bar.get_facecolor() for bar in axis.patches[:len(table)]] == \
        [to_rgba(plots.BIN_COLOURS[b]) for b in table.longtail_bin]
    assert axis.get_title() == f"{len(table)} classes, {len(openmoji)} images"
    axis = plots.class_grid(openmoji, path, per_class=2, classes=4, thumbnail=8).axes[0]
    assert [label.get_text() for label in axis.get_yticklabels()] == \
        [f"{n} ({i})" for n, i in zip(table.class_name[:4], table.images[:4])]
