"""A listening socket made inside another namespace from this one: reachable there, not
here, and its errors raised in the caller's thread."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import threading

import pytest

from tests.support import free_udp_port, in_netns, network_namespace
from xnetmon.netns_sockets import enter_namespace, listening_socket_in

pytestmark = pytest.mark.root

CONNECT = "import socket, sys; socket.create_connection(('::1', int(sys.argv[1])), timeout=5).sendall(b'hello')"


def test_the_socket_listens_in_the_namespace_and_serves_from_this_thread():
    port = free_udp_port()  # any free number will do for TCP in a fresh namespace
    with network_namespace() as namespace:
        listener = listening_socket_in(namespace, "::1", port)
        try:
            listener.settimeout(10)
            client = subprocess.Popen(in_netns(namespace, [sys.executable, "-c", CONNECT, str(port)]))
            connection, _ = listener.accept()
            with connection:
                assert connection.recv(16) == b"hello"
            assert client.wait(10) == 0
            with pytest.raises(ConnectionRefusedError), socket.create_connection(("::1", port), timeout=5):
                pass  # nothing listens on that port in our own namespace
        finally:
            listener.close()


def test_errors_in_the_namespace_reach_the_caller():
    with pytest.raises(FileNotFoundError):
        listening_socket_in("xt-no-such-namespace", "::1", 0)
    with network_namespace() as namespace, pytest.raises(OSError) as caught:
        listening_socket_in(namespace, "2001:db8::1", 0)  # not an address of that namespace
    assert caught.value.errno == errno.EADDRNOTAVAIL


def test_a_thread_that_enters_a_namespace_opens_its_sockets_there():
    """What the all-in-one's bus intake does: its thread joins the core site, then connects."""
    with network_namespace() as namespace:
        listener = listening_socket_in(namespace, "::1", 0)
        port = listener.getsockname()[1]
        outcome: dict[str, object] = {}

        def connect() -> None:
            enter_namespace(namespace)
            with socket.create_connection(("::1", port), timeout=5) as client:
                client.sendall(b"inside")
                outcome["sent"] = True

        try:
            listener.settimeout(10)
            thread = threading.Thread(target=connect)
            thread.start()
            connection, _ = listener.accept()
            with connection:
                assert connection.recv(16) == b"inside"
            thread.join(10)
            assert outcome == {"sent": True}
        finally:
            listener.close()
