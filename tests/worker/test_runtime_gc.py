"""``tune_collector``: what ``App.run`` does to the collector when it is the program."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from spreadq.worker.runtime import COLLECTOR_THRESHOLDS, tune_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector")
def test_tune_collector_freezes_what_exists_and_raises_the_young_threshold() -> None:
    before = gc.get_freeze_count()
    tune_collector()
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert gc.get_freeze_count() > before
    assert COLLECTOR_THRESHOLDS[0] > 700  # fewer young passes than Python's default


@pytest.mark.usefixtures("collector")
def test_a_swing_of_forty_thousand_live_objects_runs_no_young_pass() -> None:
    # a producer under a flood: 10,000 jobs pending at four tracked objects each,
    # replaced as ACKs settle them and puts admit more
    tune_collector()
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(count)
    try:
        held: list[list[object]] = [[] for _ in range(40_000)]
        for _ in range(5):
            held = [[] for _ in range(40_000)]
    finally:
        gc.callbacks.remove(count)
    assert len(held) == 40_000
    assert passes == []
