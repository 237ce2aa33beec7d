"""MicroPython's `tls` module (the part the firmware's MQTT client uses) on CPython's `ssl`, so
the firmware's own TLS path (broker_tls.make_context, mqtt_client's wrap and non-blocking
handshake) runs in the simulated chargers. chargerhost installs it as the module `tls`.

What it keeps of MicroPython's behaviour:
- `SSLContext(PROTOCOL_TLS_CLIENT)`, `verify_mode`, `load_verify_locations(cadata)` with the CA
  as DER bytes given positionally (a certificate it cannot parse: ValueError);
- `wrap_socket(sock, server_hostname=..., do_handshake_on_connect=False)` on a non-blocking
  socket whose connect has completed or failed: a failed connect is reported by the first
  write, with its errno;
- `write` and `readinto` run the handshake as needed and return None while it (or the
  connection) would block, 0 from `readinto` once the broker closed;
- a broker certificate that fails verification (not signed by the CA, or not naming
  `server_hostname`) raises ValueError with the reason, as Mbed TLS's does; other TLS failures
  raise OSError (EPROTO and OpenSSL's words), as plain socket errors do.
Unlike Mbed TLS under MicroPython's poll, select.poll here sees only the socket: bytes OpenSSL
already decrypted but not yet read wait for the next read (the firmware reads until a read
would block, so at most one read budget's worth waits, for at most the poll's timeout).
"""

from __future__ import annotations

import errno
import socket
import ssl

PROTOCOL_TLS_CLIENT = ssl.PROTOCOL_TLS_CLIENT
CERT_NONE = ssl.CERT_NONE
CERT_OPTIONAL = ssl.CERT_OPTIONAL
CERT_REQUIRED = ssl.CERT_REQUIRED


class SSLContext:
    def __init__(self, protocol: int) -> None:
        if protocol != PROTOCOL_TLS_CLIENT:
            raise ValueError("only PROTOCOL_TLS_CLIENT: a charger is a TLS client")
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    @property
    def verify_mode(self) -> int:
        return self._ctx.verify_mode

    @verify_mode.setter
    def verify_mode(self, mode: int) -> None:
        self._ctx.check_hostname = mode == CERT_REQUIRED  # Mbed TLS checks the name with the chain
        self._ctx.verify_mode = mode

    def load_verify_locations(self, cadata: bytes) -> None:
        try:
            self._ctx.load_verify_locations(cadata=bytes(cadata))
        except ssl.SSLError as e:
            raise ValueError(f"cannot parse the CA certificate: {e.reason or e}") from None

    def wrap_socket(self, sock: socket.socket, server_side: bool = False, do_handshake_on_connect: bool = True,
                    server_hostname: str | None = None) -> "SSLSocket":
        if server_side:
            raise ValueError("only client sockets")
        failed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # the non-blocking connect's outcome
        wrapped = None if failed else self._ctx.wrap_socket(sock, do_handshake_on_connect=False,
                                                            server_hostname=server_hostname)
        s = SSLSocket(sock, wrapped, failed)
        if do_handshake_on_connect and wrapped is not None and sock.getblocking():
            wrapped.do_handshake()
        return s


class SSLSocket:
    """The wrapped socket: write / readinto / close / fileno, as MicroPython's."""

    def __init__(self, raw: socket.socket, wrapped: ssl.SSLSocket | None, failed: int) -> None:
        self._raw = raw
        self._ssl = wrapped
        self._failed = failed

    def fileno(self) -> int:
        return (self._ssl or self._raw).fileno()

    def _io(self, op):
        if self._failed:
            raise OSError(self._failed, errno.errorcode.get(self._failed, "connect failed"))
        try:
            return op(self._ssl)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except ssl.SSLCertVerificationError as e:
            raise ValueError(f"the broker's certificate failed verification: {e.verify_message}") from None
        except ssl.SSLZeroReturnError:
            return 0
        except ssl.SSLError as e:
            raise OSError(errno.EPROTO, f"TLS: {e.reason or e}") from None

    def write(self, data) -> int | None:
        return self._io(lambda s: s.write(data))

    def readinto(self, buf, nbytes: int | None = None) -> int | None:
        view = memoryview(buf)
        if nbytes is not None:
            view = view[:nbytes]
        return self._io(lambda s: s.recv_into(view))

    def close(self) -> None:
        (self._ssl or self._raw).close()
