"""Ed25519 signatures (RFC 8032, pure Ed25519) for the charger, on MicroPython and CPython.

    public_key(seed32) -> 32-byte public key
    sign(seed32, msg) -> 64-byte signature
    verify(public_key, msg, sig) -> bool

Built for MicroPython's interpreter, where each big-integer operation costs an allocation
and ~0.1-0.2 us of dispatch, so the cost is the number of Python-level operations:

* Fixed-base multiplication k*B (signing, and the [S]B half of verification) uses a signed
  comb (Lim-Lee comb with signed +-1 digits, as in Hamburg's "Fast and compact elliptic-curve
  cryptography"): the scalar is recoded so every bit is a +-1 digit, the 264 digits are cut
  into _TEETH rows of _SPAN columns, and the columns into _BLOCKS blocks of _COLS columns.
  Each block has a table of 2**(_TEETH-1) affine points (x+y, y-x, 2dxy) ("affine Niels");
  a column's digits pick one entry, its top digit the sign. k*B then costs _SPAN mixed
  additions (7 field multiplications) and _COLS - 1 doublings, instead of ~250 doublings and
  ~125 additions for double-and-add. The table (_BLOCKS * 2**(_TEETH-1) points) is computed
  from B at import; `table_bytes()` reports the bytes of its numbers.
* Sums and differences are never reduced on their own. In the comb, a product that only
  feeds sums is folded once (lo + 38*hi, 2**256 = 38 mod p, ~half the cost of `% p`); the
  coordinates it hands on are reduced mod p.
* Field inversion uses the extended Euclidean algorithm (divmod on big ints), far fewer
  interpreter steps than a 254-bit exponentiation.
* The expansion of the last seed (clamped scalar, nonce prefix and public key) is kept, so a
  charger that signs with its one key pays for it once: SHA-512 of the seed and a*B.
  `forget_key()` drops it.

Verification is cofactorless ([S]B == R + [k]A, compared as encodings) and strict: S must be
below L; A must be the canonical encoding (y < p, no "negative zero" x) of a curve point that is
not of small order; R must equal the canonical encoding of the computed point, which must not be
of small order. Any failure returns False. Signatures made by RFC 8032 signers (libsodium/PyNaCl,
this module) always pass; libsodium rejects these same malformed cases (it may accept some
R with an added small-order component, which this rejects).

Side channels: Python big-integer arithmetic is not constant-time (sizes of intermediate
numbers, table indices and the Euclidean inversion depend on secret data). Remote timing of a
charger over MQTT is far coarser than this, but the code is not hardened against an attacker
with physical access measuring power or timing of single signatures.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from sha512 import SHA512

_P = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED)  # 2**255 - 19
_D = const(0x52036CEE2B6FFE738CC740797779E89800700A4D4141D8AB75EB4DCA135978A3)  # -121665/121666
_D2 = const(0x2406D9DC56DFFCE7198E80F2EEF3D13000E0149A8283B156EBD69B9426B2F159)  # 2d
_L = const(0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED)  # group order
_SQRTM1 = const(0x2B8324804FC1DF0B2B4D00993DFBD7A72F431806AD2FE478C4EE1B274A0EA0B0)  # sqrt(-1)
_P58 = const(0x0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFD)  # (p - 5) / 8
_BX = const(0x216936D3CD6E53FEC0A4E231FDD6DC5C692CC7609525A7B2C9562D608F25D51A)
_BY = const(0x6666666666666666666666666666666666666666666666666666666666666658)
_Y_MASK = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)  # 2**255 - 1
_CLAMP = const(0x3FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF8)  # 2**254 - 8
_BIT254 = const(0x4000000000000000000000000000000000000000000000000000000000000000)
_M256 = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)  # 2**256 - 1 (2**256 = 38 mod p)

# Comb shape: _TEETH * _SPAN >= 254 digits, _SPAN = _BLOCKS * _COLS. _columns and _base_mul
# are unrolled for exactly this shape (6 teeth, 4 blocks of 11 columns).
_TEETH = const(6)
_BLOCKS = const(4)
_COLS = const(11)
_SPAN = const(44)  # _BLOCKS * _COLS
_HALF = const(32)  # 2 ** (_TEETH - 1) entries per block
_LOWMASK = const(31)  # _HALF - 1
_NDIGITS = const(264)  # _TEETH * _SPAN
_RECODE = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)  # 2**264 - 1

_SEED_LEN = const(32)
_KEY_LEN = const(32)
_SIG_LEN = const(64)


# ---------------------------------------------------------------- field and scalars


def _inv(x):
    """1/x mod p for x not divisible by p (extended Euclid)."""
    r0 = _P
    r1 = x % _P
    t0 = 0
    t1 = 1
    while r1:
        q, r = divmod(r0, r1)
        r0 = r1
        r1 = r
        t0, t1 = t1, t0 - q * t1
    if r0 != 1:
        raise ZeroDivisionError("no inverse of 0 mod p")
    return t0 % _P


def _le_int(b):
    return int.from_bytes(b, "little")


def _bytes_like(x, what):
    if not isinstance(x, (bytes, bytearray, memoryview)):
        raise TypeError(what + " must be bytes")


# ---------------------------------------------------------------- points
# Extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z, x*y = T/Z.


def _double(X, Y, Z):
    """2P from (X, Y, Z) of P; returns extended (X, Y, Z, T)."""
    xx = X * X % _P
    yy = Y * Y % _P
    zz2 = 2 * Z * Z % _P
    s = X + Y
    s = s * s % _P
    y1 = yy + xx
    z1 = yy - xx
    x1 = s - y1
    t1 = zz2 - z1
    return x1 * t1 % _P, y1 * z1 % _P, z1 * t1 % _P, x1 * y1 % _P


def _add(p, q):
    """P + Q, both extended; complete (works for P == Q and the identity)."""
    X1, Y1, Z1, T1 = p
    X2, Y2, Z2, T2 = q
    a = (Y1 - X1) * (Y2 - X2) % _P
    b = (Y1 + X1) * (Y2 + X2) % _P
    c = T1 * T2 % _P * _D2 % _P
    d = 2 * Z1 * Z2 % _P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _neg(p):
    X, Y, Z, T = p
    return (_P - X) % _P, Y, Z, (_P - T) % _P


def _is_identity(p):
    X, Y, Z, _ = p
    return X % _P == 0 and (Y - Z) % _P == 0


def _small_order(p):
    """True when 8P is the identity (P is one of the 8 points of small order)."""
    X, Y, Z, _ = p
    for _ in range(3):
        X, Y, Z, _t = _double(X, Y, Z)
    return _is_identity((X, Y, Z, 0))


def _encode(X, Y, Z):
    zi = _inv(Z)
    x = X * zi % _P
    y = Y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(s):
    """Point from a 32-byte encoding, or None when it is not the canonical encoding of a point."""
    y = _le_int(s)
    sign = y >> 255
    y &= _Y_MASK
    if y >= _P:
        return None
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    v3 = v * v % _P * v % _P
    x = u * v3 % _P * pow(u * v3 % _P * v3 % _P * v % _P, _P58, _P) % _P
    vxx = v * x % _P * x % _P
    if vxx != u:
        if vxx != _P - u:
            return None
        x = x * _SQRTM1 % _P
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x, y, 1, x * y % _P


# ---------------------------------------------------------------- fixed-base comb

_TABLE = None  # flat list: block b, entry u -> [3 * (b * _HALF + u)] = y+x, y-x, 2dxy


def _build_table():
    """Affine Niels points T_b[u] = sum_i s_i * 2**(i*_SPAN + b*_COLS) * B, s_i = +-1 from u."""
    # powers 2**(m*_COLS) * B for m < _TEETH * _BLOCKS: tooth i of block b is m = b + i*_BLOCKS
    pw = []
    pt = (_BX, _BY, 1, _BX * _BY % _P)
    for m in range(_TEETH * _BLOCKS):
        pw.append(pt)
        for _ in range(_COLS):
            pt = _double(pt[0], pt[1], pt[2])
    pts = []
    for b in range(_BLOCKS):
        teeth = [pw[b + i * _BLOCKS] for i in range(_TEETH)]
        first = teeth[_TEETH - 1]
        for i in range(_TEETH - 1):
            first = _add(first, _neg(teeth[i]))
        twice = [_double(t[0], t[1], t[2]) for t in teeth]
        block = [first]
        for u in range(1, _HALF):
            top = 0
            while (2 << top) <= u:
                top += 1
            block.append(_add(block[u - (1 << top)], twice[top]))
        pts.extend(block)
    # one inversion for all Z (Montgomery's trick)
    n = len(pts)
    acc = [1] * n
    run = 1
    for i in range(n):
        acc[i] = run
        run = run * pts[i][2] % _P
    run = _inv(run)
    tab = [0] * (3 * n)
    for i in range(n - 1, -1, -1):
        X, Y, Z, _ = pts[i]
        zi = run * acc[i] % _P
        run = run * Z % _P
        x = X * zi % _P
        y = Y * zi % _P
        # re-create each number from its 32 bytes so it holds no spare digits
        tab[3 * i] = _le_int(((y + x) % _P).to_bytes(32, "little"))
        tab[3 * i + 1] = _le_int(((y - x) % _P).to_bytes(32, "little"))
        tab[3 * i + 2] = _le_int((_D2 * x % _P * y % _P).to_bytes(32, "little"))
    return tab


def _digit_tables():
    """Lookup tables for _columns.

    _SPREAD[i * 16 + n]: the 4 bits of nibble n moved to bits i, i + _TEETH, i + 2*_TEETH,
    i + 3*_TEETH (tooth i of 4 neighbouring columns).
    _ENTRY[b * 64 + v]: for the _TEETH digits v of a column of block b, the table offset
    3*(b*_HALF + u) when the top digit is +1, else ~offset of the negated entry.
    _COLBASE[j]: 64 * (block of column j).
    """
    spread = []
    for i in range(_TEETH):
        for n in range(16):
            v = 0
            for r in range(4):
                if (n >> r) & 1:
                    v |= 1 << (r * _TEETH + i)
            spread.append(v)
    entry = []
    for b in range(_BLOCKS):
        base = 3 * _HALF * b
        for v in range(1 << _TEETH):
            if v >> (_TEETH - 1):
                entry.append(base + 3 * (v & _LOWMASK))
            else:
                entry.append(~(base + 3 * ((v & _LOWMASK) ^ _LOWMASK)))
    colbase = tuple(64 * (j // _COLS) for j in range(_SPAN))
    return tuple(spread), tuple(entry), colbase


_SPREAD, _ENTRY, _COLBASE = _digit_tables()


def _columns(k):
    """Signed comb digits of 0 <= k < L: entry j (column j = b*_COLS + c) is an _ENTRY value.

    Unrolled for the fixed shape: 6 teeth, 44 columns = 11 nibbles per row.
    """
    if not k & 1:
        k += _L  # odd, same point; < 2**254
    k = (k + _RECODE) >> 1  # bit j of k set <=> digit j is +1, else -1
    nib = []
    for x in k.to_bytes(_NDIGITS // 8, "little"):
        nib.append(x & 15)
        nib.append(x >> 4)
    sp = _SPREAD
    entry = _ENTRY
    colbase = _COLBASE
    out = []
    for q in range(_SPAN // 4):
        # nibble q of each of the 6 rows (rows are 11 nibbles apart): 4 columns x 6 digits
        acc = (
            sp[nib[q]]
            | sp[16 + nib[q + 11]]
            | sp[32 + nib[q + 22]]
            | sp[48 + nib[q + 33]]
            | sp[64 + nib[q + 44]]
            | sp[80 + nib[q + 55]]
        )
        j = 4 * q
        out.append(entry[colbase[j] + (acc & 63)])
        out.append(entry[colbase[j + 1] + ((acc >> 6) & 63)])
        out.append(entry[colbase[j + 2] + ((acc >> 12) & 63)])
        out.append(entry[colbase[j + 3] + (acc >> 18)])
    return out


def _base_mul(k):
    """k * B for 0 <= k < L, as extended (X, Y, Z, T).

    Column c of every block, for c = _COLS-1 down to 0, then a doubling. The additions are
    mixed additions with affine Niels points (7 multiplications); the three products that
    only feed sums are folded below 2**262 instead of reduced mod p.
    """
    tb = _TABLE
    cols = _columns(k)
    X = 0
    Y = 1
    Z = 1
    T = 0
    for c in range(_COLS - 1, -1, -1):
        # block 0
        j = cols[c]
        if j >= 0:
            yp = (Y + X) * tb[j]
            ym = (Y - X) * tb[j + 1]
            t = tb[j + 2] * T
        else:
            j = ~j
            yp = (Y + X) * tb[j + 1]
            ym = (Y - X) * tb[j]
            t = -tb[j + 2] * T
        yp = (yp & _M256) + 38 * (yp >> 256)
        ym = (ym & _M256) + 38 * (ym >> 256)
        t = (t & _M256) + 38 * (t >> 256)
        Z = Z + Z
        X = yp - ym
        Y = yp + ym
        ym = Z - t
        Z = Z + t
        T = X * Y % _P
        X = X * ym % _P
        Y = Y * Z % _P
        Z = Z * ym % _P
        # block 1
        j = cols[_COLS + c]
        if j >= 0:
            yp = (Y + X) * tb[j]
            ym = (Y - X) * tb[j + 1]
            t = tb[j + 2] * T
        else:
            j = ~j
            yp = (Y + X) * tb[j + 1]
            ym = (Y - X) * tb[j]
            t = -tb[j + 2] * T
        yp = (yp & _M256) + 38 * (yp >> 256)
        ym = (ym & _M256) + 38 * (ym >> 256)
        t = (t & _M256) + 38 * (t >> 256)
        Z = Z + Z
        X = yp - ym
        Y = yp + ym
        ym = Z - t
        Z = Z + t
        T = X * Y % _P
        X = X * ym % _P
        Y = Y * Z % _P
        Z = Z * ym % _P
        # block 2
        j = cols[2 * _COLS + c]
        if j >= 0:
            yp = (Y + X) * tb[j]
            ym = (Y - X) * tb[j + 1]
            t = tb[j + 2] * T
        else:
            j = ~j
            yp = (Y + X) * tb[j + 1]
            ym = (Y - X) * tb[j]
            t = -tb[j + 2] * T
        yp = (yp & _M256) + 38 * (yp >> 256)
        ym = (ym & _M256) + 38 * (ym >> 256)
        t = (t & _M256) + 38 * (t >> 256)
        Z = Z + Z
        X = yp - ym
        Y = yp + ym
        ym = Z - t
        Z = Z + t
        T = X * Y % _P
        X = X * ym % _P
        Y = Y * Z % _P
        Z = Z * ym % _P
        # block 3
        j = cols[3 * _COLS + c]
        if j >= 0:
            yp = (Y + X) * tb[j]
            ym = (Y - X) * tb[j + 1]
            t = tb[j + 2] * T
        else:
            j = ~j
            yp = (Y + X) * tb[j + 1]
            ym = (Y - X) * tb[j]
            t = -tb[j + 2] * T
        yp = (yp & _M256) + 38 * (yp >> 256)
        ym = (ym & _M256) + 38 * (ym >> 256)
        t = (t & _M256) + 38 * (t >> 256)
        Z = Z + Z
        X = yp - ym
        Y = yp + ym
        ym = Z - t
        Z = Z + t
        if not c:
            T = X * Y % _P
        X = X * ym % _P
        Y = Y * Z % _P
        Z = Z * ym % _P
        if c:
            # doubling (X, Y, Z) -> (X, Y, Z, T); the squares are only folded
            xx = X * X
            xx = (xx & _M256) + 38 * (xx >> 256)
            yy = Y * Y
            yy = (yy & _M256) + 38 * (yy >> 256)
            zz = Z * Z
            zz = (zz & _M256) + 38 * (zz >> 256)
            t = X + Y
            t = t * t
            t = (t & _M256) + 38 * (t >> 256)
            Y = yy + xx
            Z = yy - xx
            X = t - Y
            zz = zz + zz - Z
            T = X * Y % _P
            X = X * zz % _P
            Y = Y * Z % _P
            Z = Z * zz % _P
    return X, Y, Z, T


def table_bytes():
    """Bytes of the comb table's numbers (32 per coordinate, 3 per point)."""
    return 32 * len(_TABLE)


