"""GeNIe-Ada: the selection rule on constructed embeddings, and the sweep on the tiny pipeline."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from genie_utils import ada, features, generate, pairing
from genie_utils.jobs import Job, run_jobs
from genie_utils.store import Store

RATIOS = list(ada.ADA_RATIOS)


def test_largest_jump_picks_the_ratio_right_after_it():
    source = np.array([1.0, 0, 0])
    prototype = np.array([[0, 1.0, 0]])
    t = np.array([0.0, 0.1, 0.8, 0.9, 1.0])  # interpolation weights: the switch is between 0.6 and 0.7
    candidates = (1 - t)[:, None] * source + t[:, None] * prototype[0]
    choice = ada.select_noise_ratio(source, prototype, candidates, RATIOS)
    assert choice.noise_ratio == 0.7
    assert np.argmax(choice.jumps) == 1 and len(choice.jumps) == 4 and len(choice.projections) == 5


def test_projections_follow_the_spec_formula_on_unnormalised_inputs():
    rng = np.random.default_rng(0)
    source, support, candidates = rng.normal(size=8) * 3, rng.normal(size=(5, 8)) * 2, rng.normal(size=(5, 8)) * 7
    choice = ada.select_noise_ratio(source, support, candidates, RATIOS)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    prototype = unit(support).mean(0)  # mean of normalised embeddings, not normalised again
    v = prototype - unit(source)
    expected = unit(candidates) @ v / np.linalg.norm(v)
    np.testing.assert_allclose(choice.projections, expected, rtol=1e-12)
    np.testing.assert_allclose(choice.jumps, np.abs(np.diff(expected)), rtol=1e-12)
    renormalised = unit(candidates) @ (unit(prototype) - unit(source)) / np.linalg.norm(unit(prototype) - unit(source))
    assert not np.allclose(choice.projections, renormalised)


def test_ties_take_the_first_maximum_and_falling_projections_count():
    source, prototype = np.array([1.0, 0, 0]), np.array([[0, 1.0, 0]])
    x, y = np.array([0.9, 0.1, 0.2]), np.array([0.2, 0.9, 0.1])
    tie = ada.select_noise_ratio(source, prototype, np.stack([x, y, x, x, x]), RATIOS)  # jumps a, a, 0, 0
    assert tie.jumps[0] == tie.jumps[1] > 0 and tie.noise_ratio == 0.6
    t = np.array([0.9, 0.8, 0.1, 0.0, 0.0])  # moving away from the target: |jump| still counts
    back = ada.select_noise_ratio(source, prototype, (1 - t)[:, None] * source + t[:, None] * prototype[0], RATIOS)
    assert back.noise_ratio == 0.7


def test_the_smallest_ratio_is_never_chosen():
    rng = np.random.default_rng(1)
    chosen = {ada.select_noise_ratio(rng.normal(size=16), rng.normal(size=(3, 16)), rng.normal(size=(5, 16)),
                                     RATIOS).noise_ratio for _ in range(300)}
    assert 0.5 not in chosen and chosen <= {0.6, 0.7, 0.8, 0.9}


def test_one_shot_prototype_is_the_single_support_embedding():
    rng = np.random.default_rng(2)
    source, support, candidates = rng.normal(size=8), rng.normal(size=8), rng.normal(size=(5, 8))
    a = ada.select_noise_ratio(source, support, candidates)
    b = ada.select_noise_ratio(source, support[None], candidates)
    c = ada.select_noise_ratio(source, np.stack([support, support * 4.0]), candidates)  # same direction twice
    np.testing.assert_allclose(a.projections, b.projections)
    np.testing.assert_allclose(a.projections, c.projections)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one candidate embedding per ratio"):
        ada.select_noise_ratio(np.ones(3), np.ones((1, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="equals the target prototype"):
        ada.select_noise_ratio(np.array([1.0, 0, 0]), np.array([[2.0, 0, 0]]), np.eye(3)[[0, 1, 2, 0, 1]])
    with pytest.raises(ValueError, match="at least two increasing noise ratios"):
        ada.select_noise_ratio(np.ones(3), np.ones((1, 3)) * 2, np.eye(3)[[0, 1, 2, 0, 1]], [0.9, 0.8, 0.7, 0.6, 0.5])


def test_cost_per_kept_image_is_175_versus_40_steps():
    assert ada.cost_per_kept_image(RATIOS) == {"unet_steps": 175, "vae_encodes": 1, "vae_decodes": 5}
    assert ada.cost_per_kept_image([0.8]) == {"unet_steps": 40, "vae_encodes": 1, "vae_decodes": 1}


# --------------------------------------------------------------------------------------------------
# Backbones and the feature cache


def test_feature_cache_computes_each_image_once(counting_backbone, openmoji, tmp_path):
    backbone, cache = counting_backbone(), features.FeatureCache(tmp_path)
    paths = list(openmoji.path[:5]) + [openmoji.path[0]]
    first = features.embed(backbone, paths, cache)
    assert first.shape == (6, 8) and backbone.embedded == 5
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(first[0], first[5])
    again = features.embed(backbone, paths, cache)
    assert backbone.embedded == 5 and np.array_equal(first, again)
    other = counting_backbone()
    other.transform = features.Transform(resize=48, crop=32)  # another transform: another cache key
    assert other.key != backbone.key


def test_efficientnet_lite0_loads_offline_and_gives_unit_1280d_features(openmoji):
    backbone = features.efficientnet_lite0()
    out = features.embed(backbone, list(openmoji.path[:2]))
    assert out.shape == (2, 1280) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)
    assert backbone.transform.crop == 224 and len(backbone.weights) == 16


def test_unisiam_checkpoints_lose_wrappers_and_heads(tmp_path):
    import torchvision
    reference = torchvision.models.resnet18(weights=None)
    state = {f"module.encoder.{k}": v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    state["module.projector.0.weight"] = torch.zeros(3)
    torch.save({"state_dict": state}, tmp_path / "unisiam.pth")
    backbone = features.resnet("resnet18", tmp_path / "unisiam.pth")
    assert torch.equal(backbone.network.conv1.weight, reference.conv1.weight)
    del state["module.encoder.layer4.1.bn2.running_var"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(KeyError, match=r"lacks 1 weights.*layer4.1.bn2.running_var"):
        features.resnet("resnet18", tmp_path / "broken.pth")
    with pytest.raises(FileNotFoundError, match="no backbone checkpoint"):
        features.resnet("resnet18", tmp_path / "absent.pth")


# --------------------------------------------------------------------------------------------------
# The sweep on the tiny pipeline


def one_shot_support(openmoji):
    classes = ["animal-mammal", "heart", "face-smiling"]
    return pd.concat([openmoji[openmoji.class_name == c].head(1) for c in classes], ignore_index=True)


def test_candidates_share_noise_and_encodes_and_reuse_the_genie_image(fast_generator, openmoji, class_names, tmp_path):
    support = one_shot_support(openmoji)
    pairs = pairing.episode_jobs(support, "genie")  # 6 pairs
    store = Store(tmp_path)
    genie_rows = run_jobs(fast_generator, pairs[:2], store, class_names, progress=False)
    before = generate.GenerationCounts(**vars(fast_generator.counts))
    rows = ada.generate_candidates(fast_generator, pairs, store, class_names, batch_size=4, progress=False)
    counts = fast_generator.counts
    assert len(rows) == 5 * len(pairs)
    assert (rows.groupby(["source_id", "target_class"]).seed.nunique() == 1).all()  # one noise draw per pair
    assert sorted(rows.noise_ratio.unique()) == RATIOS
    per_pair = ada.cost_per_kept_image(RATIOS, 10)["unet_steps"]  # 10-step recipe: 5+6+7+8+9 = 35
    assert per_pair == 35
    assert counts.unet_steps - before.unet_steps == per_pair * 6 - 8 * 2  # the two GeNIe images were reused
    assert counts.vae_encodes - before.vae_encodes == 6  # each source encoded once for all ratios
    assert set(genie_rows.key) <= set(rows.key)
    again = ada.generate_candidates(fast_generator, pairs, store, class_names, progress=False)
    assert counts.unet_steps - before.unet_steps == per_pair * 6 - 16 and list(again.key) == list(rows.key)


def test_measure_cost_counts_each_method_s_work_per_kept_image_on_fresh_stores(fast_generator, openmoji, class_names,
                                                                               tmp_path):
    pairs = pairing.episode_jobs(one_shot_support(openmoji), "genie")[:3]
    table = ada.measure_cost(fast_generator, pairs, class_names, tmp_path, batch_size=2).set_index("method")
    assert list(table.index) == ["genie", "genie_ada"] and (table.kept_images == 3).all()
    # 10 steps: GeNIe at r = 0.8 runs 8; GeNIe-Ada's sweep 5 + 6 + 7 + 8 + 9 = 35, one encode, five decodes
    assert table.unet_steps_per_image.tolist() == [8, 35]
    assert table.vae_encodes_per_image.tolist() == [1, 1] and table.vae_decodes_per_image.tolist() == [1, 5]
    assert table.relative_time["genie"] == 1 and table.relative_time["genie_ada"] == pytest.approx(
        table.seconds_per_image["genie_ada"] / table.seconds_per_image["genie"])
    assert len(Store(tmp_path / "genie").manifest()) == 3 and len(Store(tmp_path / "genie_ada").manifest()) == 15
    with pytest.raises(FileExistsError, match="not empty: cost is measured on fresh stores"):
        ada.measure_cost(fast_generator, pairs, class_names, tmp_path)


def test_ada_choices_keep_one_image_per_pair(counting_backbone, fast_generator, openmoji, class_names, tmp_path):
    support = one_shot_support(openmoji)
    pairs = pairing.episode_jobs(support, "genie")
    store = Store(tmp_path)
    candidates = ada.generate_candidates(fast_generator, pairs, store, class_names, progress=False)
    choices = ada.ada_choices(counting_backbone(), candidates, support, store)
    assert len(choices) == len(pairs)  # the Ada set has the size of the GeNIe set
    assert set(choices.noise_ratio) <= {0.6, 0.7, 0.8, 0.9}
    for row in choices.itertuples():
        assert row.chosen_key in row.candidate_keys
        assert row.candidate_keys[RATIOS.index(row.noise_ratio)] == row.chosen_key
    manifest = store.manifest()
    ada_rows = manifest[manifest.method == "genie_ada"]
    assert len(ada_rows) == len(pairs) and ada_rows.key.is_unique
    assert set(ada_rows.file) <= set(manifest[manifest.method == "genie"].file)  # no copies
    assert all(len(j) == 4 for j in ada_rows.jumps)

    # notebook 03's files and figure 3: the choices survive their CSV, and the figure draws the sharpest rise's
    # projections at every r, its candidates' images in r's order, and frames the chosen one
    import matplotlib

    matplotlib.use("Agg")
    from genie_utils import plots

    path = ada.write_choices(choices, tmp_path / "ada" / "choices.csv")
    again = ada.read_choices(path)
    assert list(again.candidate_keys) == list(choices.candidate_keys) and again.noise_ratio.equals(choices.noise_ratio)
    choice = ada.sharpest_rise(again)
    figure = plots.ada_projection(choice, store)
    line = figure.axes[0].lines[0]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [choice[f"s_{r:g}"] for r in RATIOS])
    insets = figure.axes[1:]
    assert len(insets) == len(RATIOS) == len(choice.candidate_keys)
    for inset, key, r in zip(insets, choice.candidate_keys, RATIOS):
        np.testing.assert_array_equal(inset.images[0].get_array(), np.asarray(store.load_image(key)))
        assert (inset.spines["top"].get_linewidth() == 3) == (r == choice.noise_ratio)


class TableBackbone(features.Backbone):
    """A stub backbone returning given embeddings, looked up by the image's network input."""

    def __init__(self, table):
        network = nn.Identity()
        super().__init__("table", "stub", network, features.Transform(), network)
        self.table = table

    def embed_inputs(self, batch):
        return np.stack([self.table[input_key(x)] for x in batch])


