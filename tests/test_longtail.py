"""The long-tail experiment: budget, pairing, evaluation by bin, ImageNet-LT lists, the ViT fine-tuning loop."""
import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genie_utils import longtail, pairing, splits
from genie_utils.recipe import Recipe
from genie_utils.run_files import LongtailFiles
from genie_utils import results as result_tables


def test_bins_follow_imagenet_lt():
    assert [splits.bin_of(n, 100, 20) for n in (5, 19, 20, 100, 101, 1280)] == \
        ["few", "few", "medium", "medium", "many", "many"]


def small_split(openmoji):
    sizes = {"face-smiling": 12, "heart": 8, "animal-mammal": 3, "food-fruit": 2}
    train = pd.concat([openmoji[openmoji.class_name == c].sort_values("image_id").head(n) for c, n in sizes.items()],
                      ignore_index=True)
    test = pd.concat([openmoji[openmoji.class_name == c].sort_values("image_id").tail(3) for c in sizes],
                     ignore_index=True)
    classes = pd.DataFrame({"class_name": list(sizes), "train_images": list(sizes.values()),
                            "bin": [splits.bin_of(n, 10, 5) for n in sizes.values()]})
    return train, test, classes


def test_the_budget_tops_up_only_the_rare_classes_and_pairs_draw_other_classes(openmoji):
    train, _, classes = small_split(openmoji)
    plan = longtail.budget(classes, top_up_below=5, images_per_class=3)
    assert dict(zip(plan.class_name, plan.generated)) == {"face-smiling": 0, "heart": 0, "animal-mammal": 3,
                                                          "food-fruit": 3}
    rare = plan[plan.generated > 0]
    pairs = pairing.budget_hard_negative_jobs(train, rare, seed=0)
    assert len(pairs) == 6 and all(j.source_class != j.target_class for j in pairs)
    assert len({(j.source_id, j.target_class) for j in pairs}) == 6  # one image per pair
    assert [j.source_id for j in pairs] == [j.source_id for j in pairing.budget_hard_negative_jobs(train, rare, seed=0)]
    assert [j.source_id for j in pairs] != [j.source_id for j in pairing.budget_hard_negative_jobs(train, rare, seed=1)]
    own = pairing.budget_own_class_jobs(train, rare, "img2img_high")
    assert [(j.target_class, j.variant) for j in own] == [("animal-mammal", 0)] * 3 + [("food-fruit", 0)] * 2 + \
        [("food-fruit", 1)]
    assert all(j.source_class == j.target_class for j in own)


def test_a_row_names_its_augmentation_and_its_loss():
    assert longtail.row_parts("genie") == ("genie", "plain")
    assert longtail.row_parts("logit_adjusted") == (None, "logit_adjusted")
    assert longtail.row_parts("txt2img+logit_adjusted") == ("txt2img", "logit_adjusted")
    assert set(longtail.COMBINED) <= set(longtail.ROWS) and len(longtail.COMBINED) == len(longtail.GENERATIVE)
    for bad in ("genie+focal", "dreambooth", "plain+genie"):
        with pytest.raises(ValueError, match="unknown long-tail row"):
            longtail.row_parts(bad)


