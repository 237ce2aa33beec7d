# TLS to the broker with the bureau network's CA pinned: the CA certificate provisioned on the
# charger's flash (DER, or PEM converted here: the unix port's Mbed TLS is built without a PEM
# parser) and the one client context every connection of the charger is wrapped with.
#
# MicroPython's `tls` (ESP32 and unix port, Mbed TLS): SSLContext.load_verify_locations takes
# the CA data positionally (the keyword form belongs to micropython-lib's `ssl` wrapper).
# The context holds the parsed CA, so it is made once and reused by every reconnection.

try:
    import tls
except ImportError:  # a port without TLS: make_context says so
    tls = None

import binascii

from errors import CodecError


class TLSConfigError(CodecError):
    """The charger's TLS settings or CA file are unusable (reason, detail)."""


_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


def ca_der(data):
    """The DER bytes of a CA certificate given as DER or as one PEM block."""
    data = bytes(data)
    start = data.find(_PEM_BEGIN)
    if start >= 0:
        end = data.find(_PEM_END, start)
        if end < 0:
            raise TLSConfigError("bad_ca", "PEM certificate without its END line")
        try:
            data = binascii.a2b_base64(data[start + len(_PEM_BEGIN):end])
        except ValueError:
            raise TLSConfigError("bad_ca", "PEM certificate is not base64")
    if len(data) < 4 or data[0] != 0x30:  # an X.509 certificate is one DER SEQUENCE
        raise TLSConfigError("bad_ca", "not a DER or PEM certificate")
    return data


def load_ca(path):
    """The CA certificate in the file at `path` (DER or PEM), as DER."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise TLSConfigError("no_ca", "%s is missing: mqtt.tls needs the network's CA there" % path)
    return ca_der(data)


def make_context(ca):
    """A client context that accepts only a server certificate signed by `ca` (DER bytes)."""
    if tls is None:
        raise TLSConfigError("no_tls", "this MicroPython has no tls module")
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    try:
        ctx.load_verify_locations(ca)
    except ValueError as e:
        raise TLSConfigError("bad_ca", "Mbed TLS cannot parse the CA certificate (%s)" % (e,))
    return ctx
