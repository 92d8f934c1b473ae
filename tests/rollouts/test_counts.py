"""Counter increases from raw values at a window's two ends: a series born in
the window counts in full, a reset counts what came after it."""

from rollouts.analysis import series_increase

OK, FAILED = ("code", "200"), ("code", "500")


def test_a_series_born_mid_window_counts_its_first_sample():
    # The module's worked example: the 500 series appears at 3 and grows to 5; 200 goes 100 -> 180.
    before = {frozenset({OK}): 100.0}
    after = {frozenset({OK}): 180.0, frozenset({FAILED}): 5.0}
    assert series_increase(before, after) == {frozenset({OK}): 80.0, frozenset({FAILED}): 5.0}


def test_a_reset_counts_what_the_counter_counted_since():
    assert series_increase({"pod-a": 50.0}, {"pod-a": 7.0}) == {"pod-a": 7.0}


def test_a_series_without_a_sample_in_the_window_counted_nothing():
    assert series_increase({"gone": 12.0, "kept": 3.0}, {"kept": 3.0}) == {"kept": 0.0}