def pixels_key(image):
    return input_key(features.Transform()(image))


def input_key(tensor):
    import hashlib
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()


def test_ada_choices_use_the_target_prototype_and_the_source_embedding(fast_generator, openmoji, class_names, tmp_path):
    """Known embeddings: candidates move from the source's axis towards the target's with a jump placed per
    pair, plus a decoy move towards the third class elsewhere. r* must be what the formula gives by hand, and
    differ, for most pairs, from what the third class's prototype would give."""
    from genie_utils.images import load_image
    support = one_shot_support(openmoji)
    classes = list(support.class_name)
    axis = {c: np.eye(8)[i] for i, c in enumerate(classes)}
    store = Store(tmp_path)
    pairs = pairing.episode_jobs(support, "genie")
    candidates = ada.generate_candidates(fast_generator, pairs, store, class_names, progress=False)
    table = {pixels_key(load_image(p)): axis[c] for p, c in zip(support.path, support.class_name)}
    expected, wrong = {}, {}
    for n, ((source_class, target), group) in enumerate(candidates.groupby(["source_class", "target_class"])):
        third = next(c for c in classes if c not in (source_class, target))
        k = n % 4
        t = np.array([0.0, 0.05, 0.1, 0.15, 0.2]) + 0.8 * (np.arange(5) > k)
        u = 0.8 * (np.arange(5) > (k + 2) % 4)  # decoy: towards the third class, elsewhere
        vectors = [axis[source_class] + t_r * axis[target] + u_r * axis[third] for t_r, u_r in zip(t, u)]
        for key, vector in zip(group.sort_values("noise_ratio").key, vectors):
            table[pixels_key(store.load_image(key))] = vector
        unit = np.array([v / np.linalg.norm(v) for v in vectors])
        for out, prototype in ((expected, axis[target]), (wrong, axis[third])):
            direction = prototype - axis[source_class]
            jumps = np.abs(np.diff(unit @ direction / np.linalg.norm(direction)))
            out[(source_class, target)] = RATIOS[int(np.argmax(jumps)) + 1]
    choices = ada.ada_choices(TableBackbone(table), candidates, support, store)
    got = {(r.source_class, r.target_class): r.noise_ratio for r in choices.itertuples()}
    assert got == expected
    assert sum(got[pair] != wrong[pair] for pair in got) >= 3
    assert sorted(set(expected.values())) != [expected[next(iter(expected))]]  # not one r for every pair