def test_every_row_trains_and_is_reported_by_bin(counting_backbone, tiny_pipeline, openmoji, class_names, tmp_path,
                                                 monkeypatch):
    from genie_utils import generate
    from genie_utils.store import Store
    pipe, info = tiny_pipeline
    generator = generate.GenieGenerator(pipe, Recipe(num_inference_steps=5), info, batch_size=8)
    train, test, classes = small_split(openmoji)
    plan = longtail.budget(classes, 5, 2)
    store = Store(tmp_path)
    augmentations = longtail.augmentation_table(generator, train, plan[plan.generated > 0], store, class_names,
                                                progress=False)
    assert augmentations.groupby(["method", "noise_ratio"]).size().eq(4).all()  # 2 rare classes x 2 images
    augmentations["source_path"] = augmentations.source_id.map(dict(zip(train.image_id, train.path)))
    fits, fit = [], longtail.fit_linear_sgd

    def recording_fit(x, targets, names, **settings):  # the real fit, its inputs kept
        fits.append((x, targets, names, settings))
        return fit(x, targets, names, **settings)

    monkeypatch.setattr(longtail, "fit_linear_sgd", recording_fit)
    outcomes = longtail.evaluate(counting_backbone(), train, test, classes, plan, augmentations, store, seeds=(0, 1),
                                 training={"epochs": 3, "batch_size": 8}, progress=False)
    # the loss rows as their definitions say: plain cross-entropy on the training set; `balanced` draws each image
    # with weight 1 / its class's size; `logit_adjusted` adds log(prior) to the logits; generative rows add their
    # own images (GeNIe: the r = 0.8 candidates), labelled with the target class
    names = list(classes.class_name)
    sizes = np.array([train.class_name.eq(c).sum() for c in names], float)
    trained = {(m, seed): f for (m, seed), f in zip([(m, s) for m in longtail.ROWS for s in (0, 1)], fits)}
    assert len(fits) == 2 * len(longtail.ROWS) and [f[3]["seed"] for f in fits[:2]] == [0, 1]
    x, targets, _, settings = trained["plain", 0]
    assert len(x) == len(train) and settings["sample_weights"] is None and settings["logit_offsets"] is None
    np.testing.assert_array_equal(targets.argmax(1), [names.index(c) for c in train.class_name])
    x, targets, _, settings = trained["balanced", 1]
    np.testing.assert_allclose(settings["sample_weights"], 1 / sizes[[names.index(c) for c in train.class_name]])
    assert settings["logit_offsets"] is None
    for row in ("logit_adjusted", "genie+logit_adjusted"):
        np.testing.assert_allclose(trained[row, 0][3]["logit_offsets"], np.log(sizes / sizes.sum()))
        assert trained[row, 0][3]["sample_weights"] is None
    genie = augmentations[(augmentations.method == "genie") & (augmentations.noise_ratio == 0.8)]
    for row in ("genie", "genie+logit_adjusted"):
        x, targets, _, _ = trained[row, 0]
        assert len(x) == len(train) + len(genie) == len(train) + 4
        np.testing.assert_array_equal(targets[len(train):].argmax(1), [names.index(c) for c in genie.target_class])
    assert len(outcomes) == len(longtail.ROWS) * 2 * len(test)  # every test image, once per row and seed
    assert (outcomes[(outcomes.method == "plain") & (outcomes.seed == 0)].image_id.to_numpy() == test.image_id).all()
    results = longtail.per_class(outcomes).merge(classes, on="class_name")
    assert set(results.method) == set(longtail.ROWS)
    assert len(results) == len(longtail.ROWS) * 2 * 4 and (results.total == 3).all()
    accuracy = longtail.bin_accuracy(results)
    overall = accuracy[accuracy.bin == "overall"]
    assert (overall.total == 12).all()
    # overall top-1 is each row's share of right answers over every test image, from the outcomes themselves
    hits = outcomes.groupby(["method", "seed"]).correct.mean()
    np.testing.assert_allclose(overall.set_index(["method", "seed"]).accuracy.loc[hits.index], hits)
    one = results[(results.method == "plain") & (results.seed == 0)]
    row = accuracy[(accuracy.method == "plain") & (accuracy.seed == 0) & (accuracy.bin == "few")].iloc[0]
    assert row.accuracy == pytest.approx(one[one.bin == "few"].correct.sum() / one[one.bin == "few"].total.sum())
    # the test-set interval's difference is the difference of the top-1 (averaged over seeds), image by image
    groups = {"few": list(classes[classes.bin == "few"].class_name), "overall": list(classes.class_name)}
    differences = result_tables.bootstrap_differences(outcomes, groups, "plain", draws=200).set_index(["group", "method"])
    top1 = accuracy.groupby(["bin", "method"]).accuracy.mean()
    for group in groups:
        assert differences.loc[(group, "genie"), "mean"] == pytest.approx(100 * (top1[group, "genie"] - top1[group, "plain"]))
    assert set(differences.index.get_level_values("method")) == set(longtail.ROWS) - {"plain"}
    with_correction = outcomes[outcomes.method.isin(("logit_adjusted",) + longtail.COMBINED)]
    added = result_tables.bootstrap_differences(with_correction, groups, "logit_adjusted", draws=200)
    added = added.set_index(["group", "method"])
    assert set(added.index.get_level_values("method")) == set(longtail.COMBINED)
    assert added.loc[("few", "genie+logit_adjusted"), "mean"] == pytest.approx(
        100 * (top1["few", "genie+logit_adjusted"] - top1["few", "logit_adjusted"]))

    # the per-class gain figure (notebook 06): one point per class and method, at the class's training images,
    # the gain over plain cross-entropy (both averaged over seeds) in points, and the few bin's mean in its label
    files = LongtailFiles(tmp_path / "longtail")
    result_tables.write_table(results.merge(plan[["class_name", "generated"]], on="class_name"), files.results)
    gain = pd.read_csv(longtail.gain_by_class(files))
    assert len(gain) == 3 * 4 and set(gain.method) == {"genie", "genie_ada", "txt2img"}
    accuracy_of = results.groupby(["method", "class_name"]).apply(lambda g: g.correct.sum() / g.total.sum(),
                                                                    include_groups=False)
    for row in gain.itertuples():
        assert row.gain == pytest.approx(accuracy_of[row.method, row.class_name] - accuracy_of["plain", row.class_name])
    matplotlib.use("Agg")
    from genie_utils import plots

    figure = plots.longtail_gain(files.gain_by_class, (20, 100))
    axis = figure.axes[0]
    assert [float(line.get_xdata()[0]) for line in axis.lines[1:]] == [20, 100]
    for points, (method, part) in zip(axis.collections, gain.groupby("method", sort=False)):
        np.testing.assert_allclose(points.get_offsets()[:, 1], part.gain * 100)
        np.testing.assert_allclose(points.get_offsets()[:, 0] / part.train_images, 1, atol=0.07)  # jitter only
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert [f"{gain[(gain.method == m) & (gain.bin == 'few')].gain.mean() * 100:+.1f} points" in label
            for m, label in zip(gain.method.unique(), labels)] == [True] * 3


