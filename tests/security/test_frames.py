"""The WebSocket's first line of defence: nothing before ``auth``, bad frames answered in kind.

(Moved here from ``tests/server/test_isolation.py`` with the rest of the attack suite.)
"""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.server import ServerProcess
from tests.support.users import signup
from tests.support.ws import WsClient


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '{"type": "subscribe", "since": null}',
        '{"type": "update", "mutation_id": "m", "patch": {}}',
        '{"type": "ping"}',
        '{"type": "auth"}',
        '{"type": "auth", "token": ""}',
    ],
)
def test_frames_before_auth_are_refused(server: ServerProcess, frame: str) -> None:
    with WsClient(server.ws_url) as ws:
        ws.send(frame)
        err = ws.recv()
        assert err["type"] == "error"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
        assert ws.conn.close_code == 4001


def test_a_silent_socket_is_closed_after_the_auth_timeout(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    node = ServerProcess(tmp_path_factory.mktemp("silent") / "data", auth_timeout=0.5)
    node.start()
    try:
        with WsClient(node.ws_url) as ws:
            assert ws.recv(timeout=3)["code"] == "unauthorized"
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=3)
            assert ws.conn.close_code == 4001
    finally:
        node.stop()


def test_bad_frames_after_auth_keep_the_socket(server: ServerProcess) -> None:
    with server.client() as http:
        user = signup(http)
    with WsClient(server.ws_url) as ws:
        ws.auth(user.token)
        cases = [
            ("{oops", "malformed_json"),
            ('{"type": "dance"}', "unknown_frame_type"),
            ('{"type": "update", "mutation_id": "m1", "patch": 5}', "invalid_frame"),
            ('{"type": "update", "mutation_id": "m2", "patch": {"colour": 1}}', "unknown_field"),
            ('{"type": "subscribe", "since": -1}', "invalid_frame"),
            ("[" * 100_000 + "]" * 100_000, "malformed_json"),
        ]
        for text, code in cases:
            ws.send(text)
            err = ws.recv()
            assert err["type"] == "error" and err["code"] == code, err
        ws.send({"type": "ping"})
        assert ws.recv() == {"type": "pong"}
