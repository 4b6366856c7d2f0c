"""``token issue`` caps lifetimes and gives every token a jti; ``token revoke`` takes one
target; servers refuse a built-in service token that lives too long."""

from __future__ import annotations

import time

import pytest

from livesettings.auth import MAX_SERVICE_TOKEN_TTL, SERVICE_TOKEN_TTL, TokenIssuer, TokenVerifier
from livesettings.errors import Unauthorized
from tests.cli.conftest import JWT_SECRET, Cli, ok
from tests.cli.test_accounts import add

VERIFIER = TokenVerifier(hs256_secret=JWT_SECRET.encode())


def _lifetime(token: str) -> int:
    claims = VERIFIER.verify(token.strip())
    return claims.exp - int(claims.raw["iat"])


def test_a_service_token_lives_one_day_unless_a_longer_life_is_asked_for(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    service = ok(run_cli("token", "issue", "--user", "billing", "--service"))
    assert _lifetime(service) == SERVICE_TOKEN_TTL == 86400

    # As reported: a ten-year token. Refused, saying how to get a longer one.
    ten_years = run_cli("token", "issue", "--user", "billing", "--service", "--ttl", "315360000")
    assert (ten_years.exit_code, ten_years.stdout) == (2, "")
    assert ten_years.stderr == (
        "error: --ttl 315360000 is longer than 1 day (86400 s); pass --allow-long-ttl for up "
        "to 90 days (7776000 s), and plan to revoke or rotate it\n"
    )
    day_and_a_second = run_cli("token", "issue", "--user", "billing", "--service", "--ttl", "86401")
    assert day_and_a_second.exit_code == 2

    month = ok(
        run_cli(
            "token",
            "issue",
            "--user",
            "billing",
            "--service",
            "--ttl",
            "2592000",
            "--allow-long-ttl",
        )
    )
    assert _lifetime(month) == 2592000
    longest = ok(
        run_cli(
            "token",
            "issue",
            "--user",
            "billing",
            "--service",
            "--ttl",
            str(MAX_SERVICE_TOKEN_TTL),
            "--allow-long-ttl",
        )
    )
    assert _lifetime(longest) == MAX_SERVICE_TOKEN_TTL
    too_long = run_cli(
        "token",
        "issue",
        "--user",
        "billing",
        "--service",
        "--ttl",
        "315360000",
        "--allow-long-ttl",
    )
    assert (too_long.exit_code, too_long.stdout) == (2, "")
    assert too_long.stderr == (
        "error: --ttl 315360000 is longer than 90 days (7776000 s), the most any token may "
        "live; servers refuse longer service tokens\n"
    )


def test_user_tokens_from_the_cli_are_capped_too(run_cli: Cli) -> None:
    add(run_cli, "alice")
    assert _lifetime(ok(run_cli("token", "issue", "--user", "alice"))) == 900
    assert run_cli("token", "issue", "--user", "alice", "--ttl", "100000").exit_code == 2
    long = ok(run_cli("token", "issue", "--user", "alice", "--ttl", "100000", "--allow-long-ttl"))
    assert _lifetime(long) == 100000


def test_every_token_the_cli_issues_has_its_own_jti(run_cli: Cli) -> None:
    add(run_cli, "alice")
    jtis = set()
    for args in (("--user", "alice"), ("--user", "billing", "--service")):
        for _ in range(2):
            claims = VERIFIER.verify(ok(run_cli("token", "issue", *args)).strip())
            assert claims.jti is not None and len(claims.jti) >= 22
            assert claims.jti == claims.raw["jti"]
            jtis.add(claims.jti)
    assert len(jtis) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: give exactly one of --jti or --sub\n"),
        (("--jti", "a", "--sub", "b"), "error: give exactly one of --jti or --sub\n"),
        (("--jti", "x" * 257), "error: --jti must be 1 to 256 characters\n"),
        (("--sub", ""), "error: --sub must be 1 to 256 characters\n"),
    ],
)
def test_token_revoke_takes_exactly_one_target(
    run_cli: Cli, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("token", "revoke", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message)


def test_token_revoke_records_the_revocation(run_cli: Cli) -> None:
    ok(run_cli("setup"))
    out = ok(run_cli("token", "revoke", "--jti", "abc123"))
    assert out == "revoked the token with jti abc123; servers refuse it within seconds\n"
    rows = run_cli.store_do(None, lambda store: store.token_revocations_since(0))
    ((_, jti, until),) = rows
    assert jti == "abc123"
    # Kept as long as any token carrying it could live.
    assert abs(until - (time.time() + MAX_SERVICE_TOKEN_TTL)) < 60
    out = ok(run_cli("token", "revoke", "--sub", "billing"))
    assert (
        out
        == "revoked every token of billing issued until now; servers refuse them within seconds\n"
    )
    sessions = run_cli.store_do(None, lambda store: store.revocations_since(0))
    assert [user for _, user, _ in sessions] == ["billing"]


def test_a_built_in_service_token_living_over_90_days_is_refused() -> None:
    # Tokens issued before the cap (or signed elsewhere with the secret) stop working.
    issuer = TokenIssuer(JWT_SECRET.encode())
    ten_years, _ = issuer.issue("billing", role="service", ttl_seconds=315360000)
    with pytest.raises(Unauthorized) as info:
        VERIFIER.verify(ten_years)
    assert info.value.message == "service token lives longer than 90 days; issue a new one"
    longest, _ = issuer.issue("billing", role="service", ttl_seconds=MAX_SERVICE_TOKEN_TTL)
    assert VERIFIER.verify(longest).is_service
    # A user token's lifetime is the operator's setting: not capped here.
    user, _ = issuer.issue("alice", ttl_seconds=315360000)
    assert VERIFIER.verify(user).sub == "alice"