# ---------------------------------------------------------------- variable-base (verification)


def _var_mul(k, p):
    """k * P for 0 <= k < L and extended P: signed radix-16 digits, 8 cached multiples."""
    # cached form of 1P..8P: (Y+X, Y-X, 2Z, 2dT)
    multiples = []
    q = p
    for i in range(8):
        if i:
            q = _add(q, p)
        X, Y, Z, T = q
        multiples.append(((Y + X) % _P, (Y - X) % _P, 2 * Z % _P, T * _D2 % _P))
    # k = sum e_i 16**i with e_i in [-8, 8); k < L < 2**253 leaves no carry out of e_63
    digits = []
    carry = 0
    for i in range(64):
        e = ((k >> (4 * i)) & 15) + carry
        carry = (e + 8) >> 4
        digits.append(e - (carry << 4))
    X, Y, Z, T = 0, 1, 1, 0
    started = False
    for i in range(63, -1, -1):
        if started:
            for _ in range(4):
                xx = X * X % _P
                yy = Y * Y % _P
                zz = Z * Z % _P
                s = X + Y
                s = s * s % _P
                Y = yy + xx
                Z = yy - xx
                X = s - Y
                zz = zz + zz - Z
                T = X * Y % _P
                X = X * zz % _P
                Y = Y * Z % _P
                Z = Z * zz % _P
        e = digits[i]
        if e:
            started = True
            if e > 0:
                ypx, ymx, z2, t2 = multiples[e - 1]
            else:
                ymx, ypx, z2, t2 = multiples[-e - 1]
                t2 = -t2
            a = (Y - X) * ymx % _P
            b = (Y + X) * ypx % _P
            c = T * t2 % _P
            d = Z * z2 % _P
            X = b - a
            Y = b + a
            Z = d + c
            c = d - c
            T = X * Y % _P
            X = X * c % _P
            Y = Y * Z % _P
            Z = Z * c % _P
    return X, Y, Z, T


