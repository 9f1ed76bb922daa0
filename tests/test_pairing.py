"""Pairing: episode sampling rules, episodes as data, the drawn and the full query sets."""
import numpy as np
import pandas as pd
import pytest

from genie_utils import pairing, profiles, splits


@pytest.fixture(scope="module")
def tables(openmoji):
    return splits.load_splits(profiles.load_profile("embedded"), openmoji)


@pytest.mark.parametrize("shots", [1, 5])
def test_support_and_query_are_disjoint_by_image_and_identity(openmoji, tables, shots):
    pool = tables["splits.csv"].set_index("image_id").pool
    for seed in range(8):
        support, query = pairing.sample_episode(openmoji, tables, 5, shots, 6, seed)
        assert len(support) == 5 * shots and len(query) == 5 * 6
        assert support.class_name.value_counts().eq(shots).all() and query.class_name.value_counts().eq(6).all()
        assert set(support.class_name) == set(query.class_name)
        assert not set(support.image_id) & set(query.image_id)
        assert not set(support.identity) & set(query.identity)
        assert support.groupby("class_name").identity.nunique().eq(shots).all()  # K distinct identities
        assert (support.image_id.map(pool) == splits.EVALUATION).all() and (query.image_id.map(pool) == splits.EVALUATION).all()
        assert set(support.class_name) <= set(pairing.eligible_classes(tables, shots))


def test_episode_i_uses_seed_i_and_the_file_repeats_it(openmoji, tables, tmp_path):
    table = pairing.episodes_table(openmoji, tables, 5, 1, 6, [0, 1, 2, 7])
    path = pairing.write_episodes(table, tmp_path / "episodes.csv")
    loaded = pairing.read_episodes(path, openmoji)
    assert list(pd.read_csv(path).columns) == ["episode", "ways", "shots", "role", "image_id", "class_name",
                                               "drawn_query"]
    assert loaded[loaded.role == "query"].drawn_query.all() and not loaded[loaded.role == "support"].drawn_query.any()
    for episode in (0, 1, 2, 7):
        support, query = pairing.episode_sets(loaded, episode)
        drawn_support, drawn_query = pairing.sample_episode(openmoji, tables, 5, 1, 6, seed=episode)
        assert list(support.image_id) == list(drawn_support.image_id)
        assert list(query.image_id) == list(drawn_query.image_id)
    class_sets = {tuple(sorted(pairing.episode_sets(loaded, e)[0].class_name)) for e in (0, 1, 2, 7)}
    assert len(class_sets) == 4  # different seeds, different episodes
    # the first draw of seed 3 picks the classes: numpy's generator, seeded by the episode number
    classes = pairing.eligible_classes(tables, 1)
    expected = sorted(np.random.default_rng(3).choice(classes, size=5, replace=False))
    assert sorted(pairing.sample_episode(openmoji, tables, 5, 1, 6, seed=3)[0].class_name) == expected


@pytest.mark.parametrize("shots", [1, 5])
def test_all_queries_keep_the_drawn_support_and_score_every_other_identity(openmoji, tables, shots):
    pool = tables["splits.csv"].set_index("image_id").pool
    evaluation = openmoji[openmoji.image_id.map(pool) == splits.EVALUATION]
    for seed in range(4):
        support, drawn = pairing.sample_episode(openmoji, tables, 5, shots, 6, seed)
        same_support, every = pairing.sample_episode(openmoji, tables, 5, shots, 6, seed, all_queries=True)
        assert list(same_support.image_id) == list(support.image_id)  # the same generated images serve both
        for class_name, part in evaluation[evaluation.class_name.isin(support.class_name)].groupby("class_name"):
            expected = part[~part.identity.isin(support.identity)]
            assert sorted(every[every.class_name == class_name].image_id) == sorted(expected.image_id)
        assert set(drawn.image_id) < set(every.image_id) and every.class_name.value_counts().ge(6).all()
        assert list(every[every.drawn_query].image_id) == list(drawn.image_id)  # the draw's queries, marked
    table = pairing.episodes_table(openmoji, tables, 5, shots, 6, [3], all_queries=True)
    assert sorted(table[table.role == "query"].image_id) == sorted(every.image_id)


def test_too_many_ways_and_foreign_episode_files_are_refused(openmoji, tables, tmp_path):
    eligible = len(pairing.eligible_classes(tables, 5))
    with pytest.raises(ValueError, match=rf"only {eligible} classes are eligible for 5-shot episodes; ways = {eligible + 1}"):
        pairing.sample_episode(openmoji, tables, eligible + 1, 5, 6, 0)
    table = pairing.episodes_table(openmoji, tables, 5, 1, 6, [0])
    path = pairing.write_episodes(table.assign(image_id="nope"), tmp_path / "e.csv")
    with pytest.raises(KeyError, match="names 1 images the dataset lacks"):
        pairing.read_episodes(path, openmoji)


def test_the_embedded_split_leaves_twenty_classes_for_five_shot(tables):
    assert len(pairing.eligible_classes(tables, 5)) >= 20 and len(pairing.eligible_classes(tables, 1)) >= 40


@pytest.mark.parametrize("variants", [-1, 0, 1.5, "2"])
def test_baseline_variants_that_are_no_positive_count_are_refused(variants):
    import pandas as pd
    support = pd.DataFrame({"image_id": ["a", "b"], "path": ["a.png", "b.png"], "class_name": ["boat", "apple"]})
    with pytest.raises(ValueError, match=rf"variants must be an integer of at least 1, got {variants!r}"):
        pairing.own_class_jobs(support, "img2img_low", variants)
