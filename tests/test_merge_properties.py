"""Property tests of the merge rule (DESIGN §3) against a separate reference model.

Random histories of 2 to 4 clients — lagging and future bases, own queued edits, equal and
clamped edit times, deletes of leaves, of objects and of nothing — are replayed through
:func:`livesettings.merge.merge` and through :mod:`tests.merge_reference`, and must agree on the
document, the records, the revision and the conflicts. Further properties: mutations of one
base commute when no path switches between object and non-object; the effective and inverse
patches replay the change; disjoint leaves never lose; the input state is never changed.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import given, settings
from hypothesis import strategies as st

from livesettings.document import apply_patch, default_document
from livesettings.merge import DocState, MergeResult, Mutation, Record, merge
from livesettings.paths import MISSING, Path, get_at
from tests.merge_reference import (
    DELETE,
    RefRecord,
    RefState,
    flatten_patch,
    flatten_settings,
    ref_merge,
)
from tests.merge_reference import unflatten_settings as ref_settings

NOW: Final = 1_000
KEYS: Final = ("a", "b", "c")
THEMES: Final = ("light", "dark", "system")
EXAMPLES: Final = 250

# --- strategies -----------------------------------------------------------------------------

scalars = st.one_of(
    st.integers(-1, 2),
    st.booleans(),
    st.sampled_from(["s", "t", ""]),
    st.lists(st.integers(0, 1), max_size=2),
)
# Edit times: many ties, and values the server clamps (below 0, above NOW).
edit_times = st.sampled_from([-5, 0, 1, 1, 2, 3, 3, NOW, 5 * NOW])
pref_paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(tuple)
nested_values = st.recursive(
    scalars,
    lambda children: st.dictionaries(st.sampled_from(KEYS), children | st.none(), max_size=2),
    max_leaves=3,
)


def build_patch(edits: list[tuple[Path, Any]]) -> dict[str, Any]:
    """A merge patch from ``(path, value)`` pairs; a pair clashing with an earlier is skipped."""
    root: dict[str, Any] = {}
    for path, value in edits:
        node = root
        clash = False
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                clash = True
                break
            node = child
        if not clash and path[-1] not in node:
            node[path[-1]] = value
    return root


@dataclass(frozen=True)
class Step:
    """One event of a history: a client syncing its view, or sending a mutation."""

    client: int
    patch: dict[str, Any] | None = None  # None: the client syncs to the current revision
    edited_at: int = 0
    # "view" (the client's last sync), "future" (above current), "behind" (one below its view)
    # or "none" (no base: the revision current at commit, as HTTP without X-Base-Revision)
    base: str = "view"


@dataclass(frozen=True)
class History:
    """A start document (imported values, no records) and the steps played on it."""

    clients: tuple[str, ...]
    start_revision: int
    start_settings: dict[str, Any]
    steps: tuple[Step, ...]


@st.composite
def imported_settings(draw: st.DrawFn, paths: st.SearchStrategy[Path] = pref_paths) -> Any:
    """Default settings with some imported preferences and theme (values without records)."""
    settings_ = default_document()
    prefs = build_patch(draw(st.lists(st.tuples(paths, scalars), max_size=3)))
    settings_["preferences"] = apply_patch({"preferences": {}}, {"preferences": prefs})[
        "preferences"
    ]
    settings_["theme"] = draw(st.sampled_from(THEMES))
    return settings_


@st.composite
def free_patches(draw: st.DrawFn) -> dict[str, Any]:
    """Patches that may switch paths between object and non-object."""
    edits = draw(
        st.lists(st.tuples(pref_paths, st.none() | scalars | nested_values), min_size=1, max_size=3)
    )
    patch: dict[str, Any] = {"preferences": build_patch(edits)}
    if draw(st.integers(0, 4)) == 0:
        patch["theme"] = draw(st.sampled_from([*THEMES, None]))
    if draw(st.integers(0, 5)) == 0:
        patch["preferences"] = None  # reset the whole field
    return patch


@st.composite
def histories(
    draw: st.DrawFn,
    patches: st.SearchStrategy[dict[str, Any]] | None = None,
    start: st.SearchStrategy[Any] | None = None,
    max_steps: int = 10,
) -> History:
    """A start document and up to ``max_steps`` syncs and mutations of 2 to 4 clients."""
    patches = free_patches() if patches is None else patches
    start = imported_settings() if start is None else start
    n = draw(st.integers(2, 4))
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, max_steps))):
        client = draw(st.integers(0, n - 1))
        if draw(st.integers(0, 3)) == 0:
            steps.append(Step(client))
        else:
            base = draw(
                st.sampled_from(["view", "view", "view", "view", "future", "behind", "none"])
            )
            steps.append(Step(client, draw(patches), draw(edit_times), base))
    return History(
        clients=("A", "B", "C", "D")[:n],
        start_revision=draw(st.integers(0, 2)),
        start_settings=draw(start),
        steps=tuple(steps),
    )


# --- helpers --------------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """JSON text with sorted keys: equal only for equal JSON (``1`` and ``true`` differ)."""
    return json.dumps(value, sort_keys=True)


def records_of(records: dict[Path, Record]) -> dict[Path, RefRecord]:
    return {p: RefRecord(r.rev, r.at, r.by, r.deleted) for p, r in records.items()}


def conflicts_of(result: MergeResult) -> list[tuple[str, str]]:
    return sorted((c.path, c.kept) for c in result.conflicts)


def play(
    history: History, *, guard: bool = False
) -> list[tuple[DocState, Mutation, MergeResult, RefState]]:
    """Replay a history through ``merge``; each entry: state before, mutation, result, and the
    reference model's state before. With ``guard``, check that ``merge`` changed neither the
    state nor the mutation it was given."""
    state = DocState(history.start_revision, copy.deepcopy(history.start_settings), {})
    ref = RefState(history.start_revision, flatten_settings(history.start_settings), {})
    views = [history.start_revision] * len(history.clients)
    played = []
    for number, step in enumerate(history.steps):
        if step.patch is None:
            views[step.client] = state.revision
            continue
        base = {
            "view": views[step.client],
            "future": state.revision + 2,
            "behind": max(0, views[step.client] - 1),
            "none": None,
        }[step.base]
        mutation = Mutation(
            f"m{number}", history.clients[step.client], base, step.patch, step.edited_at
        )
        if guard:
            state_copy = copy.deepcopy(state)
            patch_copy = copy.deepcopy(step.patch)
        result = merge(state, mutation, now_ms=NOW)
        if guard:
            assert state == state_copy
            assert canonical(state.settings) == canonical(state_copy.settings)
            assert canonical(mutation.patch) == canonical(patch_copy)
        played.append((state, mutation, result, ref))
        state = result.state
        ref = ref_merge(
            ref,
            client_id=mutation.client_id,
            base_revision=base,
            patch=step.patch,
            edited_at=step.edited_at,
            now_ms=NOW,
        ).state
    return played


# --- 1. agreement with the reference model --------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(histories())
def test_merge_agrees_with_the_reference_model(history: History) -> None:
    for before, mutation, result, ref_before in play(history):
        expected = ref_merge(
            ref_before,
            client_id=mutation.client_id,
            base_revision=mutation.base_revision,
            patch=mutation.patch,
            edited_at=mutation.edited_at,
            now_ms=NOW,
        )
        assert canonical(result.state.settings) == canonical(ref_settings(expected.state.leaves))
        assert records_of(result.state.records) == expected.state.records
        assert result.applied == expected.applied
        assert result.revision == result.state.revision == expected.state.revision
        assert result.revision == before.revision + (1 if expected.applied else 0)
        assert conflicts_of(result) == sorted(expected.conflicts)


def test_reference_model_examples() -> None:
    """The model itself on the DESIGN's sentences, so that it is not just trusted."""
    start = RefState(3, flatten_settings(default_document()), {})
    one = ref_merge(
        start,
        client_id="A",
        base_revision=3,
        patch={"preferences": {"x": {"y": 1}}},
        edited_at=5,
        now_ms=NOW,
    )
    assert one.applied and one.state.revision == 4 and one.conflicts == ()
    # B, not having seen revision 4, deletes /preferences/x with an older clock: A's newer
    # value stays (partial), the delete is still a win (revision 5).
    two = ref_merge(
        one.state,
        client_id="B",
        base_revision=3,
        patch={"preferences": {"x": None}},
        edited_at=4,
        now_ms=NOW,
    )
    assert two.state.revision == 5 and two.conflicts == (("/preferences/x", "partial"),)
    assert ref_settings(two.state.leaves)["preferences"] == {"x": {"y": 1}}
    # C sets /preferences/x/y with an older clock: it loses to A's record.
    three = ref_merge(
        two.state,
        client_id="C",
        base_revision=3,
        patch={"preferences": {"x": {"y": 2}}},
        edited_at=4,
        now_ms=NOW,
    )
    assert not three.applied and three.conflicts == (("/preferences/x/y", "theirs"),)
    # A's own later edit with the same stale base applies whatever its clock says.
    four = ref_merge(
        one.state,
        client_id="A",
        base_revision=3,
        patch={"preferences": {"x": 7}},
        edited_at=0,
        now_ms=NOW,
    )
    assert four.applied and ref_settings(four.state.leaves)["preferences"] == {"x": 7}


