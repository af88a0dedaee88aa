"""Data of a rank search: train / validation / test splits as tensors.

* ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 grey images, 10 classes; it ships inside the
  package, so the search runs offline). A fixed stratified split: 20% test, then 20% of the rest as the
  validation split that HALOC's alpha steps use; the test split is never seen by a search.
* ``cifar10``: the CIFAR-10 *binary* format read from a local folder (``data_batch_1.bin`` ..
  ``data_batch_5.bin`` and ``test_batch.bin``, each record one label byte and 3,072 pixel bytes, channel
  planes R, G, B of 32x32); the last 5,000 training records are the validation split (fewer when a folder
  holds fewer). Pixels are normalised with the usual CIFAR-10 channel means and deviations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from costmodels import CostModelError, read_user_bytes

DATASETS = ("digits", "cifar10")
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch.bin"
CIFAR_MAX_FILE_BYTES = 10_000 * CIFAR_RECORD
CIFAR_VALIDATION = 5_000
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
DIGITS_TEST_FRACTION = 0.2
DIGITS_VALIDATION_FRACTION = 0.2


class DataError(CostModelError):
    """A data set that cannot be read: unknown name, missing folder or files, malformed records."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor   # N x C x H x W, float32
    labels: torch.Tensor   # N, int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[
            tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches in a shuffled order when ``generator`` is given, in file order otherwise."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            index = order[start:start + batch_size]
            yield self.images[index], self.labels[index]


@dataclass(frozen=True)
class SplitData:
    """What a search strategy sees: the training split (weight steps) and the validation split carved from
    the training data (alpha steps, accuracy proxies)."""

    train: Split
    val: Split


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def search_data(self) -> SplitData:
        return SplitData(self.train, self.val)


def load_dataset(name: str, folder: str | Path | None = None) -> Dataset:
    if name == "digits":
        return load_digits_dataset()
    if name == "cifar10":
        if folder is None:
            raise DataError("--data cifar10 needs --data-dir FOLDER with the CIFAR-10 binary files "
                            f"({', '.join(CIFAR_TRAIN_FILES)}, {CIFAR_TEST_FILE})")
        return load_cifar10(folder)
    raise DataError(f"unknown data set '{name}'; available: {', '.join(DATASETS)}")


def load_digits_dataset() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=0)
    train, val = train_test_split(rest, test_size=DIGITS_VALIDATION_FRACTION, stratify=labels[rest],
                                  random_state=0)
    mean, std = float(images[train].mean()), float(images[train].std())
    split = lambda i: Split(torch.from_numpy((images[i, None] - mean) / std), torch.from_numpy(labels[i]))
    return Dataset("digits", split(train), split(val), split(test), 10)


def _cifar_records(path: Path) -> np.ndarray:
    data = read_user_bytes(path, max_bytes=CIFAR_MAX_FILE_BYTES)
    if not data or len(data) % CIFAR_RECORD:
        raise DataError(f"{path}: {len(data):,} bytes is not a whole number of CIFAR-10 records "
                        f"({CIFAR_RECORD} bytes each: a label byte and 3x32x32 pixels)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    if records[:, 0].max() > 9:
        raise DataError(f"{path}: label {int(records[:, 0].max())} outside 0..9 (not a CIFAR-10 binary file)")
    return records


def _cifar_split(records: np.ndarray) -> Split:
    pixels = records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    mean = np.asarray(CIFAR_MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(CIFAR_STD, dtype=np.float32)[None, :, None, None]
    return Split(torch.from_numpy((pixels - mean) / std), torch.from_numpy(records[:, 0].astype(np.int64)))


def load_cifar10(folder: str | Path) -> Dataset:
    folder = Path(folder)
    if (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    if not folder.is_dir():
        raise DataError(f"--data-dir {folder}: no such folder")
    missing = [name for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"--data-dir {folder}: missing CIFAR-10 binary file(s) {', '.join(missing)}")
    train = np.concatenate([_cifar_records(folder / name) for name in CIFAR_TRAIN_FILES])
    test = _cifar_records(folder / CIFAR_TEST_FILE)
    validation = min(CIFAR_VALIDATION, len(train) // 10) or 1
    if len(train) <= validation:
        raise DataError(f"--data-dir {folder}: {len(train)} training records leave none beside the validation "
                        "split")
    return Dataset("cifar10", _cifar_split(train[:-validation]), _cifar_split(train[-validation:]),
                   _cifar_split(test), 10)
