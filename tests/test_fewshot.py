"""Few-shot episodes: sampling rules, episodes as data, pairing of augmentations."""
import numpy as np
import pandas as pd
import pytest

from genie_utils import fewshot, profiles, splits


@pytest.fixture(scope="module")
def tables(openmoji):
    return splits.load_splits(profiles.load_profile("embedded"), openmoji)


@pytest.mark.parametrize("shots", [1, 5])
def test_support_and_query_are_disjoint_by_image_and_identity(openmoji, tables, shots):
    pool = tables["splits.csv"].set_index("image_id").pool
    for seed in range(8):
        support, query = fewshot.sample_episode(openmoji, tables, 5, shots, 6, seed)
        assert len(support) == 5 * shots and len(query) == 5 * 6
        assert support.class_name.value_counts().eq(shots).all() and query.class_name.value_counts().eq(6).all()
        assert set(support.class_name) == set(query.class_name)
        assert not set(support.image_id) & set(query.image_id)
        assert not set(support.identity) & set(query.identity)
        assert support.groupby("class_name").identity.nunique().eq(shots).all()  # K distinct identities
        assert (support.image_id.map(pool) == splits.EVALUATION).all() and (query.image_id.map(pool) == splits.EVALUATION).all()
        assert set(support.class_name) <= set(fewshot.eligible_classes(tables, shots))


def test_episode_i_uses_seed_i_and_the_file_repeats_it(openmoji, tables, tmp_path):
    table = fewshot.episodes_table(openmoji, tables, 5, 1, 6, [0, 1, 2, 7])
    path = fewshot.write_episodes(table, tmp_path / "episodes.csv")
    loaded = fewshot.read_episodes(path, openmoji)
    assert list(pd.read_csv(path).columns) == ["episode", "ways", "shots", "role", "image_id", "class_name"]
    for episode in (0, 1, 2, 7):
        support, query = fewshot.episode_sets(loaded, episode)
        drawn_support, drawn_query = fewshot.sample_episode(openmoji, tables, 5, 1, 6, seed=episode)
        assert list(support.image_id) == list(drawn_support.image_id)
        assert list(query.image_id) == list(drawn_query.image_id)
    class_sets = {tuple(sorted(fewshot.episode_sets(loaded, e)[0].class_name)) for e in (0, 1, 2, 7)}
    assert len(class_sets) == 4  # different seeds, different episodes
    # the first draw of seed 3 picks the classes: numpy's generator, seeded by the episode number
    classes = fewshot.eligible_classes(tables, 1)
    expected = sorted(np.random.default_rng(3).choice(classes, size=5, replace=False))
    assert sorted(fewshot.sample_episode(openmoji, tables, 5, 1, 6, seed=3)[0].class_name) == expected


def test_too_many_ways_and_foreign_episode_files_are_refused(openmoji, tables, tmp_path):
    eligible = len(fewshot.eligible_classes(tables, 5))
    with pytest.raises(ValueError, match=rf"only {eligible} classes are eligible for 5-shot episodes; ways = {eligible + 1}"):
        fewshot.sample_episode(openmoji, tables, eligible + 1, 5, 6, 0)
    table = fewshot.episodes_table(openmoji, tables, 5, 1, 6, [0])
    path = fewshot.write_episodes(table.assign(image_id="nope"), tmp_path / "e.csv")
    with pytest.raises(KeyError, match="names 1 images the dataset lacks"):
        fewshot.read_episodes(path, openmoji)


def test_the_embedded_split_leaves_twenty_classes_for_five_shot(tables):
    assert len(fewshot.eligible_classes(tables, 5)) >= 20 and len(fewshot.eligible_classes(tables, 1)) >= 40
