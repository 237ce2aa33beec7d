# The wire from the MicroPython fakes of `machine`, `network` and `ntptime` to the hardware
# bench (tests/device/bench.py, CPython) on a loopback TCP port named by $BENCH_PORT.
#
# One line per exchange, ASCII, "\n"-terminated. `tell` sends a line and does not wait (pin
# levels, PWM duty, watchdog feeds); `ask` sends one and returns the bench's one-line answer.
# TCP_NODELAY on both ends, so a told line never waits behind Nagle for an asked one.
import os
import socket

_IPPROTO_TCP = 6
_TCP_NODELAY = 1
_sock = None


def _link():
    global _sock
    if _sock is None:
        port = os.getenv("BENCH_PORT")
        if not port:
            raise OSError("BENCH_PORT is not set: no hardware bench to talk to")
        s = socket.socket()
        s.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
        try:
            s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except OSError:
            pass
        _sock = s
    return _sock


def tell(line):
    _link().write(line.encode() + b"\n")


def ask(line):
    s = _link()
    s.write(line.encode() + b"\n")
    answer = s.readline()
    if not answer:
        raise OSError("the hardware bench closed the link")
    return answer.decode().rstrip("\n")