def test_the_budget_curve_grows_one_set_of_images_and_repeats_the_table_rows(counting_backbone, tiny_pipeline, openmoji,
                                                                          class_names, tmp_path):
    from genie_utils import generate
    from genie_utils.store import Store
    pipe, info = tiny_pipeline
    train, test, classes = small_split(openmoji)
    profile = {"longtail": {"top_up_below": 5, "seeds": 2, "training": {"epochs": 3, "batch_size": 8}}}
    store = Store(tmp_path / "store")

    def generator(seed):
        return generate.GenieGenerator(pipe, Recipe(num_inference_steps=5, seed=seed), info, batch_size=8)

    curve = longtail.budget_curve(profile, generator(0), counting_backbone(), train, test, classes, store, class_names,
                                  [2, 1], progress=False)
    assert list(curve.budget.unique()) == [1, 2] and set(curve.generation_seed) == {0}
    assert set(curve.method) == {"genie", "genie_ada", "txt2img"} and set(curve.group) == {"many", "medium", "few", "overall"}
    made = set(store.manifest().key)  # budget 2 made 2 images per rare class and method; budget 1 reused its first
    two = longtail.augmentation_table(generator(0), train, longtail.budget(classes, 5, 2).query("generated > 0"), store,
                                      class_names, progress=False, baselines=("txt2img",))
    assert set(two.key) == made and len(made) == 2 * 2 * (5 + 1)  # 2 classes x 2 images x (5 GeNIe r + Txt2Img)
    # the curve's budget-2 rows are what notebook 06's steps give for that budget
    plan = longtail.budget(classes, 5, 2)
    two["source_path"] = two.source_id.map(dict(zip(train.image_id, train.path)))
    outcomes = longtail.evaluate(counting_backbone(), train, test, classes, plan, two, store, seeds=(0, 1),
                                 training=profile["longtail"]["training"], methods=longtail.BUDGET_ROWS, progress=False)
    expected = result_tables.bootstrap_differences(outcomes, longtail.bin_groups(classes), "plain")
    got = curve[curve.budget == 2].drop(columns=["budget", "generation_seed"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    # another generation seed: other sources and other noise
    other = longtail.budget_curve(profile, generator(1), counting_backbone(), train, test, classes, store, class_names,
                                  [2], progress=False)
    assert set(other.generation_seed) == {1} and len(store.manifest()) > len(made)
    with pytest.raises(ValueError, match="lack 'plain'"):
        longtail.budget_curve(profile, generator(0), counting_backbone(), train, test, classes, store, class_names, [1],
                              rows=("genie",), progress=False)


def imagenet_lt_fixture(root):
    lines = {"train": [], "test": []}
    for label, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
        for split, count in (("train", 3 + 2 * label), ("test", 2)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                Image.new("RGB", (40, 36), (80 * label, 20 * k, 0)).save(folder / f"{wnid}_{k}.JPEG")
                lines[split].append(f"{split}/{wnid}/{wnid}_{k}.JPEG {label}")
    for split, rows in lines.items():
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(rows) + "\n")
    return {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
            "n01484850": "great white shark, white shark"}


def test_imagenet_lt_lists_load_and_bad_lists_are_named(tmp_path):
    names = imagenet_lt_fixture(tmp_path)
    train = longtail.read_split_list(tmp_path, tmp_path / "ImageNet_LT_train.txt", names)
    assert len(train) == 3 + 5 + 7 and train.class_name.value_counts().to_dict() == \
        {"n01484850": 7, "n01443537": 5, "n01440764": 3}
    assert set(train.display_name) == set(names.values())
    (tmp_path / "bad.txt").write_text("train/n01440764/n01440764_0.JPEG zero\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected '<relative path> <integer label>'"):
        longtail.read_split_list(tmp_path, tmp_path / "bad.txt")
    (tmp_path / "gone.txt").write_text("train/n01440764/missing.JPEG 0\n")
    with pytest.raises(FileNotFoundError, match=r"1 images of .*gone.txt are not under"):
        longtail.read_split_list(tmp_path, tmp_path / "gone.txt")
    (tmp_path / "clash.txt").write_text("train/n01440764/n01440764_0.JPEG 0\ntrain/n01440764/n01440764_1.JPEG 4\n")
    with pytest.raises(ValueError, match="folder n01440764 has labels 0 and 4"):
        longtail.read_split_list(tmp_path, tmp_path / "clash.txt")


def test_the_vit_fine_tuning_loop_runs_on_cpu(tmp_path):
    names = imagenet_lt_fixture(tmp_path)
    train = longtail.read_split_list(tmp_path, tmp_path / "ImageNet_LT_train.txt", names)
    test = longtail.read_split_list(tmp_path, tmp_path / "ImageNet_LT_test.txt", names)
    spec = {"model": "vit_tiny", "weights": "", "image_size": 32, "epochs": 2, "batch_size": 4, "learning_rate": 1e-3,
            "weight_decay": 0.05, "warmup_epochs": 1, "label_smoothing": 0.1, "mixed_precision": "no"}
    classes = pd.DataFrame({"class_name": sorted(names), "train_images": [3, 5, 7], "bin": "few"})
    extra = pd.DataFrame({"path": [train.path.iloc[0]], "target_class": ["n01484850"]})
    for method in ("plain", "balanced", "logit_adjusted", "genie+logit_adjusted"):
        table = longtail.per_class(longtail.finetune(spec, train, test, classes, extra, method, seed=0, progress=False))
        assert sorted(table.class_name) == sorted(names) and (table.total == 2).all()
        assert (table.correct <= table.total).all() and set(table.method) == {method}
    with pytest.raises(KeyError, match="unknown model 'vit_huge'"):
        longtail.vision_transformer({"model": "vit_huge", "image_size": 32}, 3)


def test_a_profile_of_class_folders_without_split_lists_has_no_long_tail():
    from genie_utils import profiles
    with pytest.raises(ValueError, match=r"profile 'paper' has no long tail: its dataset is class folders, without "
                                         r"ImageNet-LT's split lists .* Use a long-tail profile \(paper-longtail"):
        longtail.load_split(profiles.load_profile("paper"))