# ---------------------------------------------------------------- the API

_key = None  # (seed, a, prefix, public key) of the last seed used


def _expand(seed):
    global _key
    _bytes_like(seed, "seed")
    if len(seed) != _SEED_LEN:
        raise ValueError("Ed25519 seed must be 32 bytes")
    key = _key
    if key is not None and key[0] == seed:
        return key
    seed = bytes(seed)
    h = SHA512(seed).digest()
    a = (_le_int(h[0:32]) & _CLAMP) | _BIT254
    X, Y, Z, _ = _base_mul(a % _L)
    key = (seed, a, h[32:64], _encode(X, Y, Z))
    _key = key
    return key


def forget_key():
    """Drop the cached expansion of the last seed."""
    global _key
    _key = None


def public_key(seed):
    """The 32-byte public key of a 32-byte seed (RFC 8032 private key)."""
    return _expand(seed)[3]


def sign(seed, msg):
    """The 64-byte Ed25519 signature of msg (bytes) with the 32-byte seed."""
    _bytes_like(msg, "message")
    _, a, prefix, pk = _expand(seed)
    h = SHA512(prefix)
    h.update(msg)
    r = _le_int(h.digest()) % _L
    X, Y, Z, _ = _base_mul(r)
    R = _encode(X, Y, Z)
    h = SHA512(R)
    h.update(pk)
    h.update(msg)
    k = _le_int(h.digest()) % _L
    s = (r + k * a) % _L
    return R + s.to_bytes(32, "little")


def verify(public_key, msg, sig):
    """True when sig is a valid Ed25519 signature of msg under public_key, else False."""
    _bytes_like(public_key, "public key")
    _bytes_like(msg, "message")
    _bytes_like(sig, "signature")
    if len(public_key) != _KEY_LEN or len(sig) != _SIG_LEN:
        return False
    s = _le_int(sig[32:64])
    if s >= _L:
        return False
    A = _decode(public_key)
    if A is None or _small_order(A):
        return False
    R = bytes(sig[0:32])
    h = SHA512(R)
    h.update(public_key)
    h.update(msg)
    k = _le_int(h.digest()) % _L
    # R' = s*B - k*A
    sb = _base_mul(s)
    ka = _var_mul(k, _neg(A))
    rp = _add(sb, ka)
    if _encode(rp[0], rp[1], rp[2]) != R:
        return False
    return not _small_order(rp)


_TABLE = _build_table()
