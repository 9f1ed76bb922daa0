"""Linear classifiers on frozen features: the few-shot logistic regression and the linear heads trained with
SGD (soft labels for MixUp/CutMix, re-sampling and logit adjustment for the long tail).

Both return a `LinearClassifier` (weights, bias, classes) so that evaluation code does not care which one
it holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.linalg import LinAlgError, cholesky, solve_triangular
from sklearn.linear_model import LogisticRegression


@dataclass
class LinearClassifier:
    """Scores = features @ weights + bias; `classes[j]` is the class of column j."""
    weights: np.ndarray   # (D, C)
    bias: np.ndarray      # (C,)
    classes: list

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weights + self.bias

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        logits = self.logits(features)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes)[self.logits(features).argmax(axis=1)]

    def accuracy(self, features: np.ndarray, labels: Sequence) -> float:
        return float(np.mean(self.predict(features) == np.asarray(labels)))


def _check(features: np.ndarray, count: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != count or count == 0:
        raise ValueError(f"need features (N, D) with one row per label, got {features.shape} for {count} labels")
    return features


def row_space(features: np.ndarray):
    """(coordinates, to_full) of features in their own row space when N < D, else (features, None).

    An L2-penalised linear model puts no weight outside the row space (the penalty would only grow), and
    gradient steps from zero never leave it, so fitting on the (N, rank) coordinates and mapping the weights
    back with `to_full` (rank, C) -> (D, C) gives the same classifier at a fraction of the cost. The basis
    comes from the (N, N) Gram matrix: a Cholesky factor when it is positive definite, else its eigenvectors."""
    if len(features) >= features.shape[1]:
        return features, None
    gram = features @ features.T
    try:
        lower = cholesky(gram, lower=True)
        if np.diag(lower).min() > 1e-6 * np.sqrt(np.diag(gram).max()):
            return lower, lambda w: features.T @ solve_triangular(lower, w, trans="T", lower=True)
    except LinAlgError:
        pass  # duplicate or dependent rows: fall back to the eigenvectors of the non-zero eigenvalues
    values, vectors = np.linalg.eigh(gram)
    keep = values > values.max() * 1e-10
    scale = np.sqrt(values[keep])
    return vectors[:, keep] * scale, lambda w: features.T @ (vectors[:, keep] @ (w / scale[:, None]))


def fit_logistic(features: np.ndarray, labels: Sequence, C: float = 1.0, max_iter: int = 1000) -> LinearClassifier:
    """scikit-learn `LogisticRegression` (L2, C, lbfgs, multinomial), the paper's few-shot classifier.

    With fewer samples than dimensions (few-shot: tens of samples, 512-2048 dimensions) it is fitted on the
    features' coordinates in their own row space: the L2 penalty puts no weight outside that space, so the
    optimum is the same, and lbfgs works in N instead of D dimensions (3-5x faster at N = 45-225, D = 1280).
    """
    labels = np.asarray(labels)
    features = _check(features, len(labels))
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise ValueError(f"need at least two classes to fit a classifier, got {classes}")
    features, to_full = row_space(features)
    model = LogisticRegression(C=C, max_iter=max_iter).fit(features, labels)
    weights = model.coef_.T if len(classes) > 2 else np.hstack([-model.coef_.T, model.coef_.T]) / 2
    bias = model.intercept_ if len(classes) > 2 else np.array([-model.intercept_[0], model.intercept_[0]]) / 2
    return LinearClassifier(to_full(weights) if to_full else weights, bias, list(model.classes_))


def fit_linear_sgd(features: np.ndarray, targets: np.ndarray, classes: Sequence, seed: int, epochs: int = 100,
                   batch_size: int = 16, learning_rate: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 1e-3, sample_weights: np.ndarray | None = None,
                   logit_offsets: np.ndarray | None = None) -> LinearClassifier:
    """A linear softmax head trained with mini-batch SGD (momentum, weight decay) on soft targets (N, C).

    The paper's MixUp/CutMix recipe: lr 0.1, momentum 0.9, weight decay 1e-3, 100 epochs, batch 16.
    `sample_weights` draws each epoch's samples with replacement in proportion to them (class-balanced
    re-sampling); `logit_offsets` are added to the logits in training only (logit adjustment, Menon et al.
    2021: tau * log prior). Written in numpy, in the features' row space when N < D: at these sizes torch
    spends 20x longer on per-step overhead.
    """
    targets = np.asarray(targets, dtype=np.float64)
    features = _check(features, len(targets))
    if targets.ndim != 2 or targets.shape[1] != len(classes):
        raise ValueError(f"targets must be (N, {len(classes)}), got {targets.shape}")
    rng = np.random.default_rng(seed)
    # a constant column carries the bias, decayed like the weights, as torch's SGD does for nn.Linear
    features, to_full = row_space(np.hstack([features, np.ones((len(features), 1))]))
    count = len(features)
    weights = np.zeros((features.shape[1], len(classes)))
    velocity = np.zeros_like(weights)
    offsets = np.zeros(len(classes)) if logit_offsets is None else np.asarray(logit_offsets, dtype=np.float64)
    probabilities = None if sample_weights is None else np.asarray(sample_weights, float) / np.sum(sample_weights)
    for _ in range(epochs):
        order = rng.permutation(count) if probabilities is None else rng.choice(count, count, p=probabilities)
        for start in range(0, count, batch_size):
            index = order[start:start + batch_size]
            x = features[index]
            logits = x @ weights + offsets
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p -= targets[index]  # now the gradient of the summed soft-label cross-entropy w.r.t. the logits
            velocity *= momentum
            velocity += x.T @ p / len(index) + weight_decay * weights
            weights -= learning_rate * velocity
    weights = to_full(weights) if to_full else weights
    return LinearClassifier(weights[:-1], weights[-1], list(classes))


def one_hot(labels: Sequence, classes: Sequence) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)))
    out[np.arange(len(labels)), [index[label] for label in labels]] = 1.0
    return out


def soft_labels(weights: np.ndarray, firsts: Sequence, seconds: Sequence, classes: Sequence) -> np.ndarray:
    """The soft labels of mixed samples (MixUp, CutMix): weight w on the first image's class, 1 - w on the
    second's, (M, classes)."""
    weights = np.asarray(weights, dtype=float)[:, None]
    return weights * one_hot(firsts, classes) + (1 - weights) * one_hot(seconds, classes)
