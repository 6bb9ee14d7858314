"""Forward passes over stored images in fixed-size batches, and the scores of their predictions.

Filling the activation cache, the head's feature statistics, the validation report of a
trial trained on images and the test evaluation all push many stored images through a
model once. Both do it here, with `predict_on_batch` on NumPy batches of
one shape (`BATCH` rows; the last batch is padded with zero images and the padding dropped):
the model is traced once, and no `tf.data` threads compete with the model's own on a small
CPU (measured on 2 cores: `Model.predict` over a dataset ran at half the images/s of this
loop).
"""

from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np

from tune.files import take_rows

BATCH = 64  # images a forward pass
EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] in the loss, as Keras does


def padded(x: np.ndarray) -> np.ndarray:
    """`x` with zero images appended up to `BATCH` rows."""
    return x if len(x) == BATCH else np.concatenate([x, np.zeros((BATCH - len(x), *x.shape[1:]), x.dtype)])


def batches(rows: np.ndarray) -> Iterator[np.ndarray]:
    """`rows` in consecutive slices of at most `BATCH`."""
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


def predict_rows(model, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The model's outputs for `images[rows]`, in the order of `rows`.

    Args:
        model: a single-output Keras model taking float32 `(batch, h, w, 3)`.
        images: `(any, h, w, 3)` RGB in [0, 255], uint8 (usually memory-mapped) or float32.
        rows: int `(n,)`, the rows to run.

    Returns:
        float32 `(n, *output shape)`.
    """
    outputs = [
        np.asarray(model.predict_on_batch(padded(take_rows(images, part).astype(np.float32))), np.float32)[: len(part)]
        for part in batches(np.asarray(rows))
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, *model.output_shape[1:]), np.float32)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """(accuracy, loss) of class probabilities against integer labels.

    Args:
        probabilities: float `(n, classes)`, each row summing to 1.
        labels: int `(n,)` in [0, classes).

    Returns:
        (the fraction of rows whose arg-max is the label, in [0, 1]; the mean sparse
        categorical cross-entropy in nats, with probabilities clipped to [1e-7, 1 - 1e-7] as
        `keras.losses.sparse_categorical_crossentropy` clips them).

    Raises:
        ValueError: no rows, or `labels` of another length.
    """
    labels = np.asarray(labels)
    if len(labels) == 0 or len(labels) != len(probabilities):
        raise ValueError(f"expected one label per row of probabilities, got {len(labels)} for {len(probabilities)}")
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    chosen = np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    return accuracy, float(-np.mean(np.log(chosen)))


def score_images(model, images: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """(accuracy, loss) of `model` on `images[rows]` against `labels`: `scores` of `predict_rows`.

    The one way a sweep's test evaluation and `tune.promote` score a model, so both report
    the same figures for it.
    """
    return scores(predict_rows(model, images, rows), labels)
