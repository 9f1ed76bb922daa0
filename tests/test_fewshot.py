"""The few-shot experiment: augmentations generated once, every row evaluated, mixing budgets, folder datasets."""
import numpy as np
import pandas as pd
import pytest

from genie_utils import fewshot, pairing, profiles, splits
from genie_utils.recipe import Recipe
from genie_utils.run_files import FewshotFiles
from genie_utils import results as result_tables


# --------------------------------------------------------------------------------------------------
# Augmentations generated once, evaluation from them


def two_episodes(openmoji):
    """Two 3-way 1-shot episodes sharing two of their three support images (and so four GeNIe pairs)."""
    rows = []
    for episode, picks in enumerate([(0, 0, 0), (0, 0, 1)]):
        for class_name, pick in zip(["animal-mammal", "heart", "face-smiling"], picks):
            images = openmoji[openmoji.class_name == class_name].sort_values("image_id")
            support, query = images.iloc[[pick]], images.iloc[5:8]
            for role, part in (("support", support), ("query", query)):
                rows.append(part.assign(episode=episode, role=role, ways=3, shots=1))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def generated(tiny_pipeline, openmoji, class_names, tmp_path_factory):
    from genie_utils import generate
    from genie_utils.store import Store
    pipe, info = tiny_pipeline
    generator = generate.GenieGenerator(pipe, Recipe(num_inference_steps=10), info, batch_size=8)
    store = Store(tmp_path_factory.mktemp("store"))
    episodes = two_episodes(openmoji)
    table = fewshot.augmentation_table(generator, episodes, store, class_names, progress=False)
    return episodes, table, store, generator


def test_augmentations_have_equal_counts_per_class_and_shared_pairs_are_made_once(generated, class_names):
    episodes, table, store, generator = generated
    counts = table.groupby(["episode", "method", "noise_ratio", "target_class"]).size()
    assert set(counts) == {2}  # (N - 1) * K = 2 per class, for every method and every r
    assert sorted(table[table.method == "genie"].noise_ratio.unique()) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert (table[table.method == "img2img_low"].noise_ratio == 0.3).all()
    shared = table[table.method == "genie"].groupby("key").episode.nunique()
    # the mammal and heart images are sources for the same three targets in both episodes: 4 shared pairs
    assert (shared == 2).sum() == 4 * 5
    assert len(store.manifest()) == table.key.nunique() and table.key.nunique() < len(table)
    decodes = generator.counts.vae_decodes
    again = fewshot.augmentation_table(generator, episodes, store, class_names, progress=False)
    assert generator.counts.vae_decodes == decodes and again.equals(table)  # a rerun generates nothing


