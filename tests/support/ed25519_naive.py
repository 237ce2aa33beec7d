"""A straightforward Ed25519 signer: the baseline of `bench/firmware_sign.py` and a second
opinion in the tests. Nothing here is tuned.

It follows RFC 8032 section 5.1 literally: points in extended coordinates, one complete
addition formula used for doubling too, scalar multiplication by double-and-add over the bits
of the scalar, inversion by Fermat (x ** (p - 2)), and the public key recomputed for every
signature. It uses the firmware's pure-Python SHA-512 (firmware/core/sha512.py) and runs under
MicroPython as well as CPython (the benchmark runs this file's text under MicroPython).
"""

from sha512 import sha512

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def inverse(x):
    return pow(x, P - 2, P)


def recover_x(y, sign):
    """The x with x**2 = (y**2 - 1) / (d y**2 + 1) and x % 2 == sign, or None."""
    if y >= P:
        return None
    x2 = (y * y - 1) * inverse(D * y * y + 1) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


BASE_Y = 4 * inverse(5) % P
BASE_X = recover_x(BASE_Y, 0)
BASE = (BASE_X, BASE_Y, 1, BASE_X * BASE_Y % P)
IDENTITY = (0, 1, 1, 0)


def point_add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(k, point):
    result = IDENTITY
    while k > 0:
        if k & 1:
            result = point_add(result, point)
        point = point_add(point, point)
        k >>= 1
    return result


def point_encode(point):
    x, y, z, _ = point
    zi = inverse(z)
    x = x * zi % P
    y = y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def point_decode(data):
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def hash_int(data):
    return int.from_bytes(sha512(data), "little")


def expand(seed):
    h = sha512(seed)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed):
    a, _ = expand(seed)
    return point_encode(point_mul(a, BASE))


def sign(seed, msg):
    if len(seed) != 32:
        raise ValueError("seed must be 32 bytes")
    a, prefix = expand(seed)
    pk = point_encode(point_mul(a, BASE))
    r = hash_int(prefix + msg) % L
    R = point_encode(point_mul(r, BASE))
    k = hash_int(R + pk + msg) % L
    s = (r + k * a) % L
    return R + s.to_bytes(32, "little")


def verify(pk, msg, sig):
    """Cofactorless check [S]B == R + [k]A; no small-order rules (reference only)."""
    if len(pk) != 32 or len(sig) != 64:
        return False
    A = point_decode(pk)
    R = point_decode(sig[:32])
    if A is None or R is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    k = hash_int(sig[:32] + pk + msg) % L
    left = point_mul(s, BASE)
    right = point_add(R, point_mul(k, A))
    return point_encode(left) == point_encode(right)
