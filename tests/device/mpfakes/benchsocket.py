# The device's `socket` on the unix port with name resolution answered by the bench's DNS (the
# resolver the Wi-Fi network hands out), so a test can make a broker name fail and come back.
# Addresses are resolved locally; the sockets themselves are real.
import socket as _socket

import benchlink

SOCK_STREAM = _socket.SOCK_STREAM
socket = _socket.socket


def _is_ip(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def getaddrinfo(host, port, af=0, kind=0, *rest):
    if not _is_ip(host):
        answer = benchlink.ask("dns %s" % host)
        if not answer or answer == "-":
            raise OSError(-2)  # EAI_NONAME, as lwIP's resolver reports an unknown name
        host = answer
    return _socket.getaddrinfo(host, port, af, kind)
