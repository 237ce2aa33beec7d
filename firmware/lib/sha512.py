"""SHA-512 (FIPS 180-4) in pure Python, for MicroPython on the charger and for CPython.

Stock ESP32 MicroPython has no hashlib.sha512, and Ed25519 needs one, so this module is
the only SHA-512 the firmware has. It never uses hashlib: the same code runs (and is tested)
everywhere.

Written for MicroPython's interpreter, where every big-integer operation allocates:

* 64-bit words are plain ints; a rotation of x is a shift of the 128-bit value
  x * (2**64 + 1) (two copies of x side by side), so a whole Sigma function costs one
  multiply, three shifts and two xors, and its garbage above bit 63 is left in place
  (carries only move up) until the single mask per new word.
* The eight working variables and the message window live in local variables (no list
  indexing); 16 rounds are unrolled with the variables renamed, and the next 16 message
  words are computed in place after each 16 rounds, two words per big-integer operation
  (see _compress).
* Choose(e, f, g) = g ^ (e & (f ^ g)); Majority(a, b, c) = b ^ ((a ^ b) & (b ^ c)) where
  (b ^ c) is the previous round's (a ^ b): y and z take turns holding the two.

Where the port has a native emitter (the ESP32, the unix port) the compression runs in
sha512_viper.py instead: machine code on 32-bit words that allocates nothing. NATIVE says
which one this import uses; both give the same digests (both are tested).

Buffers are reused: one padding block and one digest scratch for the module (MicroPython runs
one hash at a time: nothing here yields), and reset() lets a caller keep one SHA512 object.

Public API: sha512(data) -> 64-byte digest, and SHA512 (update/digest/hexdigest/copy/reset).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from struct import pack, unpack_from

try:
    import sha512_viper as _native
except (ImportError, SyntaxError):  # CPython, or a port without a native emitter (WebAssembly)
    _native = None

NATIVE = _native is not None

_M64 = const(0xFFFFFFFFFFFFFFFF)
_DUP = const(0x10000000000000001)  # x * _DUP == x | (x << 64) for x < 2**64
_LANES = const(0xFFFFFFFFFFFFFFFF0000000000000000FFFFFFFFFFFFFFFF)  # two 64-bit lanes, at bits 0 and 128


def _pairs(k):
    """Round constants as 5 chunks of 8 lane pairs K[2m] | K[2m+1] << 128."""
    return tuple(tuple(k[i + 2 * m] | (k[i + 2 * m + 1] << 128) for m in range(8)) for i in range(0, 80, 16))



_IV = () if NATIVE else (  # the pure state's initial words (the native one uses _IV_BE)
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)


_IV_BE = (
    b"\x6a\x09\xe6\x67\xf3\xbc\xc9\x08\xbb\x67\xae\x85\x84\xca\xa7\x3b"
    b"\x3c\x6e\xf3\x72\xfe\x94\xf8\x2b\xa5\x4f\xf5\x3a\x5f\x1d\x36\xf1"
    b"\x51\x0e\x52\x7f\xad\xe6\x82\xd1\x9b\x05\x68\x8c\x2b\x3e\x6c\x1f"
    b"\x1f\x83\xd9\xab\xfb\x41\xbd\x6b\x5b\xe0\xcd\x19\x13\x7e\x21\x79"
)  # _IV as 64 big-endian bytes, for the native state


def _compress(st, buf, off):
    """Process the 128-byte block at buf[off:off + 128] into the 8-word state list st.

    The message schedule runs two words at a time: p_m holds words 2m and 2m+1 of the current
    16-word window as lanes (bits 0-63 and 128-191), q_m holds the odd pair 2m+1, 2m+2. Both
    sigma functions of the schedule then cost one multiply, three shifts, two xors and a mask
    per *pair*, and a round adds its word straight from a lane (upper-lane bits above bit 63
    are harmless: only the low 64 bits of a sum are kept).
    """
    a, b, c, d, e, f, g, h = st
    x = t1 = kw = 0  # hot locals first: MicroPython gives the first 16 locals 1-byte opcodes
    z = b ^ c
    y = 0
    n = 0
    w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15 = unpack_from(">16Q", buf, off)
    p0 = w0 | (w1 << 128)
    p1 = w2 | (w3 << 128)
    p2 = w4 | (w5 << 128)
    p3 = w6 | (w7 << 128)
    p4 = w8 | (w9 << 128)
    p5 = w10 | (w11 << 128)
    p6 = w12 | (w13 << 128)
    p7 = w14 | (w15 << 128)
    q0 = w1 | (w2 << 128)
    q1 = w3 | (w4 << 128)
    q2 = w5 | (w6 << 128)
    q3 = w7 | (w8 << 128)
    q4 = w9 | (w10 << 128)
    q5 = w11 | (w12 << 128)
    q6 = w13 | (w14 << 128)
    q7 = 0  # words 15, 16: made once word 16 exists
    for k0, k1, k2, k3, k4, k5, k6, k7 in _KP:
        # rounds 0, 1 (+16n)
        kw = p0 + k0
        x = e * _DUP
        t1 = h + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (g ^ (e & (f ^ g))) + kw
        x = a * _DUP
        y = a ^ b
        d = (d + t1) & _M64
        h = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (b ^ (y & z))) & _M64
        x = d * _DUP
        t1 = g + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (f ^ (d & (e ^ f))) + (kw >> 128)
        x = h * _DUP
        z = h ^ a
        c = (c + t1) & _M64
        g = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (a ^ (z & y))) & _M64
        # rounds 2, 3 (+16n)
        kw = p1 + k1
        x = c * _DUP
        t1 = f + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (e ^ (c & (d ^ e))) + kw
        x = g * _DUP
        y = g ^ h
        b = (b + t1) & _M64
        f = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (h ^ (y & z))) & _M64
        x = b * _DUP
        t1 = e + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (d ^ (b & (c ^ d))) + (kw >> 128)
        x = f * _DUP
        z = f ^ g
        a = (a + t1) & _M64
        e = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (g ^ (z & y))) & _M64
        # rounds 4, 5 (+16n)
        kw = p2 + k2
        x = a * _DUP
        t1 = d + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (c ^ (a & (b ^ c))) + kw
        x = e * _DUP
        y = e ^ f
        h = (h + t1) & _M64
        d = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (f ^ (y & z))) & _M64
        x = h * _DUP
        t1 = c + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (b ^ (h & (a ^ b))) + (kw >> 128)
        x = d * _DUP
        z = d ^ e
        g = (g + t1) & _M64
        c = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (e ^ (z & y))) & _M64
        # rounds 6, 7 (+16n)
        kw = p3 + k3
        x = g * _DUP
        t1 = b + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (a ^ (g & (h ^ a))) + kw
        x = c * _DUP
        y = c ^ d
        f = (f + t1) & _M64
        b = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (d ^ (y & z))) & _M64
        x = f * _DUP
        t1 = a + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (h ^ (f & (g ^ h))) + (kw >> 128)
        x = b * _DUP
        z = b ^ c
        e = (e + t1) & _M64
        a = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (c ^ (z & y))) & _M64
        # rounds 8, 9 (+16n)
        kw = p4 + k4
        x = e * _DUP
        t1 = h + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (g ^ (e & (f ^ g))) + kw
        x = a * _DUP
        y = a ^ b
        d = (d + t1) & _M64
        h = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (b ^ (y & z))) & _M64
        x = d * _DUP
        t1 = g + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (f ^ (d & (e ^ f))) + (kw >> 128)
        x = h * _DUP
        z = h ^ a
        c = (c + t1) & _M64
        g = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (a ^ (z & y))) & _M64
        # rounds 10, 11 (+16n)
        kw = p5 + k5
        x = c * _DUP
        t1 = f + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (e ^ (c & (d ^ e))) + kw
        x = g * _DUP
        y = g ^ h
        b = (b + t1) & _M64
        f = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (h ^ (y & z))) & _M64
        x = b * _DUP
        t1 = e + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (d ^ (b & (c ^ d))) + (kw >> 128)
        x = f * _DUP
        z = f ^ g
        a = (a + t1) & _M64
        e = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (g ^ (z & y))) & _M64
        # rounds 12, 13 (+16n)
        kw = p6 + k6
        x = a * _DUP
        t1 = d + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (c ^ (a & (b ^ c))) + kw
        x = e * _DUP
        y = e ^ f
        h = (h + t1) & _M64
        d = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (f ^ (y & z))) & _M64
        x = h * _DUP
        t1 = c + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (b ^ (h & (a ^ b))) + (kw >> 128)
        x = d * _DUP
        z = d ^ e
        g = (g + t1) & _M64
        c = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (e ^ (z & y))) & _M64
        # rounds 14, 15 (+16n)
        kw = p7 + k7
        x = g * _DUP
        t1 = b + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (a ^ (g & (h ^ a))) + kw
        x = c * _DUP
        y = c ^ d
        f = (f + t1) & _M64
        b = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (d ^ (y & z))) & _M64
        x = f * _DUP
        t1 = a + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (h ^ (f & (g ^ h))) + (kw >> 128)
        x = b * _DUP
        z = b ^ c
        e = (e + t1) & _M64
        a = (t1 + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (c ^ (z & y))) & _M64
        if n == 4:
            break
        n += 1
        # next 16 words: p_m <- s1(pair 7+m) + (odd pair 4+m) + s0(odd pair m) + p_m
        x = p7 * _DUP
        y = q0 * _DUP
        p0 = (
            (((x >> 19) ^ (x >> 61) ^ (p7 >> 6)) & _LANES)
            + q4
            + (((y >> 1) ^ (y >> 8) ^ (q0 >> 7)) & _LANES)
            + p0
        ) & _LANES
        q7 = (p7 >> 128) | (p0 << 128)
        x = p0 * _DUP
        y = q1 * _DUP
        p1 = (
            (((x >> 19) ^ (x >> 61) ^ (p0 >> 6)) & _LANES)
            + q5
            + (((y >> 1) ^ (y >> 8) ^ (q1 >> 7)) & _LANES)
            + p1
        ) & _LANES
        x = p1 * _DUP
        y = q2 * _DUP
        p2 = (
            (((x >> 19) ^ (x >> 61) ^ (p1 >> 6)) & _LANES)
            + q6
            + (((y >> 1) ^ (y >> 8) ^ (q2 >> 7)) & _LANES)
            + p2
        ) & _LANES
        x = p2 * _DUP
        y = q3 * _DUP
        p3 = (
            (((x >> 19) ^ (x >> 61) ^ (p2 >> 6)) & _LANES)
            + q7
            + (((y >> 1) ^ (y >> 8) ^ (q3 >> 7)) & _LANES)
            + p3
        ) & _LANES
        q0 = (p0 >> 128) | (p1 << 128)
        x = p3 * _DUP
        y = q4 * _DUP
        p4 = (
            (((x >> 19) ^ (x >> 61) ^ (p3 >> 6)) & _LANES)
            + q0
            + (((y >> 1) ^ (y >> 8) ^ (q4 >> 7)) & _LANES)
            + p4
        ) & _LANES
        q1 = (p1 >> 128) | (p2 << 128)
        x = p4 * _DUP
        y = q5 * _DUP
        p5 = (
            (((x >> 19) ^ (x >> 61) ^ (p4 >> 6)) & _LANES)
            + q1
            + (((y >> 1) ^ (y >> 8) ^ (q5 >> 7)) & _LANES)
            + p5
        ) & _LANES
        q2 = (p2 >> 128) | (p3 << 128)
        x = p5 * _DUP
        y = q6 * _DUP
        p6 = (
            (((x >> 19) ^ (x >> 61) ^ (p5 >> 6)) & _LANES)
            + q2
            + (((y >> 1) ^ (y >> 8) ^ (q6 >> 7)) & _LANES)
            + p6
        ) & _LANES
        q3 = (p3 >> 128) | (p4 << 128)
        x = p6 * _DUP
        y = q7 * _DUP
        p7 = (
            (((x >> 19) ^ (x >> 61) ^ (p6 >> 6)) & _LANES)
            + q3
            + (((y >> 1) ^ (y >> 8) ^ (q7 >> 7)) & _LANES)
            + p7
        ) & _LANES
        q4 = (p4 >> 128) | (p5 << 128)
        q5 = (p5 >> 128) | (p6 << 128)
        q6 = (p6 >> 128) | (p7 << 128)
    st[0] = (st[0] + a) & _M64
    st[1] = (st[1] + b) & _M64
    st[2] = (st[2] + c) & _M64
    st[3] = (st[3] + d) & _M64
    st[4] = (st[4] + e) & _M64
    st[5] = (st[5] + f) & _M64
    st[6] = (st[6] + g) & _M64
    st[7] = (st[7] + h) & _M64


# the round constants of the pure compression (sha512_viper.py has its own, in flash)
_KP = () if NATIVE else _pairs((
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC,
    0x3956C25BF348B538, 0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118,
    0xD807AA98A3030242, 0x12835B0145706FBE, 0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2,
    0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235, 0xC19BF174CF692694,
    0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5,
    0x983E5152EE66DFAB, 0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4,
    0xC6E00BF33DA88FC2, 0xD5A79147930AA725, 0x06CA6351E003826F, 0x142929670A0E6E70,
    0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED, 0x53380D139D95B3DF,
    0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30,
    0xD192E819D6EF5218, 0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8,
    0x19A4C116B8D2D0C8, 0x1E376C085141AB53, 0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8,
    0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373, 0x682E6FF3D6B2B8A3,
    0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B,
    0xCA273ECEEA26619C, 0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178,
    0x06F067AA72176FBA, 0x0A637DC5A2C898A6, 0x113F9804BEF90DAE, 0x1B710B35131C471B,
    0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC, 0x431D67C49C100D4C,
    0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
))

_TAIL = bytearray(256)  # padding blocks of the digest being finished (reused)
_ZEROS = memoryview(bytes(256))


if _native is None:
    def _new_state():
        return list(_IV)

    def _copy_state(st):
        return list(st)

    def _scratch_state(st):
        return list(st)

    def _reset_state(st):
        st[:] = _IV

    def _state_digest(st):
        return pack(">8Q", st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7])
else:
    _compress = _native.compress  # noqa: F811  (the pure one stays for the ports without it)
    _OUT = bytearray(64)

    def _new_state():
        st = bytearray(64)
        _native.load_be(st, _IV_BE)
        return st

    _SCRATCH = bytearray(64)

    def _copy_state(st):
        return bytearray(st)

    def _scratch_state(st):
        """st copied into the module's scratch state: digest() finishes a copy, not st."""
        _SCRATCH[:] = st
        return _SCRATCH

    def _reset_state(st):
        _native.load_be(st, _IV_BE)

    def _state_digest(st):
        _native.store_be(st, _OUT)
        return bytes(_OUT)


