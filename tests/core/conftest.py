"""The pure core's table tests: no git, no DVC, no subprocess. `pytest -m core` (or `pytest
tests/core`) runs them alone in seconds."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.core)