def test_checkpoints_of_another_architecture_or_broken_files_are_refused(tmp_path):
    import torchvision
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(KeyError, match=r"r34.pth as resnet18: the checkpoint has \d+ weights the backbone does not"):
        features.resnet("resnet18", tmp_path / "r34.pth")
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "shapes.pth")
    with pytest.raises(KeyError, match=r"other shapes than the backbone's, e.g. layer1.0.conv1.weight"):
        features.resnet("resnet18", tmp_path / "shapes.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot read the backbone checkpoint .*empty.pth: it is empty, truncated"):
        features.resnet("resnet18", tmp_path / "empty.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "shapes.pth").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cannot read the backbone checkpoint .*cut.pth"):
        features.resnet("resnet18", tmp_path / "cut.pth")


def test_embed_and_candidates_refuse_empty_inputs_and_bad_batch_sizes(counting_backbone, fast_generator, class_names,
                                                                      tmp_path):
    with pytest.raises(ValueError, match="non-empty list of images"):
        features.embed(counting_backbone(), [])
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        features.embed(counting_backbone(), ["x.png"], batch_size=0)
    with pytest.raises(ValueError, match="no \\(source, target\\) pairs given"):
        ada.generate_candidates(fast_generator, [], Store(tmp_path), class_names, progress=False)
    job = Job("genie", "a", "x.png", "heart", "face-smiling", 0.8)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 1.5"):
        ada.generate_candidates(fast_generator, [job], Store(tmp_path), class_names, batch_size=1.5, progress=False)