def _finish(st, buf, fill, total):
    """Pad the `fill` pending bytes in buf[0:fill] into _TAIL and return the digest of the
    state `st` (changed)."""
    tail = _TAIL
    tail[0:fill] = memoryview(buf)[0:fill]
    tail[fill:256] = _ZEROS[fill:256]
    tail[fill] = 0x80
    end = 128 if fill < 112 else 256
    tail[end - 16:end] = (total << 3).to_bytes(16, "big")
    _compress(st, tail, 0)
    if end == 256:
        _compress(st, tail, 128)
    return _state_digest(st)


def _check(data):
    if isinstance(data, str):
        raise TypeError("SHA-512 takes bytes, not str")


def sha512(data):
    """Return the 64-byte SHA-512 digest of a bytes-like object."""
    _check(data)
    st = _new_state()
    n = len(data)
    full = n - (n & 127)
    for off in range(0, full, 128):
        _compress(st, data, off)
    return _finish(st, memoryview(data)[full:n], n - full, n)


class SHA512:
    """Incremental SHA-512: update() any number of times, then digest() (which does not end it)."""

    digest_size = 64
    block_size = 128
    name = "sha512"

    def __init__(self, data=None):
        self._st = _new_state()
        self._buf = bytearray(128)  # pending bytes of the current block
        self._fill = 0
        self._total = 0
        if data is not None:
            self.update(data)

    def reset(self, data=None):
        """Start over (as a new object would, without allocating one)."""
        _reset_state(self._st)
        self._fill = 0
        self._total = 0
        if data is not None:
            self.update(data)

    def update(self, data):
        _check(data)
        n = len(data)
        if not n:
            return
        self._total += n
        buf = self._buf
        fill = self._fill
        pos = 0
        mv = memoryview(data)
        if fill:
            take = 128 - fill
            if take > n:
                take = n
            buf[fill:fill + take] = mv[0:take]
            fill += take
            pos = take
            if fill < 128:
                self._fill = fill
                return
            _compress(self._st, buf, 0)
        st = self._st
        while n - pos >= 128:
            _compress(st, data, pos)
            pos += 128
        fill = n - pos
        if fill:
            buf[0:fill] = mv[pos:n]
        self._fill = fill

    def digest(self):
        return _finish(_scratch_state(self._st), self._buf, self._fill, self._total)

    def hexdigest(self):
        return "".join("%02x" % x for x in self.digest())

    def copy(self):
        other = SHA512()
        other._st = _copy_state(self._st)
        other._buf[:] = self._buf
        other._fill = self._fill
        other._total = self._total
        return other
