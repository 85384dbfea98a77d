"""Suite-wide collection order: files marked `long` first.

`make test` spreads files over xdist workers (`--dist loadfile --no-loadscope-reorder`), handing the next
file to whichever worker is free. A long file handed out last keeps one worker busy while the others idle;
handed out first, it runs beside the many short ones."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # sort is stable: within each group the collection order (path, then definition) stays
    items.sort(key=lambda item: 0 if item.get_closest_marker("long") else 1)
