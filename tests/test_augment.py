"""Classic augmentations: seeded views, MixUp and CutMix, and the linear classifiers."""
import numpy as np
import pytest
from PIL import Image

from genie_utils import augment, classifier


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def test_views_are_seeded_by_image_kind_and_index(picture):
    weak0 = augment.View("weak", 0)(picture, "hash-a")
    assert weak0.size == (224, 224)
    assert np.array_equal(np.asarray(weak0), np.asarray(augment.View("weak", 0)(picture, "hash-a")))
    others = [augment.View("weak", 1)(picture, "hash-a"), augment.View("weak", 0)(picture, "hash-b"),
              augment.View("strong", 0)(picture, "hash-a")]
    assert all(not np.array_equal(np.asarray(weak0), np.asarray(o)) for o in others)
    import torch
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    augment.View("strong", 3)(picture, "hash-a")
    assert torch.equal(torch.rand(1), before)  # the global generator is left as it was
    assert augment.View("centre").name == "centre" and augment.View("strong", 2).name == "strong-2"
    with pytest.raises(ValueError, match="unknown view kind 'medium'"):
        augment.View("medium")


def test_mixup_blends_pixels_and_cutmix_pastes_a_box_of_the_stated_area():
    a, b = Image.new("RGB", (224, 224), (200, 0, 0)), Image.new("RGB", (224, 224), (0, 0, 100))
    mix = augment.mix_parameters("mixup", seed=5)
    assert 0 <= mix.weight <= 1 and mix.box is None
    blended = np.asarray(augment.mix_images(a, b, mix), int)
    assert np.abs(blended[0, 0] - np.round([200 * mix.weight, 0, 100 * (1 - mix.weight)])).max() <= 1
    for seed in range(20):
        cut = augment.mix_parameters("cutmix", seed)
        top, left, height, width = cut.box
        assert cut.weight == pytest.approx(1 - height * width / 224**2)
        pasted = np.asarray(augment.mix_images(a, b, cut))
        assert (pasted[..., 2] == 100).sum() == height * width  # exactly the box comes from b
    weights = [augment.mix_parameters("mixup", s).weight for s in range(400)]
    assert 0.45 < np.mean(weights) < 0.55 and np.mean(np.array(weights) < 0.2) > 0.15  # Beta(0.8, 0.8): U-shaped
    with pytest.raises(ValueError, match="unknown mixing method"):
        augment.mix_parameters("mosaic", 0)


def separable(n, dims=64, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = np.eye(classes, dims)[labels] * 2 + rng.normal(size=(n, dims)) * 0.3
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_logistic_regression_in_the_row_space_equals_the_plain_fit():
    from sklearn.linear_model import LogisticRegression
    x, y = separable(24, dims=200)
    x[1] = x[0]  # a duplicated view: the Gram matrix is singular
    queries = separable(30, dims=200, seed=1)[0]
    ours = classifier.fit_logistic(x, y)
    plain = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    np.testing.assert_allclose(ours.predict_proba(queries), plain.predict_proba(queries), atol=1e-4)
    binary = classifier.fit_logistic(x[y < 2], y[y < 2])
    plain = LogisticRegression(C=1.0, max_iter=1000).fit(x[y < 2], y[y < 2])
    np.testing.assert_allclose(binary.predict_proba(queries), plain.predict_proba(queries), atol=1e-4)
    with pytest.raises(ValueError, match="one row per label"):
        classifier.fit_logistic(x[:5], y)


def test_sgd_head_in_the_row_space_equals_the_full_space(monkeypatch):
    x, y = separable(30, dims=100)
    targets = classifier.one_hot(y, [0, 1, 2]) * 0.8 + 0.2 / 3  # soft labels
    reduced = classifier.fit_linear_sgd(x, targets, [0, 1, 2], seed=0, epochs=20)
    monkeypatch.setattr(classifier, "row_space", lambda f: (f, None))
    full = classifier.fit_linear_sgd(x, targets, [0, 1, 2], seed=0, epochs=20)
    np.testing.assert_allclose(reduced.logits(x), full.logits(x), atol=1e-8)
    assert reduced.accuracy(x, y) == 1.0


def test_sgd_head_resampling_and_logit_adjustment():
    x, y = separable(60, dims=16)
    keep = (y != 2) | (np.arange(60) < 6)  # class 2 rare: 2 of 22 images
    x, y = x[keep], y[keep]
    targets = classifier.one_hot(y, [0, 1, 2])
    prior = np.bincount(y) / len(y)
    balanced = classifier.fit_linear_sgd(x, targets, [0, 1, 2], seed=0, epochs=5,
                                         sample_weights=1 / prior[y])
    adjusted = classifier.fit_linear_sgd(x, targets, [0, 1, 2], seed=0, epochs=5, logit_offsets=np.log(prior))
    plain = classifier.fit_linear_sgd(x, targets, [0, 1, 2], seed=0, epochs=5)
    # both long-tail corrections raise the rare class's score relative to the plain head
    for model in (balanced, adjusted):
        assert (model.logits(x)[:, 2] - plain.logits(x)[:, 2]).mean() > 0
    with pytest.raises(ValueError, match="targets must be"):
        classifier.fit_linear_sgd(x, targets[:, :2], [0, 1, 2], seed=0)


def test_soft_labels_weigh_the_first_class_by_w_and_the_second_by_one_minus_w():
    soft = classifier.soft_labels(np.array([0.7, 1.0, 0.25]), ["b", "a", "c"], ["a", "c", "c"], ["a", "b", "c"])
    np.testing.assert_allclose(soft, [[0.3, 0.7, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], atol=1e-12)