def test_every_row_is_evaluated_and_evaluation_never_generates(counting_backbone, generated, openmoji, tmp_path):
    episodes, table, store, _ = generated
    out = fewshot.evaluate(counting_backbone(), episodes, table, store, progress=False, labels={"profile": "test"})
    results = out["results"]
    assert set(results.method) == set(fewshot.table_rows()) and len(results) == 2 * len(fewshot.table_rows())
    assert (results.set_index("method").generated_per_class.drop(["weak", "strong"]) == 2).all()
    assert list(results.columns[:5]) == ["backbone", "profile", "ways", "shots", "episode"]
    assert len(out["class_probabilities"]) == 2 * 6 * 5  # every GeNIe candidate; `fit_rows` pins their values
    assert len(out["ada_choices"]) == 2 * 6 and set(out["ada_choices"].noise_ratio) <= {0.6, 0.7, 0.8, 0.9}
    outcomes = out["query_outcomes"]  # each row's hits on the episode's queries give its accuracy
    queries = episodes[episodes.role == "query"].groupby("episode").size()
    assert (outcomes.groupby(["episode", "method"]).size() == queries.reindex(results.episode).to_numpy()).all()
    hit_rate = outcomes.groupby(["episode", "method"]).correct.mean()
    assert np.allclose(hit_rate.loc[list(zip(results.episode, results.method))], results.accuracy)
    noise = result_tables.noise_sources(outcomes).set_index("comparison")
    paired = result_tables.paired_differences(results).set_index("comparison")
    assert np.allclose(noise.loc[paired.index, "mean"], paired["mean"])
    assert np.allclose(noise.loc[paired.index, "half_width"], paired["half_width"])
    # unequal query counts (3, 7 and 3 per class): an episode's accuracy weighs its classes equally
    extra = episodes[(episodes.episode == 0) & (episodes.role == "query") & (episodes.class_name == "heart")]
    hearts = openmoji[openmoji.class_name == "heart"].sort_values("image_id").iloc[8:12]
    uneven = pd.concat([episodes, hearts.assign(**extra.iloc[0][["episode", "role", "ways", "shots"]])],
                       ignore_index=True)
    out = fewshot.evaluate(counting_backbone(), uneven, table, store, progress=False)
    hits = out["query_outcomes"]
    assert hits[(hits.episode == 0) & (hits.method == "weak")].query_class.value_counts().to_dict() == {
        "heart": 7, "animal-mammal": 3, "face-smiling": 3}
    balanced = hits.groupby(["episode", "method", "query_class"]).correct.mean().groupby(["episode", "method"]).mean()
    assert np.allclose(balanced.loc[list(zip(out["results"].episode, out["results"].method))], out["results"].accuracy)
    noise = result_tables.noise_sources(hits).set_index("comparison")
    paired = result_tables.paired_differences(out["results"]).set_index("comparison")
    assert np.allclose(noise.loc[paired.index, "mean"], paired["mean"]) and noise.queries_per_episode.eq(11).all()
    # the differences on the drawn queries only, from these hits, are those of an evaluation on them alone
    uneven["drawn_query"] = uneven.index < len(episodes)
    uneven[["episode", "ways", "shots", "role", "image_id", "class_name", "drawn_query"]].to_csv(
        tmp_path / "episodes.csv", index=False)
    drawn = fewshot.drawn_query_differences(tmp_path / "episodes.csv", hits.assign(backbone="b"))
    alone = fewshot.evaluate(counting_backbone(), episodes, table, store, progress=False)["results"]
    expected = result_tables.paired_differences(alone.assign(backbone="b"), order=fewshot.table_rows())
    assert np.allclose(drawn["mean"], expected["mean"]) and np.allclose(drawn.half_width, expected.half_width)
    assert not np.allclose(drawn["mean"], result_tables.paired_differences(out["results"], order=fewshot.table_rows())["mean"])
    moved = store.root / table.file.iloc[0]
    moved.rename(tmp_path / "away.png")
    try:
        with pytest.raises(FileNotFoundError, match="evaluation never generates"):
            fewshot.evaluate(counting_backbone(), episodes, table, store, progress=False)
    finally:
        (tmp_path / "away.png").rename(moved)


def test_mixing_keeps_gen_ie_budget_and_soft_labels_sum_to_one(counting_backbone, openmoji):
    episodes = two_episodes(openmoji)
    support, _ = pairing.episode_sets(episodes, 0)
    features, soft, samples = fewshot.mixed_features(counting_backbone(), support, "cutmix", 5)
    assert features.shape[0] == soft.shape[0] == 3 * 2 and soft.shape[1] == 3
    np.testing.assert_allclose(soft.sum(1), 1)
    labels = dict(zip(support.image_id, support.class_name))
    assert all(labels[a] != labels[b] for a, b in samples)  # always mixed with another class


# --------------------------------------------------------------------------------------------------
# The paper profile's loaders and episode files on a synthetic class-folder fixture


