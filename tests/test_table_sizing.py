"""The flow table's sizing policy (flowcollect/kernel/table_sizing.py): grow on pressure, shrink when quiet, bounded."""
from flowcollect.kernel.table_sizing import QUIET_SWAPS, SMALLEST_CAP, RegionUse, TableSizer, smallest_caps


def use(cap, flows=0, overflowed=0, refused=0):
    return RegionUse(cap, flows, overflowed, refused)


def test_every_cpu_starts_at_the_smallest_cap_or_an_even_share_of_a_small_bound():
    assert smallest_caps(1_000_000, 4) == [SMALLEST_CAP] * 4
    assert smallest_caps(64, 2) == [32, 32]
    assert smallest_caps(7, 2) == [4, 3]
    assert smallest_caps(1, 2) == [1, 1]  # every CPU can start a flow


def test_a_region_that_reached_the_swap_mark_doubles_and_the_others_stay():
    # GIVEN two CPUs at the smallest cap
    sizer = TableSizer(1_000_000, 2)
    # WHEN CPU 0 filled half its cap (the map tracer's mark) and CPU 1 a quarter
    caps = sizer.next_caps([use(SMALLEST_CAP, SMALLEST_CAP // 2), use(SMALLEST_CAP, SMALLEST_CAP // 4)])
    # THEN only CPU 0 grows
    assert caps == [2 * SMALLEST_CAP, SMALLEST_CAP]
    assert (sizer.grown, sizer.shrunk) == (1, 0)


def test_refused_flows_quadruple_the_region_and_a_crowded_overflow_map_doubles_it():
    sizer = TableSizer(1_000_000, 2)
    caps = sizer.next_caps([use(SMALLEST_CAP, SMALLEST_CAP, refused=10), use(SMALLEST_CAP, 100, overflowed=2)])
    assert caps == [4 * SMALLEST_CAP, 2 * SMALLEST_CAP]


def test_a_burst_the_region_refused_is_taken_by_the_next_half():
    # GIVEN a region at the smallest cap that took 512 new flows and refused 19,488 more (a burst of 20,000)
    sizer = TableSizer(1_000_000, 1)
    caps = sizer.next_caps([use(SMALLEST_CAP, SMALLEST_CAP, refused=20_000 - SMALLEST_CAP)])
    # THEN the next half holds the burst at the fill where the agent swaps: twice its flows, a power of two
    assert caps == [65_536]


def test_a_quiet_region_halves_after_quiet_swaps_in_a_row_but_never_below_the_smallest_cap():
    # GIVEN a region grown to 8 x the smallest cap
    sizer = TableSizer(1_000_000, 1)
    for _ in range(3):
        sizer.next_caps([use(sizer.caps[0], sizer.caps[0])])
    assert sizer.caps == [8 * SMALLEST_CAP]
    # WHEN it holds almost nothing, swap after swap
    history = [sizer.next_caps([use(sizer.caps[0], 1)])[0] for _ in range(5 * QUIET_SWAPS)]
    # THEN it halves once every QUIET_SWAPS swaps, down to the smallest cap, and stays there
    assert history[QUIET_SWAPS - 2] == 8 * SMALLEST_CAP
    assert history[QUIET_SWAPS - 1] == 4 * SMALLEST_CAP
    assert history[2 * QUIET_SWAPS - 1] == 2 * SMALLEST_CAP
    assert history[3 * QUIET_SWAPS - 1] == SMALLEST_CAP
    assert history[-1] == SMALLEST_CAP
    assert sizer.shrunk == 3


def test_a_busy_swap_resets_the_quiet_count():
    sizer = TableSizer(1_000_000, 1)
    sizer.next_caps([use(SMALLEST_CAP, SMALLEST_CAP)])  # grown to 2 x
    for _ in range(QUIET_SWAPS - 1):
        sizer.next_caps([use(sizer.caps[0], 0)])
    sizer.next_caps([use(sizer.caps[0], sizer.caps[0] // 4)])  # some use: not quiet
    for _ in range(QUIET_SWAPS - 1):
        sizer.next_caps([use(sizer.caps[0], 0)])
    assert sizer.caps == [2 * SMALLEST_CAP]


def test_growth_never_takes_the_caps_past_max_flows():
    # GIVEN a bound of 3,000 flows on two CPUs
    sizer = TableSizer(3000, 2)
    # WHEN both fill every half
    for _ in range(6):
        caps = sizer.next_caps([use(cap, cap) for cap in sizer.caps])
        # THEN together they never pass the bound, and neither ever shrinks
        assert sum(caps) <= 3000
    assert caps == [1500, 1500]


def test_a_region_that_grows_takes_what_a_quiet_one_leaves():
    sizer = TableSizer(4 * SMALLEST_CAP, 2)
    caps = sizer.next_caps([use(SMALLEST_CAP, SMALLEST_CAP, refused=5), use(SMALLEST_CAP, 0)])
    assert caps == [3 * SMALLEST_CAP, SMALLEST_CAP]
