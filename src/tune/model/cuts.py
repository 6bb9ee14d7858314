"""Where a base model can be cut in two, and the two halves of a classifier cut there.

A trial that thaws the last N weight-bearing layers of the base leaves every layer below
the first thawed one frozen: for a given image, those layers' outputs are the same in
every epoch of every trial. `tune.model.activations` computes them once per sweep; a
trial then trains only its *top* (the layers above the cut, and the head) on them.

A cut is taken after a layer whose output is the only tensor crossing from the layers
before it to the layers after it -- an articulation point of the layer graph. In VGG16
every layer is one; in Xception they are the block boundaries (the `add` layers and the
plain layers of the entry and exit flows), never the inside of a residual block.

    prefix(cut)  image -> preprocess_input -> base layers up to and including `cut`
    top(cut)     cut's output -> base layers after `cut`, called with training=False -> head

Both share their layer objects (and so their weights) with the classifier they come from:
training a top trains the classifier, which stays whole for checkpoints, evaluation,
registration and prediction.

A head on an earlier block (`search.feature_block` = k >= 1) sits on the base *truncated*
at that block's cut (`truncated`): the truncated base's layers are the full base's first
layers, in the same positions, so its last layer's position is the block's cut, and a store
of that cut serves it like any other.

A cut is named by its layer's position in `base.layers`, not by the layer's name: Keras
numbers unnamed layers (Xception's `add`, `add_1`, ...) per process, so the same layer of
two instances of a base can have different names, but never a different position.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import keras

from tune.errors import ConfigError
from tune.model.backbones import get_spec, thawable_layers

HEAD_LAYERS = ("head_grid", "head_pool", "head_standardize", "head_dense", "head_dropout", "predictions")


def cut_points(base: keras.Model) -> List[int]:
    """The positions in `base.layers` of the layers after which it can be cut, input first.

    The input layer is left out (a cut there caches nothing); the base's last layer is
    always included (the cut of a trial that thaws nothing).
    """
    layers = base.layers
    index = {id(layer): i for i, layer in enumerate(layers)}
    earliest_input = len(layers)  # the earliest layer any later layer reads from
    cuts = []
    for i in range(len(layers) - 1, 0, -1):
        if earliest_input >= i:
            cuts.append(i)
        # a layer also has a node in each top built on it: those repeat the base's own edges
        # or come from layers outside it (the top's input), which are skipped
        for node in layers[i]._inbound_nodes:
            for tensor in node.input_tensors:
                earliest_input = min(earliest_input, index.get(id(tensor._keras_history[0]), earliest_input))
    return cuts[::-1]


def cut_for(base: keras.Model, thawed: int) -> Optional[int]:
    """The latest cut point below the first of the last `thawed` weight-bearing layers.

    Returns:
        A position of `cut_points(base)`; the base's last layer for `thawed` = 0; None
        when no cut lies below the first thawed layer (every layer of the base trains).
    """
    layers = base.layers
    if thawed == 0:
        return len(layers) - 1
    first = layers.index(thawable_layers(base)[-thawed])
    below = [i for i in cut_points(base) if i < first]
    return below[-1] if below else None


def feature_cut(base: keras.Model, base_name: str, block: int) -> int:
    """The cut whose output a head on `block` reads: the base's last layer for 0, else the
    end of the block `block` blocks before the last (see `BaseModelSpec.blocks`).

    Args:
        base: the whole base of `base_name` (not truncated).
        base_name: a key of `tune.model.backbones.BASE_MODELS`.
        block: `search.feature_block`, 0..len(blocks).

    Raises:
        ConfigError: `block` is not in 0..len(blocks).
    """
    blocks = get_spec(base_name).blocks
    if not 0 <= block <= len(blocks):
        raise ConfigError(f"search.feature_block={block}; {base_name} has blocks 0..{len(blocks)}")
    if block == 0:
        return len(base.layers) - 1
    start = base.layers.index(base.get_layer(blocks[-block]))
    return next(i for i in cut_points(base) if i >= start)


def truncated(base: keras.Model, base_name: str, block: int) -> keras.Model:
    """`base` up to the end of `block` (0: `base` itself), named `base_model`, sharing its layers.

    Maps the same input as `base` to the block's output, e.g. `(batch, 6, 6, 512)` for
    VGG16's `block4_pool` at 100x100. Raises `ConfigError` as `feature_cut` does.
    """
    if block == 0:
        return base
    return keras.Model(base.inputs, base.layers[feature_cut(base, base_name, block)].output, name="base_model")


def reachable_cuts(
    base: keras.Model, thawed_choices: Sequence[int], feature_cuts: Optional[Sequence[int]] = None
) -> List[int]:
    """Every cut a trial can train from: each head's block (phase 1) and each phase 2's cut.

    Args:
        base: the whole base.
        thawed_choices: the `search.thawed_layers` a trial can draw.
        feature_cuts: `feature_cut` of each `search.feature_block` a trial can draw; None:
            the base's output only. Only a head on the base's output thaws layers.
    """
    last = cut_for(base, 0)
    cuts = set(feature_cuts) if feature_cuts is not None else {last}
    if last in cuts:
        cuts |= {cut_for(base, n) for n in thawed_choices}
    return sorted(c for c in cuts if c is not None)


def cut_name(classifier: keras.Model, cut: int) -> str:
    """The name of the base's layer at position `cut`, e.g. "block5_pool" (for logs)."""
    return classifier.get_layer("base_model").layers[cut].name


def prefix(classifier: keras.Model, cuts: Sequence[int]) -> keras.Model:
    """Image -> the outputs of the base's layers at positions `cuts`, one output per cut, in order.

    Input: float32 `(batch, h, w, 3)` RGB in [0, 255], as the classifier takes. Outputs:
    each cut layer's output, e.g. `(batch, 3, 3, 512)` for VGG16's `block5_pool` at 100x100.
    """
    base = classifier.get_layer("base_model")
    inside = keras.Model(base.inputs, [base.layers[i].output for i in cuts])
    image = classifier.inputs[0]
    outputs = inside(classifier.get_layer("preprocess_input")(image), training=False)
    return keras.Model(image, list(outputs) if isinstance(outputs, (list, tuple)) else [outputs], name="prefix")


def top(classifier: keras.Model, cut: int) -> keras.Model:
    """The classifier above `cut`: cached activations in, class probabilities out.

    The base's layers above the cut run with training=False (BatchNorm in inference mode,
    as in the classifier); the head's layers are the classifier's own, so the dropout
    trains as it does there. Nothing is copied: training the top trains the classifier.
    """
    base = classifier.get_layer("base_model")
    start = base.layers[cut].output
    x = inputs = keras.Input(start.shape[1:], name=f"{base.layers[cut].name}_activations")
    if cut != len(base.layers) - 1:
        x = keras.Model(start, base.outputs[0], name="base_above_cut")(x, training=False)
    present = {layer.name for layer in classifier.layers}
    for name in HEAD_LAYERS:
        if name in present:
            x = classifier.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"top_{base.layers[cut].name}")


def cut_shapes(classifier: keras.Model, cuts: Sequence[int]) -> Dict[int, tuple]:
    """Cut -> the shape of one image's activations there, e.g. (3, 3, 512)."""
    base = classifier.get_layer("base_model")
    return {i: tuple(base.layers[i].output.shape[1:]) for i in cuts}
