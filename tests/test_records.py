"""Leaf records: the prefix index agrees with a scan; tombstones are bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from livesettings.records import Record, RecordIndex, compact_tombstones, record_bytes

_keys = st.sampled_from(["a", "b", "c"])
_paths = st.lists(_keys, min_size=1, max_size=4).map(tuple)
_ops = st.lists(st.tuples(st.booleans(), _paths), max_size=60)


def scan_under(records: dict[tuple[str, ...], Record], path: tuple[str, ...]) -> list[object]:
    depth = len(path)
    return [(p, r) for p, r in records.items() if len(p) > depth and p[:depth] == path]


@given(_ops, _paths)
def test_the_index_finds_what_a_scan_finds_in_the_same_order(
    ops: list[tuple[bool, tuple[str, ...]]], probe: tuple[str, ...]
) -> None:
    index = RecordIndex({("a", "b"): Record(1, 1, "x")})
    index.under(("a",))  # built before the edits, then kept up to date
    plain = dict(index.records)
    for number, (add, path) in enumerate(ops):
        if add:
            index.put(path, Record(number, number, "x"))
            plain[path] = Record(number, number, "x")
        elif path in plain:
            index.remove(path)
            del plain[path]
        assert index.under(probe) == scan_under(plain, probe)
    assert index.records == plain
    assert list(index.records) == list(plain)


def test_old_tombstones_go_values_stay() -> None:
    records = {
        ("preferences", "old"): Record(3, 1, "c", deleted=True),
        ("preferences", "new"): Record(9, 1, "c", deleted=True),
        ("preferences", "value"): Record(1, 1, "c"),
    }
    kept = compact_tombstones(records, older_than=5, budget=10_000)
    assert kept == {
        ("preferences", "new"): Record(9, 1, "c", deleted=True),
        ("preferences", "value"): Record(1, 1, "c"),
    }
    assert compact_tombstones(kept, older_than=5, budget=10_000) is kept


def test_the_oldest_tombstones_go_first_beyond_the_budget() -> None:
    records = {("p", f"k{n}"): Record(n, 100 - n, "c", deleted=True) for n in range(10)}
    records[("p", "value")] = Record(0, 0, "c")
    one = record_bytes(("p", "k0"), records[("p", "k0")])
    kept = compact_tombstones(records, older_than=0, budget=3 * one)
    assert sorted(kept) == [("p", "k7"), ("p", "k8"), ("p", "k9"), ("p", "value")]