def test_merge_equal_times_break_ties_by_client_id() -> None:
    state = DocState(0, default_document(), {})
    first = merge(state, Mutation("1", "B", 0, {"theme": "dark"}, 7), now_ms=NOW)
    lost = merge(first.state, Mutation("2", "A", 0, {"theme": "system"}, 7), now_ms=NOW)
    assert not lost.applied and lost.revision == 1
    assert [(c.path, c.kept) for c in lost.conflicts] == [("/theme", "theirs")]
    won = merge(first.state, Mutation("3", "C", 0, {"theme": "system"}, 7), now_ms=NOW)
    assert won.state.settings["theme"] == "system" and won.revision == 2
    assert [(c.path, c.kept, c.lost_by) for c in won.conflicts] == [("/theme", "yours", "B")]


# --- 2. commutativity of mutations sharing one base --------------------------------------

# Paths whose kind never changes: "x" and "y" always name leaves, "a" and "b" always objects.
LEAF_KEYS: Final = ("x", "y")
OBJECT_KEYS: Final = ("a", "b")
object_paths = st.lists(st.sampled_from(OBJECT_KEYS), min_size=1, max_size=2).map(tuple)
leaf_paths = st.builds(
    lambda objects, leaf: (*objects, leaf),
    st.lists(st.sampled_from(OBJECT_KEYS), max_size=2),
    st.sampled_from(LEAF_KEYS),
)