def test_paper_profile_episodes_from_class_folders(tmp_path):
    from PIL import Image

    from genie_utils import data
    root = tmp_path / "mini-imagenet" / "test"
    wnids = [f"n0{1000000 + i}" for i in range(6)]
    for i, wnid in enumerate(wnids):
        (root / wnid).mkdir(parents=True)
        for k in range(22):
            Image.new("RGB", (40, 30), (i * 40, k * 10, 0)).save(root / wnid / f"{wnid}_{k}.JPEG")
    names = tmp_path / "class_names.txt"
    names.write_text("".join(f"{w} synonym {i}, other name {i}\n" for i, w in enumerate(wnids)))
    (tmp_path / "p.toml").write_text(f'extends = "paper"\n[dataset]\nroot = "{root}"\nclass_names = "{names}"\n'
                                     f'[paths]\nresults = "{tmp_path / "results"}"\n'
                                     '[fewshot]\nepisodes = [3, 2]\n')
    profile = profiles.load_profile(tmp_path / "p.toml")
    dataset = data.load_dataset(profile)
    tables = splits.load_splits(profile, dataset)
    assert len(pairing.eligible_classes(tables, 5)) == 6  # 22 images: 5 support + 16 queries fit
    episodes = fewshot.draw_episodes(profile, dataset, tables)
    assert (tmp_path / "results" / "fewshot" / "episodes.csv").is_file()
    assert episodes.groupby("shots").episode.nunique().to_dict() == {1: 3, 5: 2}
    query = episodes[(episodes.role == "query")]
    assert query.groupby(["shots", "episode", "class_name"]).size().eq(16).all()
    assert set(episodes.display_name) <= {f"synonym {i}, other name {i}" for i in range(6)}


def test_each_row_trains_on_exactly_the_images_and_labels_it_names(monkeypatch):
    """fit_rows with the classifiers replaced by spies: every row's training set is the support's views plus the
    features of exactly its own generated images, labelled with their prompt's class (the mixing rows: their
    mixed views with soft labels)."""
    from genie_utils import ada

    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    support = pd.DataFrame({"image_id": ["sa", "sb", "sc"], "class_name": classes})
    rows = []
    for source, own in zip(support.image_id, classes):
        for target in classes:
            if target != own:
                rows += [{"method": "genie", "noise_ratio": r, "source_id": source, "source_class": own,
                          "target_class": target, "key": f"{source}-{target}-{r}"} for r in ada.ADA_RATIOS]
        rows += [{"method": m, "noise_ratio": r, "source_id": source, "source_class": own, "target_class": own,
                  "key": f"{source}-{m}-{v}"} for m, r in (("img2img_low", 0.3), ("img2img_high", 0.7),
                                                             ("txt2img", 1.0)) for v in range(2)]
    augmentations = pd.DataFrame(rows)
    generated = {key: rng.normal(size=4) for key in augmentations.key}
    labels = np.repeat(classes, 2)  # two weak views per support image
    mixed = {m: (rng.normal(size=(3, 4)), rng.dirichlet(np.ones(3), size=3)) for m in ("mixup", "cutmix")}
    features = fewshot.EpisodeFeatures(weak=rng.normal(size=(6, 4)), strong=rng.normal(size=(6, 4)), labels=labels,
                                       centre={i: rng.normal(size=4) for i in support.image_id},
                                       queries=rng.normal(size=(4, 4)), query_labels=np.array(["a", "b", "c", "a"]),
                                       generated=generated, mixed=mixed)
    calls = []

    class Spy:
        def __init__(self, x, y):
            calls.append((x, y))
            self.classes, self.offset = classes, float(np.asarray(x).mean())

        def predict(self, x):
            return np.full(len(x), "a")

        def predict_proba(self, x):  # a function of the input and of what the model trained on
            scores = np.exp(np.asarray(x, float)[:, :3] + self.offset)
            return scores / scores.sum(1, keepdims=True)

    monkeypatch.setattr(fewshot, "fit_logistic", lambda x, y: Spy(x, y))
    monkeypatch.setattr(fewshot, "fit_linear_sgd", lambda x, y, classes, seed: Spy(x, y))
    results, probabilities, choices, _ = fewshot.fit_rows(features, support, augmentations)
    trained = dict(zip(results.method, calls))
    assert list(trained) == ["weak", "strong", "mixup", "cutmix", "img2img_low", "img2img_high", "txt2img",
                             "genie_r0.5", "genie_r0.6", "genie_r0.7", "genie", "genie_r0.9", "genie_ada"]
    np.testing.assert_array_equal(trained["weak"][0], features.weak)
    np.testing.assert_array_equal(trained["strong"][0], features.strong)
    assert list(trained["weak"][1]) == list(trained["strong"][1]) == list(labels)
    for method in ("mixup", "cutmix"):
        x, y = trained[method]
        np.testing.assert_array_equal(x, np.vstack([features.weak, mixed[method][0]]))
        np.testing.assert_array_equal(y, np.vstack([np.eye(3)[[0, 0, 1, 1, 2, 2]], mixed[method][1]]))
    expected = {m: augmentations[augmentations.method == m] for m in ("img2img_low", "img2img_high", "txt2img")}
    expected.update({result_tables.row_name("genie", r): augmentations[(augmentations.method == "genie")
                                                                        & (augmentations.noise_ratio == r)]
                     for r in ada.ADA_RATIOS})
    expected["genie_ada"] = choices
    assert len(choices) == 6 and set(choices.noise_ratio) <= {0.6, 0.7, 0.8, 0.9}
    for row, images in expected.items():
        x, y = trained[row]
        np.testing.assert_array_equal(x, np.vstack([features.weak] + [generated[k] for k in images.key]))
        assert list(y) == list(labels) + list(images.target_class), row
    assert (expected["genie"].noise_ratio == 0.8).all() and len(expected["genie"]) == 6
    # the class-probability analysis: the weak (support-only) model's probabilities of every GeNIe candidate
    candidates = augmentations[augmentations.method == "genie"]
    weak_model = Spy(features.weak, labels)
    p = weak_model.predict_proba(np.stack([generated[k] for k in candidates.key]))
    column = {c: i for i, c in enumerate(classes)}
    assert len(probabilities) == len(candidates) == 30
    np.testing.assert_allclose(probabilities.p_target, p[np.arange(30), candidates.target_class.map(column)])
    np.testing.assert_allclose(probabilities.p_source, p[np.arange(30), candidates.source_class.map(column)])


