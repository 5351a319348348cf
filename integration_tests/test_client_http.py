"""HeapClient over a real socket where neither requests-mock nor the sandbox can go: a server that
answers with a malformed header."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from destination_heap_analytics.heap.client import HeapClient, HeapRejected

APP_ID = "11"


@pytest.fixture
def malformed_header_server() -> Iterator[str]:
    """Answers one request with a 400 whose headers quote a secret and cannot be parsed; a raw
    socket, since neither requests-mock nor the sandbox can send a malformed header."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer = (
        b"HTTP/1.1 400 Bad\r\nContent-Type: application/json\r\n"
        b"Echo jane@example.com Baker Street\r\nContent-Length: 2\r\n\r\n{}"
    )

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            read_request(connection)
            connection.sendall(answer)
            connection.shutdown(socket.SHUT_WR)  # no reset while the client reads the answer
            while connection.recv(65536):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/track"
    thread.join(timeout=5)
    listener.close()


def read_request(connection: socket.socket) -> None:
    """The whole request, headers and body, so closing never resets unread data."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)


def test_urllib3_warning_on_a_malformed_header_does_not_quote_it(malformed_header_server, caplog):
    client = HeapClient(malformed_header_server, APP_ID, bulk_key="events")
    caplog.set_level(logging.WARNING)

    with pytest.raises(HeapRejected):
        client.send([{}])
    client.close()

    (warning,) = [r for r in caplog.records if r.name == "urllib3.connection"]
    assert warning.getMessage() == "Failed to parse headers (url=<withheld>): <withheld>"
    assert "jane" not in caplog.text and "Baker" not in caplog.text
