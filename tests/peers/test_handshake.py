"""The version-3 handshake, pure: each proof is bound to its role, direction, chain, both
nonces and both ephemeral keys; the responder signs nothing before the initiator proved its key;
after login every frame is sealed under a key of its direction."""

import pytest
from nacl.signing import SigningKey

from nacl.public import PrivateKey

from bureau.peers.handshake import (CH_CONSENSUS, CH_TXS, MAX_HANDSHAKE_FRAME, ROLE_INITIATOR, ROLE_RESPONDER,
                                    FrameAuthError, FrameReader, Hello, HandshakeError, Initiator, Responder, frame,
                                    proof_message, transcript_hash)

KEYS = {name: SigningKey.generate() for name in ("a", "b", "c")}
PUB = {name: k.verify_key.encode() for name, k in KEYS.items()}


def _login(initiator="a", responder="b", chain="chain"):
    i = Initiator(chain, initiator, responder, KEYS[initiator], PUB)
    r = Responder(chain, responder, KEYS[responder], PUB)
    hello_r = r.on_hello(i.hello())
    proof_i = i.on_hello(hello_r)
    proof_r = r.on_proof(proof_i)
    session = i.on_proof(proof_r)
    return session, r, hello_r, proof_i, proof_r


def test_honest_login_names_the_initiator():
    _, r, *_ = _login()
    assert r.peer == "a"


def test_responder_hello_carries_no_signature_and_a_bad_proof_gets_none():
    i = Initiator("chain", "a", "b", KEYS["a"], PUB)
    r = Responder("chain", "b", KEYS["b"], PUB)
    reply = r.on_hello(i.hello())
    got = Hello.decode(reply)
    assert got == Hello(ROLE_RESPONDER, "chain", "b", "a", got.nonce, got.ephemeral)
    assert len(reply) == len(i.hello())  # ids, chain, a nonce and an ephemeral key: nothing signed
    with pytest.raises(HandshakeError):
        r.on_proof(bytes(64))
    assert r.peer is None


def test_a_responder_proof_is_no_initiator_proof():
    """Reflection: the proof a responder makes cannot stand in for the initiator's."""
    i = Initiator("chain", "a", "b", KEYS["a"], PUB)
    r = Responder("chain", "b", KEYS["b"], PUB)
    hello_i = i.hello()
    hello_r = r.on_hello(hello_i)
    th = transcript_hash(hello_i, hello_r)
    b_as_responder = KEYS["b"].sign(proof_message(ROLE_RESPONDER, th)).signature
    a_as_responder = KEYS["a"].sign(proof_message(ROLE_RESPONDER, th)).signature
    with pytest.raises(HandshakeError):
        r.on_proof(a_as_responder)
    with pytest.raises(HandshakeError):
        r.on_proof(b_as_responder)
    assert proof_message(ROLE_INITIATOR, th) != proof_message(ROLE_RESPONDER, th)


def test_a_proof_from_another_link_does_not_log_in():
    _, _, _, proof_i, _ = _login("a", "b")
    i2 = Initiator("chain", "a", "c", KEYS["a"], PUB)
    r2 = Responder("chain", "c", KEYS["c"], PUB)
    i2.on_hello(r2.on_hello(i2.hello()))
    with pytest.raises(HandshakeError):
        r2.on_proof(proof_i)  # a's proof for the link to b, relayed to c


def test_hello_meant_for_another_node_or_chain_is_refused():
    r = Responder("chain", "b", KEYS["b"], PUB)
    with pytest.raises(HandshakeError):
        r.on_hello(Initiator("chain", "a", "c", KEYS["a"], PUB).hello())
    with pytest.raises(HandshakeError):
        r.on_hello(Initiator("other", "a", "b", KEYS["a"], PUB).hello())
    with pytest.raises(HandshakeError):
        r.on_hello(Initiator("chain", "x", "b", KEYS["a"], PUB).hello())  # not in the genesis
    with pytest.raises(HandshakeError):
        r.on_hello(Responder("chain", "a", KEYS["a"], PUB).on_hello(  # a responder hello is no initiator hello
            Initiator("chain", "b", "a", KEYS["b"], PUB).hello()))


def test_initiator_refuses_an_answer_from_the_wrong_peer():
    i = Initiator("chain", "a", "b", KEYS["a"], PUB)
    c = Responder("chain", "c", KEYS["c"], PUB)
    with pytest.raises(HandshakeError):
        i.on_hello(c.on_hello(Initiator("chain", "a", "c", KEYS["a"], PUB).hello()))