def test_the_figures_of_notebook_05_draw_exactly_what_their_result_files_hold(counting_backbone, generated, tmp_path):
    """The few-shot result files as the notebooks write them, then the figures drawn from them: the accuracy-
    against-r figure plots each fixed-r row's mean and half-width and the reference rows; the r* histogram counts
    every pair's choice once."""
    import matplotlib

    matplotlib.use("Agg")
    from genie_utils import plots

    episodes, table, store, _ = generated
    out = fewshot.evaluate(counting_backbone(), episodes, table, store, progress=False, labels={"profile": "test"})
    summary = result_tables.summarise(out["results"], ["backbone", "shots", "method"])
    summary.to_csv(tmp_path / "summary.csv", index=False)
    out["ada_choices"].to_csv(tmp_path / "ada_choices.csv", index=False)
    assert {"backbone", "shots", "method", "mean", "half_width", "n"} <= set(summary.columns)
    rows = summary.set_index("method")

    axis = plots.accuracy_against_ratio(tmp_path / "summary.csv").axes[0]
    fixed = [result_tables.row_name("genie", r) for r in (0.5, 0.6, 0.7, 0.8, 0.9)]
    line = axis.lines[0]
    assert list(line.get_xdata()) == [0.5, 0.6, 0.7, 0.8, 0.9]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), rows.loc[fixed, "mean"].to_numpy(float))
    references = {tuple(l.get_ydata()) for l in axis.lines[1:] if len(set(l.get_ydata())) == 1}
    assert {(rows.loc[m, "mean"],) * 2 for m in ("genie_ada", "txt2img", "weak")} <= references
    assert axis.get_title().endswith("(2 episodes)")

    axis = plots.ada_ratio_histogram(tmp_path / "ada_choices.csv").axes[0]
    heights = [bar.get_height() for bar in axis.patches]
    counts = out["ada_choices"].noise_ratio.value_counts()
    assert heights == [counts.get(r, 0) for r in (0.5, 0.6, 0.7, 0.8, 0.9)] and sum(heights) == 12
    assert heights[0] == 0 and axis.get_title() == "GeNIe-Ada over 12 pairs"


