"""The command line before Hydra, the data summary, the run's address and the output folders:
`~` values, every documented example, key suggestions, `data.image_size=64`, TensorFlow's
start-up lines, removing a failed call's folder."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import make_settings
from tune.cli import jobs
from tune.cli.argv import expand_home, overrides_and_config_dirs, prepare_argv, prepare_command_line
from tune.cli.overrides import PACKAGE_CONF, check_overrides, group_options, schema_keys
from tune.cli.startup import quiet_tensorflow, wants_verbose, without_startup_lines
from tune.cli.sweep import browse_hint, run_address
from tune.errors import ConfigError
from tune.reports.data_report import data_summary

REPO = Path(__file__).resolve().parents[2]
HOME = os.path.expanduser("~")
COMMAND = re.compile(r"(?:python -m tune(?:\.promote)?(?![\w.])|tune-promote)([^`#;)]*)")


@pytest.mark.parametrize(
    "arg, expanded",
    [
        ("data.root=~/fruits-360", f"data.root={HOME}/fruits-360"),
        ("data.root=~", f"data.root={HOME}"),
        ("data.root=~/a,~/b", f"data.root={HOME}/a,{HOME}/b"),
        ("+model.weights=~/w.h5", f"+model.weights={HOME}/w.h5"),
        ("data.root=a~/b", "data.root=a~/b"),  # not at the start of the value
        ("data.root=~user/x", "data.root=~user/x"),  # another user's home is left to the shell
        ("~data.root", "~data.root"),  # Hydra's delete syntax
        ("--config-dir", "--config-dir"),
    ],
)
def test_a_home_value_is_expanded_as_the_shell_would(arg, expanded):
    assert expand_home(arg) == expanded


def test_the_command_line_hydra_gets_has_no_verbose_and_no_home_tilde():
    argv = ["tune", "--verbose", "-m", "data.root=~/x", "seed=0,1"]
    assert prepare_argv(argv) == ["tune", "-m", f"data.root={HOME}/x", "seed=0,1"]
    overrides, dirs = overrides_and_config_dirs(["--config-dir", "mine", "--cfg", "job", "experiment=x", "seed=1"])
    assert overrides == ["experiment=x", "seed=1"] and dirs == [Path("mine")]


def _snippets(text: str):
    """Fenced code lines and inline code spans (newlines inside a span joined)."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    return [line for block in fenced for line in block.splitlines()] + [
        span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", rest)
    ]


def _examples():
    """(source, words after the command) of every `python -m tune`/`tune.promote` example."""
    sources = [(REPO / "README.md", _snippets((REPO / "README.md").read_text()))]
    for path in sorted(PACKAGE_CONF.rglob("*.yaml")):
        comments = [line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line]
        sources.append((path, comments))
    found = []
    for path, snippets in sources:
        for snippet in snippets:
            for match in COMMAND.finditer(snippet):
                words = [w for w in shlex.split(match.group(1)) if w != "..."]
                found.append((f"{path.name}: {match.group(0).strip()}", words))
    return found


def test_every_documented_command_parses_and_has_only_real_keys():
    examples = _examples()
    assert len(examples) >= 15, examples
    assert any("data.root=~/fruits-360" in " ".join(words) for _, words in examples)
    parser = OverridesParser.create()
    for _, words in examples:
        overrides, config_dirs = overrides_and_config_dirs(prepare_argv(["tune", *words])[1:])
        parser.parse_overrides(overrides)  # raises on what Hydra's lexer rejects
        if not config_dirs:  # a folder of one's own configs is not here
            check_overrides(overrides)


def test_hydra_itself_rejects_an_unexpanded_home():
    with pytest.raises(Exception, match="LexerNoViableAltException"):
        OverridesParser.create().parse_overrides(["data.root=~/fruits-360"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.head_epoch=3", "unknown config key training.head_epoch; did you mean training.head_epochs?"),
        ("model.head.dropuot=0.1", "unknown config key model.head.dropuot; did you mean model.head.dropout?"),
        ("~data.roots", "unknown config key data.roots; did you mean data.root?"),
        ("model=vgg", "unknown option model=vgg; did you mean model=vgg16? (model: vgg16, xception)"),
        ("tuner=randon,bayesian", "unknown option tuner=randon; did you mean tuner=random?"),
        ("zzz=1", "unknown config key zzz; python -m tune --cfg job prints every key"),
    ],
)
def test_an_unknown_key_or_option_names_the_nearest_real_one(override, message):
    with pytest.raises(ConfigError) as err:
        check_overrides(["experiment=quickstart", override])
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "override",
    [
        "tuner.options.max_trials=3",  # a dict's subkeys are free
        "+extra.key=1",  # additions are checked by load_settings
        "++data.name=x",
        "hydra.job.chdir=true",
        "model=vgg16,xception",
        "experiment=null",
        "search.base_model.values=[vgg16,xception]",
        "data.synthetic.classes=3",
        "data.root='~/quoted'",
    ],
)
def test_real_keys_additions_and_free_subkeys_pass(override):
    check_overrides([override])


