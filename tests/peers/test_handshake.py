"""The version-2 handshake, pure: each proof is bound to its role, direction, chain and both
nonces; the responder signs nothing before the initiator proved its key."""

import pytest
from nacl.signing import SigningKey

from bureau.peers.handshake import (MAX_HANDSHAKE_FRAME, ROLE_INITIATOR, ROLE_RESPONDER, FrameReader, Hello,
                                    HandshakeError, Initiator, Responder, frame, proof_message, transcript_hash)

KEYS = {name: SigningKey.generate() for name in ("a", "b", "c")}
PUB = {name: k.verify_key.encode() for name, k in KEYS.items()}


def _login(initiator="a", responder="b", chain="chain"):
    i = Initiator(chain, initiator, responder, KEYS[initiator], PUB)
    r = Responder(chain, responder, KEYS[responder], PUB)
    hello_r = r.on_hello(i.hello())
    proof_i = i.on_hello(hello_r)
    proof_r = r.on_proof(proof_i)
    i.on_proof(proof_r)
    return i, r, hello_r, proof_i, proof_r


def test_honest_login_names_the_initiator():
    _, r, *_ = _login()
    assert r.peer == "a"


def test_responder_hello_carries_no_signature_and_a_bad_proof_gets_none():
    i = Initiator("chain", "a", "b", KEYS["a"], PUB)
    r = Responder("chain", "b", KEYS["b"], PUB)
    reply = r.on_hello(i.hello())
    assert Hello.decode(reply) == Hello(ROLE_RESPONDER, "chain", "b", "a", Hello.decode(reply).nonce)
    assert len(reply) == len(i.hello())  # ids, chain and a nonce: nothing signed
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
    assert r.feed(frame(0, bytes(MAX_HANDSHAKE_FRAME - 1))) == [(0, bytes(MAX_HANDSHAKE_FRAME - 1))]
    with pytest.raises(HandshakeError):
        r.feed((40 * 1024 * 1024).to_bytes(4, "big"))
    with pytest.raises(ValueError):
        Hello(ROLE_INITIATOR, "c" * 65, "a", "b", bytes(32)).encode()
