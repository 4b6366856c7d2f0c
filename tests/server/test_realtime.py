"""The WebSocket session's states: the moves it may make, and a clear error for the others."""

from __future__ import annotations

import pytest

from livesettings.server.realtime import SessionState, transition

AUTHENTICATING, OPEN, CLOSING = SessionState.AUTHENTICATING, SessionState.OPEN, SessionState.CLOSING


@pytest.mark.parametrize(
    ("current", "to"),
    [(AUTHENTICATING, OPEN), (AUTHENTICATING, CLOSING), (OPEN, CLOSING)],
)
def test_a_session_may_authenticate_and_close(current: SessionState, to: SessionState) -> None:
    assert transition(current, to) is to


@pytest.mark.parametrize(
    ("current", "to", "message"),
    [
        (
            OPEN,
            AUTHENTICATING,
            "a session cannot go from open to authenticating (expected closing)",
        ),
        (OPEN, OPEN, "a session cannot go from open to open (expected closing)"),
        (CLOSING, OPEN, "a session cannot go from closing to open (expected nothing)"),
        (CLOSING, CLOSING, "a session cannot go from closing to closing (expected nothing)"),
        (
            AUTHENTICATING,
            AUTHENTICATING,
            "a session cannot go from authenticating to authenticating (expected closing or open)",
        ),
    ],
)
def test_any_other_move_names_what_was_expected(
    current: SessionState, to: SessionState, message: str
) -> None:
    with pytest.raises(RuntimeError) as caught:
        transition(current, to)
    assert str(caught.value) == message