def test_frames_before_login_are_small():
    r = FrameReader(MAX_HANDSHAKE_FRAME)
    assert r.feed(frame(0, bytes(MAX_HANDSHAKE_FRAME - 1))) == [bytes(MAX_HANDSHAKE_FRAME)]
    with pytest.raises(HandshakeError):
        r.feed((40 * 1024 * 1024).to_bytes(4, "big"))
    with pytest.raises(ValueError):
        Hello(ROLE_INITIATOR, "c" * 65, "a", "b", bytes(32), bytes(32)).encode()


def _sessions():
    session_i, r, *_ = _login()
    return session_i, r.session


def _wire(sealed: bytes) -> bytes:
    """The body a FrameReader takes off the wire for one sealed frame."""
    (body,) = FrameReader().feed(sealed)
    return body


def test_sealed_frames_open_in_order_on_the_other_side_only():
    i, r = _sessions()
    assert i.peer == "b" and r.peer == "a"
    frames = [i.outgoing.seal(CH_CONSENSUS, b"vote"), i.outgoing.seal(CH_TXS, b""), i.outgoing.seal(CH_CONSENSUS, bytes(70_000))]
    assert b"vote" not in frames[0]  # encrypted, not only authenticated
    assert [r.incoming.open(_wire(f)) for f in frames] == [(CH_CONSENSUS, b"vote"), (CH_TXS, b""),
                                                       (CH_CONSENSUS, bytes(70_000))]
    back = r.outgoing.seal(CH_CONSENSUS, b"vote")
    assert i.incoming.open(_wire(back)) == (CH_CONSENSUS, b"vote")
    assert back != frames[0]  # a key per direction


@pytest.mark.parametrize("tamper", ["flip", "replay", "reorder", "forge", "plain", "short", "reflect"])
def test_a_frame_altered_or_made_on_the_path_does_not_open(tamper):
    i, r = _sessions()
    a, b = i.outgoing.seal(CH_CONSENSUS, b"first"), i.outgoing.seal(CH_CONSENSUS, b"second")
    if tamper == "flip":
        body = bytearray(_wire(a))
        body[0] ^= 1
        bodies = [bytes(body)]
    elif tamper == "replay":
        assert r.incoming.open(_wire(a)) == (CH_CONSENSUS, b"first")
        bodies = [_wire(a)]
    elif tamper == "reorder":
        bodies = [_wire(b)]
    elif tamper == "forge":  # sealed by a caller with a key of its own
        other, _ = _sessions()
        bodies = [_wire(other.outgoing.seal(CH_CONSENSUS, b"first"))]
    elif tamper == "plain":  # a frame as it was before login, e.g. a SyncRequest
        bodies = [_wire(frame(CH_CONSENSUS, b"EVC1 sync request"))]
    elif tamper == "short":
        bodies = [bytes(5)]
    else:  # the receiver's own frame sent back to it
        bodies = [_wire(r.outgoing.seal(CH_CONSENSUS, b"first"))]
    with pytest.raises(FrameAuthError):
        for body in bodies:
            r.incoming.open(body)


def test_a_relay_that_swaps_in_its_own_ephemeral_key_breaks_the_proof():
    """The ephemeral keys are in the transcript both proofs sign: a relay cannot put in its
    own key to learn the link key and still pass the login on."""
    i = Initiator("chain", "a", "b", KEYS["a"], PUB)
    r = Responder("chain", "b", KEYS["b"], PUB)
    hello_i = Hello.decode(i.hello())
    mitm = PrivateKey.generate().public_key.encode()
    swapped = Hello(hello_i.role, hello_i.chain_id, hello_i.sender, hello_i.receiver, hello_i.nonce, mitm).encode()
    proof_i = i.on_hello(r.on_hello(swapped))
    with pytest.raises(HandshakeError):
        r.on_proof(proof_i)
    assert r.session is None


def test_a_low_order_ephemeral_key_is_refused():
    """Even from the key holder: X25519 with an all-zero key gives a shared secret of zeros."""
    hello_i = Hello.decode(Initiator("chain", "a", "b", KEYS["a"], PUB).hello())
    zero = Hello(hello_i.role, hello_i.chain_id, hello_i.sender, hello_i.receiver, hello_i.nonce, bytes(32)).encode()
    r = Responder("chain", "b", KEYS["b"], PUB)
    th = transcript_hash(zero, r.on_hello(zero))
    with pytest.raises(HandshakeError, match="low order"):
        r.on_proof(KEYS["a"].sign(proof_message(ROLE_INITIATOR, th)).signature)
    assert r.session is None
