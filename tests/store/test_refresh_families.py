"""Each user keeps at most N live refresh-token families; a new sign-in beyond that deletes the
least recently refreshed one, on every backend."""

from __future__ import annotations

from livesettings.store import RefreshResult, Store
from tests.store.conftest import NOW_MS

NOW = NOW_MS // 1000


async def test_a_sign_in_beyond_the_cap_drops_the_least_recently_refreshed_family(
    store: Store,
) -> None:
    await store.create_user("u1", "alice", "h")
    await store.create_user("u2", "bob", "h")
    await store.add_refresh_token("a1", "u1", "fa", NOW + 100, max_families=3)
    await store.add_refresh_token("b1", "u1", "fb", NOW + 101, max_families=3)
    await store.add_refresh_token("c1", "u1", "fc", NOW + 102, max_families=3)
    await store.add_refresh_token("z1", "u2", "fz", NOW + 50, max_families=3)
    # "a" is refreshed: now the most recently used family; its used token stays as a marker.
    assert await store.use_refresh_token("a1", "a2", NOW + 200, NOW) == RefreshResult(
        "ok", "u1", "fa"
    )
    # A logged-out (revoked) family is dead already and does not count against the cap.
    await store.add_refresh_token("r1", "u1", "fr", NOW + 90)
    assert await store.use_refresh_token("r1", "r2", NOW + 95, NOW) == RefreshResult(
        "ok", "u1", "fr"
    )
    assert await store.use_refresh_token("r1", "r3", NOW + 95, NOW) == RefreshResult(
        "reused", "u1", "fr"
    )

    await store.add_refresh_token("d1", "u1", "fd", NOW + 300, max_families=3)

    # "b" went (its last use was the oldest), with every token it held.
    assert await store.use_refresh_token("b1", "b2", NOW + 300, NOW) == RefreshResult("invalid")
    assert await store.refresh_token_owner("b1") is None
    for token, family in (("a2", "fa"), ("c1", "fc"), ("d1", "fd")):
        assert await store.refresh_token_owner(token) == "u1"
        assert await store.use_refresh_token(token, token + "+", NOW + 400, NOW) == RefreshResult(
            "ok", "u1", family
        )
    # Another user's families are not touched.
    assert await store.use_refresh_token("z1", "z2", NOW + 60, NOW) == RefreshResult(
        "ok", "u2", "fz"
    )
    assert await store.refresh_token_owner("nope") is None


async def test_without_a_cap_every_family_stays(store: Store) -> None:
    await store.create_user("u1", "alice", "h")
    for n in range(5):
        await store.add_refresh_token(f"t{n}", "u1", f"f{n}", NOW + n)
    await store.add_refresh_token("t5", "u1", "f5", NOW + 5, max_families=5)
    assert await store.refresh_token_owner("t0") is None  # the sixth pushed the first out
    for n in range(1, 6):
        assert (await store.use_refresh_token(f"t{n}", f"n{n}", NOW + 9, NOW)).status == "ok"


async def test_the_new_family_stays_even_when_it_ties_with_older_ones(store: Store) -> None:
    await store.create_user("u1", "alice", "h")
    for n in range(3):
        await store.add_refresh_token(f"t{n}", "u1", f"f{n}", NOW + 10, max_families=1)
    assert await store.refresh_token_owner("t0") is None
    assert await store.refresh_token_owner("t1") is None
    assert await store.use_refresh_token("t2", "n2", NOW + 20, NOW) == RefreshResult(
        "ok", "u1", "f2"
    )
