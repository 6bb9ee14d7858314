"""Names and links in the image folders: names that are not UTF-8 and broken links stop the
scan with one line naming them; working links to folders and files are followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from tune.config.schema import AugmentConfig, DataConfig
from tune.data.pipeline import load_search_data
from tune.data.scan import list_folder, scan_folder
from tune.errors import DataError

COLOURS = {"apple": (255, 0, 0), "pear": (0, 255, 0)}


def _images(folder: Path, colour, count: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (16, 16), colour).save(folder / f"{i}.png")


@pytest.fixture
def root(tmp_path) -> Path:
    """images/{Training,Test}/{apple,pear}/*.png, 3 images a class."""
    for split in ("Training", "Test"):
        for name, colour in COLOURS.items():
            _images(tmp_path / "images" / split / name, colour)
    return tmp_path / "images"


def _latin1(folder: Path, name: bytes) -> bytes:
    """The path `folder/name` as bytes, `name` in Latin-1 (not valid UTF-8)."""
    return os.fsencode(str(folder)) + b"/" + name


def _load(root: Path):
    cfg = DataConfig(root=str(root), batch_size=2, validation_fraction=0.34)
    return load_search_data(cfg, (16, 16), AugmentConfig(enabled=False), None)


def test_a_class_folder_named_in_latin1_stops_the_scan_naming_it_escaped(root):
    folder = _latin1(root / "Training", b"caf\xe9")
    os.mkdir(folder)
    _images(Path(os.fsdecode(folder)), (0, 0, 255))
    with pytest.raises(DataError) as caught:
        _load(root)
    message = str(caught.value)
    assert f"'{root}/Training/caf\\xe9'" in message and "rename them to UTF-8" in message
    assert "\n" not in message
    message.encode("utf-8")  # printable and loggable as it is


def test_a_file_named_in_latin1_stops_the_scan_naming_it(root):
    Image.new("RGB", (16, 16)).save(os.fsdecode(_latin1(root / "Test" / "pear", b"poire\xe9.png")))
    with pytest.raises(DataError, match=r"not valid UTF-8: '.*/Test/pear/poire\\xe9\.png'"):
        _load(root)


def test_a_broken_link_to_a_class_folder_stops_the_scan_naming_it_and_its_target(root, tmp_path):
    (root / "Training" / "plum").symlink_to(tmp_path / "gone")
    with pytest.raises(DataError) as caught:
        list_folder(root / "Training", "train")
    message = str(caught.value)
    assert f"'{root}/Training/plum' -> '{tmp_path}/gone'" in message and "broken link" in message
    assert "\n" not in message


def test_a_broken_link_to_a_file_stops_the_scan_even_when_bad_files_are_skipped(root, tmp_path):
    (root / "Training" / "apple" / "9.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"1 broken link\(s\) in '.*/Training/apple'.*9\.png' -> '.*gone\.png'"):
        _load(root)


def test_links_to_a_class_folder_and_to_a_file_are_followed(root, tmp_path):
    _images(tmp_path / "elsewhere" / "plum", (0, 0, 255), count=2)
    (root / "Training" / "plum").symlink_to(tmp_path / "elsewhere" / "plum")
    Image.new("RGB", (16, 16), COLOURS["pear"]).save(tmp_path / "extra.png")
    (root / "Training" / "pear" / "9.png").symlink_to(tmp_path / "extra.png")
    scan = scan_folder(list_folder(root / "Training", "train"), (16, 16), None)
    assert scan.classes == ["apple", "pear", "plum"]
    assert [s.path for s in scan.skipped] == []
    assert sorted(os.path.relpath(f, root / "Training") for f in scan.files) == [
        *(f"apple/{i}.png" for i in range(3)),
        *(f"pear/{i}.png" for i in (0, 1, 2, 9)),
        "plum/0.png",
        "plum/1.png",
    ]
    assert scan.images[scan.rows[-1]].tolist()[0][0] == [0, 0, 255]  # read through the link
