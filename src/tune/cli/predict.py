"""`tune-predict IMAGE [IMAGE ...]` (or `python -m tune.predict`): classify images with a registered model.

    python -m tune.predict banana.jpg lemon.png
    python -m tune.predict --model models:/shapes-classifier@challenger --top-k 2 a.png
    python -m tune.predict --tracking-uri sqlite:////abs/mlruns/mlflow.db --name fruits-classifier x.jpg

prints one line an image, best class first: `banana.jpg: banana 100.0%, lemon 0.0%, ...`. A file
that cannot be read is named with the reason (`tune: error: cannot read 'x.jpg' as an image: ...`)
after the others are classified, and the exit status is then 1.
The model (by default `models:/<name>@champion`) loads in Keras safe mode; its class names
come from its MLmodel metadata, so this works from any folder. Images may be JPEG or PNG of
any size and mode: they are turned upright (EXIF orientation), made RGB (transparent parts on
white), and resized bilinearly to the model's input size.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from tune.cli.prologue import run_command
from tune.data.images import read_image
from tune.errors import ImageError, RegistryError
from tune.tracking import registry
from tune.tracking.uri import resolve_store

Prediction = Union[List[Tuple[str, float]], ImageError]  # top classes, or why the file could not be read
UNREADABLE_STATUS = 1  # some files were classified, some could not be read


def load_image(path: Path, size: Tuple[int, int]) -> np.ndarray:
    """Read one image file as the model's input, exactly as training images are read.

    Args:
        path: a JPEG, PNG or other file PIL reads.
        size: (height, width) in pixels.

    Returns:
        float32 `(height, width, 3)`, RGB in [0, 255] (see `tune.data.images.read_image`).

    Raises:
        ImageError: the file is missing, unreadable or not an image.
    """
    return read_image(path, size).astype(np.float32)


def top_classes(probabilities: np.ndarray, class_names: Sequence[str], top_k: int) -> List[Tuple[str, float]]:
    """The `top_k` most probable (class name, probability) pairs, best first.

    Args:
        probabilities: float `(num_classes,)`, in [0, 1], summing to 1.
        class_names: label i is `class_names[i]`.
        top_k: how many pairs, at least 1; at most `num_classes` are returned.
    """
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return [(class_names[i], float(probabilities[i])) for i in order]


def predict(images: List[Path], model, class_names: List[str], top_k: int) -> List[Prediction]:
    """Classify image files; one that cannot be read does not stop the others.

    Args:
        images: image file paths, any size and mode (see `load_image`).
        model: float32 `(batch, h, w, 3)` RGB in [0, 255] in, `(batch, num_classes)`
            softmax probabilities out.
        class_names: `num_classes` names; label i is `class_names[i]`.
        top_k: classes kept an image, at least 1.

    Returns:
        For each image, in order: up to `top_k` (class name, probability in [0, 1]) pairs,
        best first; or, for a file that cannot be read, its `ImageError` (file and reason).

    Raises:
        RegistryError: `class_names` does not have one name an output of the model.
    """
    outputs = model.output_shape[-1]
    if images and outputs != len(class_names):
        raise RegistryError(f"the model has {outputs} outputs but {len(class_names)} class names")
    size = registry.input_size(model) if images else None
    results: List[Prediction] = []
    batch = []
    for path in images:
        try:
            batch.append(load_image(Path(path), size))
            results.append([])
        except ImageError as err:
            results.append(err)
    if batch:
        probabilities = np.asarray(model.predict(np.stack(batch), batch_size=32, verbose=0))  # (n, num_classes)
        readable = [i for i, result in enumerate(results) if not isinstance(result, ImageError)]
        for i, row in zip(readable, probabilities):
            results[i] = top_classes(row, class_names, top_k)
    return results


def format_prediction(image: str, top: List[Tuple[str, float]]) -> str:
    """`<image>: <class> <percent>%, ...`, probabilities as percentages with one decimal."""
    return f"{image}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in top)


def choose_name(client, name: Optional[str]) -> str:
    """`name`, or the store's only registered model.

    Raises:
        RegistryError: no name given and the store holds no or several registered models.
    """
    if name:
        return name
    names = registry.registered_names(client)
    if len(names) == 1:
        return names[0]
    if not names:
        raise RegistryError("the store holds no registered model; a sweep (python -m tune) registers one")
    raise RegistryError(f"the store holds {len(names)} registered models {names}; pick one with --name")


def champion_uri(client, name: Optional[str]) -> str:
    """`models:/<name>@champion`, after checking that model and alias exist.

    Raises:
        RegistryError: no such registered model, or none of its versions is the champion.
    """
    name = choose_name(client, name)
    registry.require_model(client, name)
    if registry.version_by_alias(client, name, registry.CHAMPION) is None:
        raise RegistryError(
            f"no version of '{name}' holds alias @{registry.CHAMPION}: promote one (python -m tune.promote), "
            f"or pass --model models:/{name}@challenger"
        )
    return f"models:/{name}@{registry.CHAMPION}"


def _is_local(model_uri: str) -> bool:
    """Whether `model_uri` is a folder or `file:` URI, which needs no tracking store."""
    return model_uri.startswith("file:") or Path(model_uri).exists()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line; `--top-k` below 1 is a usage error (status 2)."""
    parser = argparse.ArgumentParser(
        prog="tune-predict", description="Classify images with a model from the MLflow Model Registry."
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files, any size and mode")
    parser.add_argument("--model", metavar="URI", help="model URI (default: models:/<name>@champion)")
    parser.add_argument("--name", help="registered model name (default: the store's only one)")
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlruns/mlflow.db)",
    )
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown an image (default 3)")
    parser.add_argument("--verbose", action="store_true", help="keep TensorFlow's start-up lines (see tune.cli)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k {args.top_k}: expected at least 1")
    return args


def run(args: argparse.Namespace) -> Tuple[List[str], List[str]]:
    """Load the model named by `args`; (one printed line a readable image, one error a file that is not).

    Raises:
        RegistryError: no store, registered model, version or alias as named.
    """
    client = None
    if args.model is None or not _is_local(args.model):
        store = resolve_store(args.tracking_uri, "--tracking-uri", os.environ, Path.cwd())
        print(store.line(), file=sys.stderr, flush=True)
        client = registry.open_registry(store.uri, "pass --tracking-uri URI (the store `python -m tune` wrote)")
    model_uri = args.model or champion_uri(client, args.name)
    class_names = registry.class_names(model_uri, client)
    model = registry.load_classifier(model_uri)
    results = predict([Path(p) for p in args.images], model, class_names, args.top_k)
    lines = [format_prediction(image, r) for image, r in zip(args.images, results) if not isinstance(r, ImageError)]
    return lines, [str(r) for r in results if isinstance(r, ImageError)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: print one line a readable image, then one error line a file that is not.

    Returns:
        0; `UNREADABLE_STATUS` when some file could not be read (the others are printed).
        Errors of ours that stop everything print one line, exit status 2.
    """
    args = parse_args(argv)
    lines, errors = run_command(lambda: run(args))
    if lines:
        print("\n".join(lines), flush=True)
    for error in errors:
        print(f"tune: error: {error}", file=sys.stderr)
    return UNREADABLE_STATUS if errors else 0
