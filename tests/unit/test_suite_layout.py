"""The test suite itself: the README's test command collects both tiers in one pytest process."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_no_two_test_modules_share_a_file_name():
    # pytest's default import mode imports each test module by its bare name (the tiers have no
    # __init__.py), so a second module of the same name in the other tier stops collection.
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