def typed_objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    """Object values whose members obey the kinds of their keys, ``depth`` levels at most."""
    members: dict[str, st.SearchStrategy[Any]] = {k: scalars | st.none() for k in LEAF_KEYS}
    if depth > 1:
        for k in OBJECT_KEYS:
            members[k] = typed_objects(depth - 1) | st.none()
    return st.fixed_dictionaries({}, optional=members)


@st.composite
def typed_patches(draw: st.DrawFn) -> dict[str, Any]:
    """Patches that never switch a path between object and non-object."""
    edits: list[tuple[Path, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["leaf", "leaf", "object", "delete"]))
        if kind == "leaf":
            edits.append((draw(leaf_paths), draw(scalars)))
        elif kind == "object":
            path = draw(object_paths)
            edits.append((path, draw(typed_objects(3 - len(path)))))
        else:
            edits.append((draw(leaf_paths | object_paths), None))
    patch: dict[str, Any] = {"preferences": build_patch(edits)}
    if draw(st.integers(0, 3)) == 0:
        patch["theme"] = draw(st.sampled_from([*THEMES, None]))
    return patch


@st.composite
def concurrent_batches(draw: st.DrawFn) -> tuple[History, int, list[Mutation]]:
    """A typed history by clients P1/P2, then 2 to 4 mutations of other clients on one base."""
    prefix = draw(histories(typed_patches(), imported_settings(leaf_paths), max_steps=4))
    prefix = History(
        ("P1", "P2"),
        prefix.start_revision,
        prefix.start_settings,
        tuple(step for step in prefix.steps if step.client < 2),
    )
    clients = draw(st.lists(st.sampled_from("ABCD"), min_size=2, max_size=4, unique=True))
    mutations = [
        Mutation(f"batch{i}", client, 0, draw(typed_patches()), draw(edit_times))
        for i, client in enumerate(clients)
    ]
    return prefix, draw(st.integers(0, 12)), mutations


@settings(max_examples=EXAMPLES, deadline=None)
@given(concurrent_batches())
def test_mutations_sharing_a_base_commute(batch: tuple[History, int, list[Mutation]]) -> None:
    prefix, base_choice, mutations = batch
    played = play(prefix)
    start = (
        played[-1][2].state
        if played
        else DocState(prefix.start_revision, copy.deepcopy(prefix.start_settings), {})
    )
    base = min(base_choice, start.revision)
    mutations = [
        Mutation(m.mutation_id, m.client_id, base, m.patch, m.edited_at) for m in mutations
    ]
    documents = set()
    for order in itertools.permutations(mutations):
        state = start
        for mutation in order:
            state = merge(state, mutation, now_ms=NOW).state
        documents.add(canonical(state.settings))
    assert len(documents) == 1


