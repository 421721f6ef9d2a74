"""When the map tracer swaps before the flow table fills (flowcollect/pipeline/fill_watch.py), on a fake clock."""
from flowcollect.pipeline.fill_watch import MIN_CHECK_S, FillWatch


class Gauge:
    def __init__(self):
        self.fill = 0.0

    def __call__(self):
        return self.fill


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_quiet_table_is_looked_at_every_idle_period():
    fill, clock = Gauge(), Clock()
    watch = FillWatch(fill, clock, share=0.5, idle_check_s=0.25)
    clock.now += 1
    assert not watch.full()
    assert watch.next_check() == 0.25


def test_a_filling_table_is_looked_at_halfway_to_the_mark_and_swapped_at_it():
    # GIVEN a region filling at 10 % of its cap per second
    fill, clock = Gauge(), Clock()
    watch = FillWatch(fill, clock, share=0.5, idle_check_s=10.0)
    clock.now += 1
    fill.fill = 0.1
    # WHEN the watch looks
    assert not watch.full()
    # THEN it looks again when the fill would be halfway to the mark: (0.5 - 0.1) / 0.1 / 2 = 2 s
    assert abs(watch.next_check() - 2.0) < 1e-9
    # AND at the mark it says so, and looks at the next half as soon as it can
    clock.now += 2
    fill.fill = 0.5
    assert watch.full()
    assert watch.next_check() == MIN_CHECK_S


def test_after_a_swap_the_rate_starts_from_the_empty_half():
    fill, clock = Gauge(), Clock()
    watch = FillWatch(fill, clock, share=0.5, idle_check_s=10.0)
    clock.now += 1
    fill.fill = 0.5
    assert watch.full()
    watch.swapping()
    fill.fill = 0.0
    clock.now += 1
    assert not watch.full()
    assert watch.next_check() == 10.0  # nothing new in the next half: idle
