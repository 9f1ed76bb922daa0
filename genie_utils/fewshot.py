"""Few-shot episodes: N-way K-shot support sets and query sets drawn from the evaluation pool.

Support and query never share an image or an identity (the official sampler can overlap them; this one
does not). Episode i uses seed i, so an episode is the same on every machine.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .splits import EVALUATION


def eligible_classes(tables: dict[str, pd.DataFrame], shots: int) -> list[str]:
    table = tables["fewshot_classes.csv"]
    return sorted(table[table[f"eligible_{shots}shot"].astype(bool)].class_name)


def sample_episode(dataset: pd.DataFrame, tables: dict[str, pd.DataFrame], ways: int, shots: int,
                   queries: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(support, query) of one episode: `ways` eligible classes, `shots` support images of distinct
    identities per class, `queries` query images per class from the class's other identities."""
    classes = eligible_classes(tables, shots)
    if len(classes) < ways:
        raise ValueError(f"only {len(classes)} classes are eligible for {shots}-shot episodes; ways = {ways} "
                         "is too many (see fewshot_classes.csv)")
    pool = tables["splits.csv"].set_index("image_id").pool
    evaluation = dataset[dataset.image_id.map(pool) == EVALUATION]
    rng = np.random.default_rng(seed)
    support, query = [], []
    for class_name in sorted(rng.choice(classes, size=ways, replace=False)):
        images = evaluation[evaluation.class_name == class_name].sort_values("image_id")
        identities = sorted(images.identity.unique())
        chosen = set(rng.choice(identities, size=shots, replace=False))
        for identity in sorted(chosen):
            same = images[images.identity == identity]
            support.append(same.iloc[[rng.integers(len(same))]])
        rest = images[~images.identity.isin(chosen)]
        if len(rest) < queries:
            raise ValueError(f"class {class_name} has {len(rest)} query candidates, fewer than {queries}")
        query.append(rest.iloc[np.sort(rng.choice(len(rest), size=queries, replace=False))])
    return pd.concat(support, ignore_index=True), pd.concat(query, ignore_index=True)