# --- 3. effective and inverse patches ----------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(histories())
def test_effective_and_inverse_patches_replay_the_change(history: History) -> None:
    for before, _mutation, result, _ref in play(history):
        if not result.applied:
            assert result.effective_patch == {} and result.inverse_patch == {}
            continue
        old = before.settings
        new = result.state.settings
        assert canonical(apply_patch(old, result.effective_patch)) == canonical(new)
        old_plain = {k: v for k, v in old.items() if k != "api_keys"}
        new_plain = {k: v for k, v in new.items() if k != "api_keys"}
        undone = apply_patch(new_plain, result.inverse_patch)
        undone.pop("api_keys", None)
        assert canonical(undone) == canonical(old_plain)


def test_effective_patch_of_a_reset_that_kept_everything() -> None:
    """A reset of /preferences that keeps every value (each written concurrently and later)
    changes nothing: its effective patch must not carry ``"preferences": null``, which resets."""
    state = DocState(0, default_document(), {})
    newer = merge(state, Mutation("1", "B", 0, {"preferences": {"a": 0}}, 10), now_ms=NOW)
    reset = merge(newer.state, Mutation("2", "A", 0, {"preferences": None}, 5), now_ms=NOW)
    assert reset.applied and reset.revision == 2
    assert reset.state.settings["preferences"] == {"a": 0}
    assert [(c.path, c.kept) for c in reset.conflicts] == [("/preferences", "partial")]
    assert apply_patch(newer.state.settings, reset.effective_patch) == reset.state.settings


# --- 4. different leaves never lose ----------------------------------------------------------


@st.composite
def disjoint_batches(draw: st.DrawFn) -> tuple[History, list[Mutation]]:
    """A history, then 2 to 4 mutations of distinct clients on its last revision whose leaf paths
    are pairwise unrelated (none a prefix of another)."""
    prefix = draw(histories(max_steps=5))
    candidates = draw(
        st.lists(pref_paths.map(lambda p: ("preferences", *p)), min_size=2, max_size=8)
    )
    if draw(st.booleans()):
        candidates.append(("theme",))
    paths: list[Path] = []
    for path in candidates:
        if all(not (path[: len(q)] == q or q[: len(path)] == path) for q in paths):
            paths.append(path)
    clients = draw(st.lists(st.sampled_from("WXYZ"), min_size=2, max_size=4, unique=True))
    # The first paths go to distinct clients, so that (nearly always) two or more of them write.
    owners = [
        i if i < len(clients) else draw(st.integers(0, len(clients) - 1)) for i in range(len(paths))
    ]
    mutations = []
    for i, client in enumerate(clients):
        edits = []
        for path, owner in zip(paths, owners, strict=True):
            if owner == i:
                value = draw(st.sampled_from(THEMES)) if path == ("theme",) else draw(scalars)
                edits.append((path, None if draw(st.integers(0, 3)) == 0 else value))
        if edits:
            mutations.append(Mutation(f"d{i}", client, 0, build_patch(edits), draw(edit_times)))
    return prefix, mutations


@settings(max_examples=EXAMPLES, deadline=None)
@given(disjoint_batches())
def test_edits_to_different_leaves_all_survive(batch: tuple[History, list[Mutation]]) -> None:
    prefix, mutations = batch
    played = play(prefix)
    state = (
        played[-1][2].state
        if played
        else DocState(prefix.start_revision, copy.deepcopy(prefix.start_settings), {})
    )
    base = state.revision
    for mutation in mutations:
        result = merge(
            state,
            Mutation(
                mutation.mutation_id, mutation.client_id, base, mutation.patch, mutation.edited_at
            ),
            now_ms=NOW,
        )
        assert result.applied and result.conflicts == ()
        assert result.revision == state.revision + 1
        state = result.state
    for mutation in mutations:
        for path, value in flatten_patch(mutation.patch):
            got = get_at(state.settings, path)
            if path == ("theme",):
                assert got == ("light" if value is DELETE else value)
            elif value is DELETE:
                assert got is MISSING
            else:
                assert canonical(got) == canonical(value)


# --- 5. merge changes nothing it is given --------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(histories())
def test_merge_does_not_change_its_inputs(history: History) -> None:
    played = play(history, guard=True)  # the guard deep-compares the inputs after every merge
    assert len(played) == sum(step.patch is not None for step in history.steps)
