"""`tune.predict`: image files of every mode to the model's input, ranked class names out,
from registered models in temporary stores; errors as the command reports them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import TINY, make_settings
from registered import accuracy, colour_model, register
from tune.cli.predict import choose_name, load_image, main, predict
from tune.config.schema import HeadConfig
from tune.data import synthetic
from tune.errors import ImageError, RegistryError
from tune.model.classifier import build_classifier
from tune.tracking.registry import CHAMPION, class_names, load_classifier, open_registry

SHAPES = ["blue triangle", "green square", "red circle"]  # the tiny data set's classes, sorted
ODD = ["Apple Red 1", "Nut (Pecan)", "Passion Fruit", "Pear 'Abate' é"]


def _store(root: Path):
    """Settings of a store under `root`, with the tiny shapes written under `data.root`."""
    settings = make_settings(root, TINY)
    data = settings.data
    synthetic.generate(Path(data.root), data.synthetic, data.train_dir, data.test_dir)
    return settings


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A store with the colour rule as shapes-classifier@champion, and a second model whose
    class names are only in its version tag."""
    settings = _store(tmp_path_factory.mktemp("shapes"))
    tracking, name = settings.tracking, settings.tracking.registered_model_name
    version = register(tracking, colour_model(SHAPES), SHAPES)
    MlflowClient(tracking.uri).set_registered_model_alias(name, CHAMPION, version)
    tag_only = register(tracking, colour_model(SHAPES), SHAPES, metadata=False, name="tag-only")
    model = load_classifier(f"models:/{name}@{CHAMPION}")
    test_dir = Path(settings.data.root) / settings.data.test_dir
    return SimpleNamespace(settings=settings, name=name, model=model, test_dir=test_dir, tag_only=tag_only)


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """A store holding one model, a VGG16 classifier with class names full of punctuation."""
    settings = _store(tmp_path_factory.mktemp("odd"))
    model = build_classifier("vgg16", (32, 32), len(ODD), None, HeadConfig(), head_width=8)
    tracking = settings.tracking
    MlflowClient(tracking.uri).set_registered_model_alias(
        tracking.registered_model_name, CHAMPION, register(tracking, model, ODD)
    )
    return settings


def _one_of(shapes, class_name: str) -> Image.Image:
    return Image.open(sorted((shapes.test_dir / class_name).glob("*.png"))[0]).convert("RGB")


def variants(shapes, folder: Path) -> dict:
    """One red-circle test image saved as files of other modes and sizes -> their paths."""
    red = _one_of(shapes, "red circle")
    rgba = red.convert("RGBA")
    hidden = np.asarray(rgba).copy()
    background = hidden[..., :3].min(axis=-1) > 200  # the light noise around the shape
    hidden[background] = (0, 0, 255, 0)  # transparent, but blue underneath
    files = {
        "rgba.png": Image.fromarray(hidden, "RGBA"),
        "palette.png": red.convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "large.jpg": red.resize((1000, 700), Image.Resampling.BICUBIC),
        "gray.jpg": red.convert("L"),
    }
    for file, image in files.items():
        image.save(folder / file, **({"quality": 90} if file.endswith(".jpg") else {}))
    return {file: folder / file for file in files}


