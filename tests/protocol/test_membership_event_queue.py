"""The simulator's calendar queue pops entries in exactly the order of one heap."""

from __future__ import annotations

import heapq
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "simulations"))

from membership_cluster import Entry, EventQueue

# A step: push at now + delay (delays from 0 to a few buckets), or pop until now + span.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.floats(0.0, 0.004, allow_nan=False)),
        st.tuples(st.just("pop"), st.floats(0.0, 0.003, allow_nan=False)),
    ),
    max_size=200,
)


@given(steps)
def test_pops_in_the_order_of_a_single_heap(script: list[tuple[str, float]]) -> None:
    queue, heap = EventQueue(), list[Entry]()
    popped: list[Entry] = []
    expected: list[Entry] = []
    now, seq = 0.0, 0
    for action, value in script:
        if action == "push":
            seq += 1
            queue.push(now + value, seq % 3, seq, "", None)
            heapq.heappush(heap, (now + value, seq, seq % 3, seq, "", None))
            continue
        end_s = now + value
        while (entry := queue.pop_until(end_s)) is not None:
            popped.append(entry)
            now = entry[0]  # like the simulator: time moves to the entry popped
        while heap and heap[0][0] <= end_s:
            expected.append(heapq.heappop(heap))
        now = max(now, end_s)
    popped.extend(iter(lambda: queue.pop_until(float("inf")), None))
    expected.extend(heapq.heappop(heap) for _ in range(len(heap)))
    assert popped == expected


def test_an_entry_due_later_than_the_end_stays_queued() -> None:
    queue = EventQueue()
    queue.push(0.0105, 0, 1, "", None)
    assert queue.pop_until(0.01) is None
    queue.push(0.0101, 0, 2, "", None)  # an earlier slot than the one already opened
    assert [e[3] for e in iter(lambda: queue.pop_until(1.0), None)] == [2, 1]
