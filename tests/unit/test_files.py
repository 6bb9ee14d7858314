"""Shared file habits: stable short hashes, atomic replacement, exclusive locks, interrupts."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from tune import interrupts
from tune.files import (
    LockHeldError,
    exclusive_lock,
    read_json,
    release_pages,
    replacing,
    short_hash,
    take_rows,
    write_json,
)


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


def _resident_file_mb() -> float:
    """This process's resident pages backed by files (RssFile), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile line")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_batches_read_and_written_through_a_memory_map_do_not_stay_resident(tmp_path):
    rows, row = 2048, 64 * 1024  # 128 MB
    written = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint8, shape=(rows, row))
    before = _resident_file_mb()
    for start in range(0, rows, 64):
        written[start : start + 64] = start % 251
        release_pages(written)
    assert _resident_file_mb() - before < 32
    written.flush()
    del written
    values = np.load(tmp_path / "a.npy", mmap_mode="r")
    before = _resident_file_mb()
    order = np.random.default_rng(0).permutation(rows)
    batches = [take_rows(values, order[start : start + 64]) for start in range(0, rows, 64)]
    assert _resident_file_mb() - before < 32  # without the release, all 128 MB would be resident
    assert all(not isinstance(b, np.memmap) for b in batches)
    assert [int(b[0, 0]) for b in batches[:3]] == [(r // 64 * 64) % 251 for r in order[:129:64]]
    np.array(values)  # and the control: a plain read leaves the pages resident
    assert _resident_file_mb() - before > 100