def test_the_analyses_of_notebook_05_write_the_files_their_figures_draw(counting_backbone, generated, tmp_path):
    """The four analyses of notebook 05, written by their functions from a real evaluation's files, then drawn:
    each file holds one row per thing it counts, and each figure plots exactly the file's numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from PIL import Image

    from genie_utils import oracle, plots

    episodes, table, store, _ = generated
    profile = {"name": "test", "root": str(tmp_path), "paths": {"results": "results", "figures": "figures"},
               "dataset": {"resolution": 64}, "features": {"cache_dir": "features"},
               "fewshot": {"shots": [1], "figure_episode": 1, "views_per_image": 2}}
    folder = tmp_path / "results" / "fewshot"
    result_tables.write_table(table.assign(shots=1), folder / "augmentations.csv")
    out = fewshot.evaluate(counting_backbone(), episodes, table, store, progress=False, labels={"profile": "test"})
    result_tables.write_table(out["class_probabilities"], folder / "class_probabilities.csv")

    # the class-probability figure: P(target) and P(source) over the 12 GeNIe pairs at each r
    summary = pd.read_csv(fewshot.class_probability_summary(FewshotFiles(folder)))
    assert len(summary) == 2 * 5 and (summary.n == 12).all()
    axis = plots.class_probability_against_ratio(folder / "class_probability_summary.csv").axes[0]
    assert len(axis.containers) == 2
    for bars, value in zip(axis.containers, ("p_target", "p_source")):  # error bars: the line, then the caps
        rows, line = summary[summary.value == value].sort_values("noise_ratio"), bars.lines[0]
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), rows["mean"])
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.5, 0.6, 0.7, 0.8, 0.9])
        spans = [(high[1] - low[1]) / 2 for low, high in bars.lines[2][0].get_segments()]
        np.testing.assert_allclose(spans, rows.half_width)

    # label consistency: every generated image judged once, every support image's views and mixed samples
    torch.manual_seed(0)  # the judge's random weights
    judge = oracle.Oracle(oracle.oracle_network(3, width=8), ["animal-mammal", "face-smiling", "heart"])
    consistency = pd.read_csv(fewshot.label_consistency(profile, episodes, store, judge, progress=False))
    images = consistency.set_index("row").images
    unique = table.drop_duplicates("key")
    for method in ("img2img_low", "img2img_high", "txt2img"):
        assert images[method] == (unique.method == method).sum()
    assert images["genie"] == ((unique.method == "genie") & (unique.noise_ratio == 0.8)).sum() == 8
    assert images["weak"] == images["strong"] == 2 * 3 * 2  # 2 episodes x 3 support images x 2 views
    order = fewshot.table_rows()
    axis = plots.label_consistency(folder / "label_consistency.csv", order).axes[0]
    drawn = consistency.set_index("row").reindex([r for r in order if r in images.index])
    heights = [bar.get_height() for bar in axis.patches]
    np.testing.assert_allclose(heights, list(drawn.oracle_agrees) + list(drawn.p_label))

    # figure 5: the episode's 3 support images, 9 queries and its GeNIe (r = 0.8) and baseline images, each a point
    view = pd.read_csv(fewshot.embedding_view(profile, episodes, store, counting_backbone()))
    mine = table[(table.episode == 1) & table.method.isin(["genie", "img2img_low", "img2img_high", "txt2img"])
                 & ((table.method != "genie") | (table.noise_ratio == 0.8))]
    assert view.role.value_counts().to_dict() == {"augmentation": len(mine), "query": 9, "support": 3}
    assert (view.episode == 1).all()
    assert sorted(view[view.role == "augmentation"].class_name) == sorted(mine.target_class)
    axis = plots.embedding_view(folder / "embedding_view.csv").axes[0]
    drawn_points = np.vstack([c.get_offsets() for c in axis.collections])
    expected = np.vstack([view[view.role == "query"][["x", "y"]]]
                         + [part[["x", "y"]] for _, part in view[view.role == "augmentation"].groupby("method")]
                         + [view[view.role == "support"][["x", "y"]]])
    np.testing.assert_allclose(drawn_points, expected)

    # figure 4: per source, its own image, the three baselines and GeNIe at 0.6, 0.7, 0.8, each the file's image
    comparison = pd.read_csv(fewshot.method_comparison(profile, episodes), dtype={"source_id": str})
    assert len(comparison) == 3 * 7 and comparison.groupby("source_id").size().eq(7).all()
    axes = plots.method_comparison(folder / "method_comparison.csv", store).axes
    first = comparison[comparison.source_id == comparison.source_id.iloc[0]]
    for axis, entry in zip(axes[:7], first.itertuples()):
        path = store.root / entry.file if entry.in_store else entry.file
        with Image.open(path) as image:
            np.testing.assert_array_equal(axis.images[0].get_array(), np.asarray(image.convert("RGB")))
