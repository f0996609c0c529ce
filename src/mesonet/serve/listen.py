"""Binding the server's listening socket before anything is printed or loaded.

``mesonet serve`` binds first and hands the socket to uvicorn: a port already in use (or an
address this machine does not have) is then one clear line and exit code 2, not a banner
followed by uvicorn's log and traceback; and no other process can take the port in between.
"""

from __future__ import annotations

import errno
import socket

from mesonet.errors import MesonetError


class ListenError(MesonetError):
    """The server cannot listen on the address asked for."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (IPv4 or IPv6), ready for uvicorn."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host!r}: {exc.strerror}; check --host") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart without waiting
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"{shown} is already in use: stop what listens there or choose --port"
        elif exc.errno == errno.EACCES:
            message = f"not allowed to listen on {shown} (ports below 1024 need privileges)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = f"{host} is not an address of this machine; check --host"
        else:
            message = f"cannot listen on {shown}: {exc.strerror}"
        raise ListenError(message) from None
    sock.set_inheritable(True)
    return sock