def test_the_feature_transform_is_resize_crop_normalise():
    """A flat colour stays flat through resize and crop: (value - mean) / std, here by hand."""
    from PIL import Image
    out = features.IMAGENET(Image.new("RGB", (300, 400), (200, 100, 50)))
    assert out.shape == (3, 224, 224)
    expected = [(200 - 0.485 * 255) / (0.229 * 255), (100 - 0.456 * 255) / (0.224 * 255), (50 - 0.406 * 255) / (0.225 * 255)]
    torch.testing.assert_close(out[:, 100, 100], torch.tensor(expected), atol=1e-4, rtol=0)
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (256, 1, 3)))
    lite = features.EFFICIENTNET_LITE(ramp)  # 256 px: no resize, crop columns 16..239
    torch.testing.assert_close(lite[0, 5, :], (torch.arange(16, 240).float() - 127) / 128, atol=1e-4, rtol=0)


def test_figure_three_shows_the_largest_rise_not_a_larger_fall():
    choices = pd.DataFrame({"s_0.5": [0.4, 0.0, 0.1], "s_0.6": [-0.1, 0.05, 0.1], "s_0.7": [-0.1, 0.35, 0.12],
                            "s_0.8": [-0.1, 0.36, 0.5], "s_0.9": [-0.1, 0.36, 0.5], "pair": ["fall", "rise", "late"]})
    assert ada.sharpest_rise(choices).pair == "late"  # rise 0.38 beats rise 0.30; the fall of 0.5 is not drawn
    assert ada.sharpest_rise(choices.iloc[:1]).pair == "fall"  # nothing rises: the largest jump anyway


