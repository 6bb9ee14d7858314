"""A generated, learnable image data set for the offline quickstart and the tests.

Each class is a coloured shape ("red circle", "green square", ...) drawn at a random place,
size and shade on a noisy light background, so a classifier must learn colour and shape, not
memorise pixels. Images are PNG files in the same folder-per-class layout as real data, so
they go through the same loader.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from tune.config.schema import SyntheticConfig
from tune.errors import ConfigError
from tune.files import exclusive_lock, read_json, replacing, write_json

COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "orange": (230, 140, 20)}
SHAPES = ("circle", "square", "triangle")
CLASS_NAMES = [
    *("red circle", "green square", "blue triangle", "orange circle"),
    *("red square", "green triangle", "blue circle", "orange square"),
]
_MARKER = "synthetic.json"


def draw(class_name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image `size` x `size` of `class_name` ("<colour> <shape>")."""
    colour, shape = class_name.split(" ")
    background = rng.integers(215, 256, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    radius = size * rng.uniform(0.18, 0.32)
    cx, cy = rng.uniform(radius, size - radius, 2)
    fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[colour])
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    return image


def generate(root: Path, spec: SyntheticConfig, train_dir: str, test_dir: Optional[str]) -> Path:
    """Write the data set under `root` unless the same spec was written there already.

    Layout: `root/<train_dir>/<class>/<i>.png` and `root/<test_dir>/<class>/<i>.png`; with
    `test_dir` None, only the training folder (the test split is carved out of it).

    Raises:
        ConfigError: `spec.classes` outside 2..8 or `spec.image_size` below 8.
    """
    if not 2 <= spec.classes <= len(CLASS_NAMES) or spec.image_size < 8:
        raise ConfigError(
            f"data.synthetic: classes={spec.classes}, image_size={spec.image_size}; "
            f"expected classes in 2..{len(CLASS_NAMES)} and image_size >= 8"
        )
    with exclusive_lock(root / ".synthetic.lock"):  # processes started together: one writes, the others find it
        return _generate(root, spec, train_dir, test_dir)


def _generate(root: Path, spec: SyntheticConfig, train_dir: str, test_dir: Optional[str]) -> Path:
    marker = root / _MARKER
    wanted = {**vars(spec), "train_dir": train_dir, "test_dir": test_dir}
    if marker.is_file():
        if read_json(marker) == wanted:
            return root
        for split in (train_dir, test_dir):  # ours to replace: the marker says we wrote it
            if split is not None:
                shutil.rmtree(root / split, ignore_errors=True)
    rng = np.random.default_rng(spec.seed)
    splits = [(train_dir, spec.train_per_class)] + ([(test_dir, spec.test_per_class)] if test_dir else [])
    for split, count in splits:
        for name in CLASS_NAMES[: spec.classes]:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                with replacing(folder / f"{i:04d}.png") as part:  # another process may be reading
                    draw(name, spec.image_size, rng).save(part, format="PNG")
    write_json(marker, wanted)
    return root