def test_a_folder_of_ones_own_configs_adds_its_options(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\n")
    assert "mine" in group_options([tmp_path])["experiment"]
    check_overrides(["experiment=mine"], [tmp_path])
    with pytest.raises(ConfigError, match="did you mean experiment=mine"):
        check_overrides(["experiment=mine2"], [tmp_path])
    with pytest.raises(ConfigError, match="unknown option experiment=zzz; expected one of fruits33_cpu, "):
        check_overrides(["experiment=zzz"])


def test_schema_keys_are_dotted_and_dicts_are_free():
    keys, free = schema_keys()
    assert {"training.head_epochs", "model.head.dropout", "data.synthetic.classes", "seed"} <= keys
    assert free == {"tuner.options"}


def test_the_command_stops_with_one_line_and_exit_2_before_hydra(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tune", "--verbose", "training.head_epoch=3"])
    with pytest.raises(SystemExit) as stopped:
        prepare_command_line()
    assert stopped.value.code == 2
    expected = "tune: error: unknown config key training.head_epoch; did you mean training.head_epochs?"
    assert capsys.readouterr().err.strip() == expected


@pytest.mark.parametrize("value, size", [("64", [64, 64]), ("[64,48]", [64, 48]), ("null", None)])
def test_an_image_size_of_one_number_is_a_square(value, size, tmp_path):
    assert make_settings(tmp_path, ["debug=tiny", f"data.image_size={value}"]).data.image_size == size


@pytest.mark.parametrize("value", ["0", "-3", "[64]", "[64,0]", "[64,48,3]", "1.5"])
def test_an_image_size_that_is_not_positive_stops(value, tmp_path):
    expected = r"data.image_size=.*; expected \[height, width\] in whole pixels above 0, or one number"
    with pytest.raises(ConfigError, match=expected):
        make_settings(tmp_path, ["debug=tiny", f"data.image_size={value}"])


def test_the_data_summary_names_classes_splits_skipped_duplicates_and_baseline():
    names = [f"class{i:02d}" for i in range(33)]
    counts = {"train": 2534, "validation": 634, "test": 1319}
    duplicates = {"duplicates_within_split": 2, "duplicates_across_splits": 1}
    lines = data_summary(names, counts, 5, 1 / 33, duplicates)
    assert lines == [
        "data: 33 classes: class00, class01, class02, class03, class04 and 28 more",
        "images: 2534 train, 634 validation, 1319 test; 5 files skipped",
        "duplicates: 2 within split, 1 across splits",
        "baseline: always guessing the commonest class scores 0.030 on the validation split",
    ]
    assert len(data_summary(names[:2], counts, 0, 0.5)) == 3  # no duplicates line without counts
    assert data_summary(names[:2], counts, 0, 0.5)[0] == "data: 2 classes: class00, class01"


def test_the_run_address_is_the_local_ui_or_the_server_with_the_same_fragment():
    local = run_address("sqlite:////tmp/mlruns/mlflow.db", "3", "abc")
    assert local == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert run_address("http://host:8080/", "3", "abc") == "http://host:8080/#/experiments/3/runs/abc"
    hint = browse_hint("sqlite:////tmp/m.db", "3", "abc").splitlines()
    assert hint[0] == "browse: mlflow ui --backend-store-uri sqlite:////tmp/m.db --host 127.0.0.1"
    assert hint[1].strip() == f"then open {local}"


def test_verbose_is_the_switch_or_the_environment():
    assert wants_verbose(["a=1", "--verbose"], {}) and wants_verbose([], {"TUNE_VERBOSE": "1"})
    assert not wants_verbose(["a=1"], {"TUNE_VERBOSE": "0"})


def test_startup_lines_are_dropped_and_every_other_line_kept():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1.2 1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
        "I0000 00:00:1.3 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
        "E0000 00:00:1.4 1 cuda_driver.cc:152] failed call to cuInit: INTERNAL: CUDA error\n"
        "a real warning\n"
    )
    assert without_startup_lines(text) == "a real warning\n"


def test_a_failed_call_removes_its_folder_and_the_parents_it_left_empty(tmp_path):
    run = tmp_path / "experiments" / "shapes" / "2026-01-01_00-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / "tune.log").write_text("x")
    jobs.remove_folder(run, 2)
    assert not (tmp_path / "experiments").exists() and tmp_path.exists()
    kept = tmp_path / "experiments" / "shapes"
    (kept / "tuner").mkdir(parents=True)
    (kept / "2026-01-02_00-00-00").mkdir()
    jobs.remove_folder(kept / "2026-01-02_00-00-00", 2)
    assert [p.name for p in kept.iterdir()] == ["tuner"]


def test_gpu_memory_grows_on_demand_unless_the_user_chose_otherwise(monkeypatch):
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    quiet_tensorflow()
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"  # workers sharing a card each take what they use
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")
    quiet_tensorflow()
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "false"
