"""Fixed-batch forward passes and their scores agree with Keras's own `predict` and `evaluate`."""

import keras
import numpy as np
import pytest

from tune.model.inference import BATCH, predict_rows, scores


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_predict_rows_follows_rows_across_a_padded_last_batch(model):
    images = np.random.default_rng(1).integers(0, 256, (BATCH + 30, 8, 8, 3), dtype=np.uint8)
    rows = np.random.default_rng(2).permutation(len(images))[: BATCH + 7]  # two batches, the last padded
    expected = model.predict(images[rows].astype(np.float32), batch_size=16, verbose=0)
    got = predict_rows(model, images, rows)
    assert got.dtype == np.float32 and got.shape == (BATCH + 7, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert predict_rows(model, images, rows[:0]).shape == (0, 3)


def test_scores_equal_keras_evaluate(model):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 50)
    probabilities = predict_rows(model, images, np.arange(50))
    accuracy, loss = scores(probabilities, labels)
    keras_scores = model.evaluate(images.astype(np.float32), labels, batch_size=50, return_dict=True, verbose=0)
    assert accuracy == pytest.approx(keras_scores["accuracy"], abs=1e-6)
    assert loss == pytest.approx(keras_scores["loss"], rel=1e-4)


def test_scores_clip_a_zero_probability_and_refuse_mismatched_labels():
    accuracy, loss = scores(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, 1]))
    assert accuracy == 0.5 and loss == pytest.approx(-np.log(1e-7) / 2)
    with pytest.raises(ValueError, match="one label per row"):
        scores(np.ones((2, 2)) / 2, np.array([0]))
