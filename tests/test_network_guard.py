"""The offline gate's network guard fails a test that tries to connect."""

from __future__ import annotations

import socket

import pytest


def test_tcp_connect_is_refused_with_the_test_named() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RuntimeError, match=r"test_tcp_connect_is_refused.*tests run offline"):
            sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed
    finally:
        sock.close()


def test_create_connection_is_refused() -> None:
    with pytest.raises(RuntimeError, match="tests run offline"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)


def test_unix_sockets_still_work() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        left.sendall(b"ok")
        assert right.recv(2) == b"ok"
    finally:
        left.close()
        right.close()