def test_every_file_becomes_float32_rgb_of_the_model_size(shapes, tmp_path):
    paths = variants(shapes, tmp_path)
    Image.new("I;16", (40, 30), 65535).save(tmp_path / "deep.png")
    Image.new("CMYK", (50, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    for path in [*paths.values(), tmp_path / "deep.png", tmp_path / "cmyk.jpg"]:
        x = load_image(path, (24, 40))
        assert x.shape == (24, 40, 3) and x.dtype == np.float32, path
        assert x.min() >= 0 and x.max() <= 255 and x.max() > 100, path
    gray = load_image(paths["gray.jpg"], (32, 32))
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert load_image(tmp_path / "deep.png", (8, 8)).min() == 255  # 16-bit white stays white


def test_transparent_pixels_are_white_and_exif_orientation_is_applied(tmp_path):
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", (10, 10)).min() == 255
    halves = np.zeros((20, 40, 3), np.uint8)
    halves[:, :20] = (255, 0, 0)  # red left, blue right, as stored
    halves[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 3  # Orientation: rotate 180 degrees to display
    Image.fromarray(halves).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    upright = load_image(tmp_path / "turned.jpg", (20, 40))
    assert upright[:, :15, 2].mean() > 200 and upright[:, :15, 0].mean() < 50  # blue on the left


def test_a_good_model_ranks_the_true_class_first_whatever_the_file(shapes, tmp_path):
    assert accuracy(shapes.model, shapes.test_dir, SHAPES) == 1.0  # good enough to judge by
    paths = variants(shapes, tmp_path)
    results = predict(list(paths.values()), shapes.model, SHAPES, top_k=len(SHAPES))
    for file, ranked in zip(paths, results):
        assert sorted(name for name, _ in ranked) == SHAPES
        probabilities = [p for _, p in ranked]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        if file != "gray.jpg":  # grey has lost the colour this model reads
            assert ranked[0][0] == "red circle", (file, ranked)


def test_unreadable_files_are_named_in_a_one_line_error_and_the_others_classified(shapes, tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image\nat all")
    _one_of(shapes, "red circle").save(tmp_path / "red.png")
    bad = [tmp_path / "notes.jpg", tmp_path / "absent.png", tmp_path]
    results = predict([bad[0], tmp_path / "red.png", *bad[1:]], shapes.model, SHAPES, top_k=2)
    assert results[1][0][0] == "red circle" and len(results[1]) == 2
    for path, result in zip(bad, [results[0], *results[2:]]):
        assert isinstance(result, ImageError) and result.path == path
        assert str(result).startswith(f"cannot read '{path}' as an image: ") and "\n" not in str(result)


def test_one_unreadable_file_among_many_is_named_after_the_others_and_the_status_is_1(shapes, tmp_path, capsys):
    good = [tmp_path / f"{i}.png" for i in range(3)]
    for path in good:
        _one_of(shapes, "red circle").save(path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    files = [str(p) for p in (good[0], tmp_path / "broken.jpg", *good[1:])]
    assert main(["--tracking-uri", shapes.settings.tracking.uri, "--name", shapes.name, *files]) == 1
    out, err = capsys.readouterr()
    assert [line.split(": ")[0] for line in out.strip().splitlines()] == [str(p) for p in good]
    assert all(": red circle " in line for line in out.strip().splitlines())
    errors = [line for line in err.splitlines() if line.startswith("tune: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"tune: error: cannot read '{tmp_path}/broken.jpg' as an image: ")
    assert f"tracking store: {shapes.settings.tracking.uri} (from --tracking-uri)" in err


def test_predict_obeys_mlflow_tracking_uri_and_says_so(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shapes.settings.tracking.uri)
    _one_of(shapes, "red circle").save(tmp_path / "red.png")
    assert main(["--name", shapes.name, "red.png"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("red.png: red circle")
    assert f"tracking store: {shapes.settings.tracking.uri} (from MLFLOW_TRACKING_URI)" in err


def test_class_names_with_spaces_and_punctuation_round_trip_exactly(odd, tmp_path):
    uri = f"models:/{odd.tracking.registered_model_name}@{CHAMPION}"
    client = open_registry(odd.tracking.uri, "")
    assert class_names(uri, client) == ODD
    Image.new("RGB", (64, 48), (120, 30, 200)).save(tmp_path / "x.png")
    (ranked,) = predict([tmp_path / "x.png"], load_classifier(uri), class_names(uri, client), top_k=10)
    assert sorted(name for name, _ in ranked) == sorted(ODD)
    assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-5)


def test_class_names_fall_back_to_the_version_tag(shapes):
    client = open_registry(shapes.settings.tracking.uri, "")
    assert class_names(f"models:/tag-only/{shapes.tag_only}", client) == SHAPES


def exit_status(argv) -> int:
    """The status `tune-predict argv` exits with."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code


def test_a_missing_store_names_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert exit_status(["x.png"]) == 2
    store, error = capsys.readouterr().err.strip().splitlines()
    assert store == f"tracking store: sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db (from default)"
    assert error.startswith("tune: error: no MLflow store at")
    assert f"'{tmp_path.resolve()}/mlruns/mlflow.db'" in error and "--tracking-uri" in error
    assert not (tmp_path / "mlruns").exists()


def test_several_models_need_a_name_and_a_champion(shapes, tmp_path, capsys):
    client = open_registry(shapes.settings.tracking.uri, "")
    with pytest.raises(RegistryError, match=r"2 registered models \['shapes-classifier', 'tag-only'\]; pick one"):
        choose_name(client, None)
    uri = shapes.settings.tracking.uri
    assert exit_status(["--tracking-uri", uri, "--name", "tag-only", "x.png"]) == 2
    assert "no version of 'tag-only' holds alias @champion" in capsys.readouterr().err
    assert exit_status(["--tracking-uri", uri, "--model", "models:/shapes-classifier/99", "x.png"]) == 2
    assert "shapes-classifier" in capsys.readouterr().err
