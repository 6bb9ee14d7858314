"""Models load in Keras safe mode, credentials never reach MLflow, servers bind 127.0.0.1."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import keras
import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, make_settings
from registered import register
from tune.errors import RegistryError
from tune.tracking.recorder import SweepRecorder
from tune.tracking.redaction import redact_overrides, redact_text
from tune.tracking.registry import load_classifier
from tune.tracking.store import open_store

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-s3cr3t"


def test_a_model_holding_python_code_is_refused_not_run(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)  # serialised as Python bytecode
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    tracking = make_settings(tmp_path, TINY).tracking
    version = register(tracking, keras.Model(inputs, outputs), ["a", "b"])
    with pytest.raises(RegistryError, match="refused to load .*Python code.*safe"):
        load_classifier(f"models:/{tracking.registered_model_name}/{version}")


def test_credentials_in_overrides_and_config_never_reach_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_TEST_TOKEN", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET + "-aws")
    overrides = [
        *TINY,
        "+tuner.options.api_token=${oc.env:TUNE_TEST_TOKEN}",
        f"tracking.uri='https://alice:{SECRET}@example.org/x?sig={SECRET}'",
    ]
    settings = make_settings(tmp_path, overrides)
    assert SECRET in settings.resolved_config  # the secret is really there before recording
    store = f"sqlite:///{tmp_path}/mlruns/mlflow.db"  # where it is recorded
    experiment = open_store(store, settings.tracking.experiment_name, str(tmp_path / "artifacts"))
    recorder = SweepRecorder.start(
        experiment, "sweep", settings.params(), settings.resolved_config, settings.overrides, {}
    )
    client = MlflowClient(store)
    run = client.get_run(recorder.parent_run_id)
    texts = [*run.data.params.values(), *run.data.tags.values()]
    folder = client.download_artifacts(recorder.parent_run_id, "", str(tmp_path / "artifacts"))
    texts += [p.read_text() for p in Path(folder).rglob("*") if p.is_file()]
    assert not [t for t in texts if SECRET in t]
    assert "api_token: ***" in "".join(texts) and "https://alice:***@example.org" in "".join(texts)
    assert run.data.params["tuner.options.api_token"] == "***"


def test_redaction_masks_url_passwords_query_credentials_and_credential_keys():
    text = "uri: https://bob:pw@host:5000/x?token=abc&page=2\npassword: p\nname: shapes"
    assert redact_text(text) == "uri: https://bob:***@host:5000/x?token=***&page=2\npassword: ***\nname: shapes"
    overrides = ["+aws_secret=xyz", "data.root=/d", "tracking.uri=http://u:p@h"]
    assert redact_overrides(overrides) == ["+aws_secret=***", "data.root=/d", "tracking.uri=http://u:***@h"]


def test_every_server_example_binds_loopback_or_one_private_address():
    sources = [
        ROOT / "README.md",
        *ROOT.glob("*/README.md"),
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "src").rglob("*.yaml"),
    ]
    commands = []
    for path in sources:
        text = path.read_text().replace("\\\n", " ")  # shell line continuations
        commands += [(path.name, m.group(0)) for m in re.finditer(r"mlflow (ui|server) --[^\n`\"]*", text)]
    assert len(commands) >= 3  # README's ui and server, and the sweep's closing hint
    # loopback, or (several hosts) one private address: never every address, nor the default
    hosts = [(path, re.search(r"--host (\S+)", command)) for path, command in commands]
    assert [(path, m and m.group(1)) for path, m in hosts if not m or not _local_or_private(m.group(1))] == []


def _local_or_private(host: str) -> bool:
    address = ipaddress.ip_address(host)
    return address.is_loopback or (address.is_private and not address.is_unspecified)