def test_class_prototypes_group_rows_by_label_in_order():
    features = np.arange(12.0).reshape(6, 2)
    prototypes = ada.class_prototypes(features, ["b", "a", "b", "c", "a", "b"])
    assert list(prototypes) == ["b", "a", "c"]
    assert prototypes["b"].tolist() == [[0, 1], [4, 5], [10, 11]] and prototypes["c"].tolist() == [[6, 7]]
    with pytest.raises(ValueError, match="6 embeddings but 5 labels"):
        ada.class_prototypes(features, list("abcab"))


def test_choose_candidates_takes_the_candidate_after_the_largest_jump_of_each_pair():
    """Two pairs towards one target on hand-made 2-d embeddings: the source at (1, 0), the target's prototype at
    (0, 1), so each candidate's projection on the line is (y - x) / sqrt(2) for a unit candidate (x, y)."""
    ratios = [0.5, 0.6, 0.7, 0.8, 0.9]
    angles = {"s1": [0.0, 0.1, 0.2, 1.3, 1.4],    # the largest jump between 0.7 and 0.8: r* = 0.8
              "s2": [0.0, 1.0, 1.1, 1.2, 1.5]}    # between 0.5 and 0.6: r* = 0.6
    rows, embedding = [], {}
    for source, turns in angles.items():
        for r, angle in zip(ratios, turns):
            key = f"{source}-{r}"
            embedding[key] = np.array([np.cos(angle), np.sin(angle)])
            rows.append({"source_id": source, "target_class": "t", "noise_ratio": r, "key": key})
    candidates = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order plays no part
    sources = {"s1": np.array([1.0, 0.0]), "s2": np.array([2.0, 0.0])}  # normalised before use
    prototypes = ada.class_prototypes(np.array([[0.0, 1.0], [0.0, 3.0]]), ["t", "t"])
    chosen = ada.choose_candidates(candidates, sources, prototypes, embedding, ratios)
    by_hand = {}
    for source, turns in angles.items():
        projections = [(np.sin(a) - np.cos(a)) / np.sqrt(2) for a in turns]
        by_hand[source] = ratios[int(np.argmax(np.abs(np.diff(projections)))) + 1]
    assert by_hand == {"s1": 0.8, "s2": 0.6}
    assert dict(zip(chosen.source_id, chosen.noise_ratio)) == by_hand
    assert chosen.key.tolist() == ["s1-0.8", "s2-0.6"] and list(chosen.columns) == list(candidates.columns)
    with pytest.raises(ValueError, match="needs one candidate at each of"):
        ada.choose_candidates(candidates[candidates.key != "s2-0.7"], sources, prototypes, embedding, ratios)


@pytest.mark.parametrize("ratios", [[], [0.8], [0.9, 0.5], [0.5, 0.5, 0.9]])
def test_ada_ratios_that_are_not_two_or_more_increasing_are_named_before_any_work(ratios):
    with pytest.raises(ValueError, match=r"GeNIe-Ada's ratios must be at least two increasing noise ratios"):
        ada.generate_candidates(None, [object()], None, {}, ratios=ratios)  # nothing else is looked at
    with pytest.raises(ValueError, match=r"GeNIe-Ada's ratios must be at least two increasing noise ratios"):
        ada.select_noise_ratio(np.ones(3), np.ones((1, 3)), np.ones((len(ratios), 3)), ratios)


def test_embeddings_of_the_wrong_shape_are_named():
    source, support = np.array([1.0, 0.0]), np.array([[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"one candidate embedding per ratio: 5 ratios .*, 4 candidates"):
        ada.select_noise_ratio(source, support, np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"differ in dimension: source 2, target support 2, candidates 3"):
        ada.select_noise_ratio(source, support, np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"expected a source embedding \(D,\)"):
        ada.select_noise_ratio(np.ones((2, 2)), support, np.ones((5, 2)))
    choice = ada.select_noise_ratio(source, support, [[1, 0], [1, 0.1], [0.2, 1], [0.1, 1], [0, 1]])  # lists work
    assert choice.noise_ratio == 0.7
