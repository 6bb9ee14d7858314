"""Shared file habits: stable short hashes, atomic replacement, exclusive locks, interrupts."""

from __future__ import annotations

import os
import signal

import pytest

from tune import interrupts
from tune.files import LockHeldError, exclusive_lock, read_json, replacing, short_hash, write_json


def test_short_hash_depends_on_the_value_not_on_key_order():
    assert short_hash({"a": 1, "b": [1, 2]}) == short_hash({"b": [1, 2], "a": 1})
    assert short_hash({"a": 1}) != short_hash({"a": 2}) and len(short_hash("x", digits=12)) == 12
    assert short_hash("x") == "ba2df4903a2c14e8"  # sha256('"x"'): stable across processes and versions


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_json(tmp_path / "deep" / "state.json", {"round": 1})
    with pytest.raises(RuntimeError), replacing(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed while writing")
    assert read_json(path) == {"round": 1} and sorted(p.name for p in path.parent.iterdir()) == ["state.json"]
    (tmp_path / "broken.json").write_text("{not json")
    assert read_json(tmp_path / "broken.json") is None and read_json(tmp_path / "absent.json") is None


def test_a_held_lock_is_refused_naming_its_holder_and_free_again_after(tmp_path):
    with (
        exclusive_lock(tmp_path / "x.lock"),
        pytest.raises(LockHeldError, match=f"pid {os.getpid()}"),
        exclusive_lock(tmp_path / "x.lock", wait=False),
    ):
        pass
    with exclusive_lock(tmp_path / "x.lock", wait=False) as handle:
        assert not handle.closed


def test_an_interrupt_is_remembered_after_something_swallowed_it():
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        interrupts.install()
        interrupts.check()  # nothing yet
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            interrupts.check()
        interrupts.reset()
        interrupts.check()
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
