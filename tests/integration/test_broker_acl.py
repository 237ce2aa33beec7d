"""The broker every stack starts: no anonymous client, a client id is its user name (so nobody
takes over another's connection), and the ACL lets each login reach only its own topics. These
brokers speak TLS only, as the one of `just up` and production do: every client here verifies
the broker's certificate against the CA."""

import queue
import time

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from bureau.tools.mosquitto import Mosquitto
from bureau.tools.pki import TlsFiles, issue_server_cert, make_ca

ACCEPTED = 0


@pytest.fixture(scope="module")
def broker_tls(tmp_path_factory):
    pki = tmp_path_factory.mktemp("pki")
    make_ca(pki / "ca.crt", pki / "ca.key", "test CA")
    issue_server_cert(pki / "ca.crt", pki / "ca.key", pki / "server.crt", pki / "server.key", "test broker",
                      ["127.0.0.1"])
    return TlsFiles(pki / "ca.crt", pki / "server.crt", pki / "server.key")


@pytest.fixture
def mosquitto(tmp_path, broker_tls):
    with Mosquitto(workdir=tmp_path / "broker", tls=broker_tls) as broker:
        yield broker


def _client(broker, login, inbox=None, client_id=None):
    """A paho client logged in as `login` (None: anonymous) over TLS; returns it and its CONNACK."""
    port = broker.port
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or (login[0] if login else "anon"))
    c.tls_set(ca_certs=str(broker.ca_file))
    if login:
        c.username_pw_set(*login)
    if inbox is not None:
        c.on_message = lambda cl, u, m: inbox.put((m.topic, m.payload, m.retain))
    result: queue.Queue = queue.Queue()
    c.on_connect = lambda cl, u, f, rc, p: result.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, result.get(timeout=5)


def _subscribed(c, topic):
    done: queue.Queue = queue.Queue()
    c.on_subscribe = lambda *a: done.put(True)
    c.subscribe(topic, qos=1)
    done.get(timeout=5)


def _close(*clients):
    for c in clients:
        c.loop_stop()
        c.disconnect()


def test_anonymous_and_wrong_password_are_refused(mosquitto):
    c, rc = _client(mosquitto, None)
    _close(c)
    assert rc.is_failure
    user, password = mosquitto.login("CH-A")
    assert mosquitto.connack(user, "wrong") != ACCEPTED
    assert mosquitto.connack(user, password) == ACCEPTED


def test_chargers_reach_only_their_own_topics(mosquitto):
    ingest_inbox: queue.Queue = queue.Queue()
    user, password = mosquitto.login_bureau("bureau-1")
    ingest, rc = _client(mosquitto, (f"{user}.ingest", password), ingest_inbox)
    assert not rc.is_failure
    _subscribed(ingest, "ev/v1/charger/+/receipt")
    b_inbox: queue.Queue = queue.Queue()
    b, _ = _client(mosquitto, mosquitto.login("CH-B"), b_inbox)
    _subscribed(b, "ev/v1/charger/CH-B/reply")
    a_inbox: queue.Queue = queue.Queue()
    a, rc = _client(mosquitto, mosquitto.login("CH-A"), a_inbox)
    assert not rc.is_failure
    _subscribed(a, "ev/v1/charger/+/reply")  # wants everyone's replies; gets only its own
    a.publish("ev/v1/charger/CH-B/receipt", b"forged as B", qos=1).wait_for_publish(5)
    a.publish("ev/v1/charger/CH-B/reply", b"forged ack for B", qos=1).wait_for_publish(5)
    a.publish("ev/v1/charger/CH-A/receipt", b"own", qos=1).wait_for_publish(5)
    assert ingest_inbox.get(timeout=5) == ("ev/v1/charger/CH-A/receipt", b"own", False)
    ingest.publish("ev/v1/charger/CH-B/reply", b"for B", qos=1).wait_for_publish(5)
    ingest.publish("ev/v1/charger/CH-A/reply", b"for A", qos=1).wait_for_publish(5)
    assert a_inbox.get(timeout=5) == ("ev/v1/charger/CH-A/reply", b"for A", False)
    assert b_inbox.get(timeout=5) == ("ev/v1/charger/CH-B/reply", b"for B", False)
    time.sleep(0.3)
    assert ingest_inbox.empty() and a_inbox.empty() and b_inbox.empty()
    _close(a, b, ingest)


def test_a_bureaus_ingest_link_reads_every_chargers_status_and_writes_none(mosquitto):
    """Chargers online (a node metric) come from the retained status and last will; the link
    that reads them cannot forge them."""
    user, password = mosquitto.login_bureau("bureau-1")
    charger, _ = _client(mosquitto, mosquitto.login("CH-A"))
    charger.publish("ev/v1/charger/CH-A/status", b"online", qos=1, retain=True).wait_for_publish(5)
    inbox: queue.Queue = queue.Queue()
    ingest, _ = _client(mosquitto, (f"{user}.ingest", password), inbox)
    _subscribed(ingest, "ev/v1/charger/+/status")
    assert inbox.get(timeout=5) == ("ev/v1/charger/CH-A/status", b"online", True)
    ingest.publish("ev/v1/charger/CH-A/status", b"forged offline", qos=1, retain=True).wait_for_publish(5)
    seen: queue.Queue = queue.Queue()
    reader, _ = _client(mosquitto, mosquitto.login("tech", "operator"), seen)
    _subscribed(reader, "ev/v1/charger/+/status")
    assert seen.get(timeout=5) == ("ev/v1/charger/CH-A/status", b"online", True)
    time.sleep(0.3)
    assert inbox.empty() and seen.empty()
    _close(charger, ingest, reader)


def test_only_the_authorization_link_writes_the_retained_list_and_tariff(mosquitto):
    user, password = mosquitto.login_bureau("bureau-1")
    authz, _ = _client(mosquitto, (f"{user}.authz", password))
    authz.publish("ev/v1/bureau/tariff", b"signed tariff", qos=1, retain=True).wait_for_publish(5)
    authz.publish("ev/v1/bureau/authlist/manifest", b"signed manifest", qos=1, retain=True).wait_for_publish(5)
    attackers = [_client(mosquitto, login)[0] for login in
                 (mosquitto.login("CH-A"), (f"{user}.ingest", password), mosquitto.login("sim", "fleet"))]
    for c in attackers:
        c.publish("ev/v1/bureau/tariff", b"", qos=1, retain=True).wait_for_publish(5)
        c.publish("ev/v1/bureau/authlist/manifest", b"forged", qos=1, retain=True).wait_for_publish(5)
    inbox: queue.Queue = queue.Queue()
    reader, _ = _client(mosquitto, mosquitto.login("CH-B"), inbox)
    _subscribed(reader, "ev/v1/bureau/#")
    got = {inbox.get(timeout=5)[:2] for _ in range(2)}
    assert got == {("ev/v1/bureau/tariff", b"signed tariff"), ("ev/v1/bureau/authlist/manifest", b"signed manifest")}
    _close(reader, authz, *attackers)


def test_no_login_publishes_a_command_to_a_charger(mosquitto):
    # remote stops are unsigned because nobody may send them (docs/broker.md, "Commands")
    inbox: queue.Queue = queue.Queue()
    charger, _ = _client(mosquitto, mosquitto.login("CH-A"), inbox)
    granted: queue.Queue = queue.Queue()
    charger.on_subscribe = lambda cl, u, mid, codes, p: granted.put([c.is_failure for c in codes])
    charger.subscribe([("ev/v1/charger/CH-A/cmd", 1), ("ev/v1/charger/CH-A/reply", 1)])
    assert granted.get(timeout=5) == [False, False]
    user, password = mosquitto.login_bureau("bureau-1")
    ingest, _ = _client(mosquitto, (f"{user}.ingest", password))
    others = [_client(mosquitto, login)[0] for login in
              (mosquitto.login("CH-B"), (f"{user}.authz", password), mosquitto.login("sim", "fleet"),
               mosquitto.login("ops", "operator"))]
    stop = b'{"v":1,"type":"stop","session_id":"00112233445566778899aabbccddeeff"}'
    for c in [charger, ingest, *others]:
        c.publish("ev/v1/charger/CH-A/cmd", stop, qos=1).wait_for_publish(5)
    ingest.publish("ev/v1/charger/CH-A/reply", b"after the stops", qos=1).wait_for_publish(5)
    assert inbox.get(timeout=5)[:2] == ("ev/v1/charger/CH-A/reply", b"after the stops")
    time.sleep(0.3)
    assert inbox.empty()
    _close(charger, ingest, *others)


def test_a_client_id_cannot_be_taken_over(mosquitto):
    """Connecting with a bureau's client id under another login gets that login's own id: the
    bureau's connection stays up."""
    user, password = mosquitto.login_bureau("bureau-1")
    inbox: queue.Queue = queue.Queue()
    ingest, _ = _client(mosquitto, (f"{user}.ingest", password), inbox)
    _subscribed(ingest, "ev/v1/charger/+/receipt")
    dropped: queue.Queue = queue.Queue()
    ingest.on_disconnect = lambda *a: dropped.put(True)
    thief, rc = _client(mosquitto, mosquitto.login("CH-A"), client_id=f"{user}.ingest")
    assert not rc.is_failure
    thief.publish("ev/v1/charger/CH-A/receipt", b"still here", qos=1).wait_for_publish(5)
    assert inbox.get(timeout=5)[:2] == ("ev/v1/charger/CH-A/receipt", b"still here")
    assert dropped.empty() and ingest.is_connected()
    _close(thief, ingest)


def test_a_login_made_while_the_broker_runs_works_without_a_restart(mosquitto):
    pid = mosquitto.proc.pid
    user, password = mosquitto.login("CH-LATE")  # written, then SIGHUP; returns once accepted
    c, rc = _client(mosquitto, (user, password))
    assert not rc.is_failure and mosquitto.proc.pid == pid
    _close(c)


def test_logins_survive_a_restart_of_the_stack_directory(tmp_path, broker_tls):
    with Mosquitto(workdir=tmp_path / "broker", tls=broker_tls) as first:
        login = first.login("CH-A")
        bureau = first.login_bureau("bureau-1")
    with Mosquitto(workdir=tmp_path / "broker", tls=broker_tls) as again:
        assert again.login("CH-A") == login and again.login_bureau("bureau-1") == bureau
        assert again.connack(*login) == ACCEPTED
    for f in ("passwd", "acl", "credentials.json"):
        assert (tmp_path / "broker" / "access" / f).stat().st_mode & 0o777 == 0o600


def test_a_charger_id_must_be_a_valid_id_and_cannot_be_a_bureau_login(mosquitto):
    mosquitto.login_bureau("bureau-1")
    for bad in ("CH/A", "CH+", "#", "", "x" * 33):
        with pytest.raises(ValueError):
            mosquitto.login(bad)
    with pytest.raises(ValueError, match="already exists as ingest"):
        mosquitto.login("bureau-1.ingest")


# ---- a bureau node on the broker -------------------------------------------------------

def _enrolled_receipts(bureau, n):
    from tests.integration.test_bureau_node import _receipt, _setup
    from bureau.receipts.codec import seal
    charger = SigningKey.generate()
    _setup(bureau, charger, SigningKey.generate())
    return [seal(_receipt(seq), charger) for seq in range(1, n + 1)]


def _acked(replies, env, timeout=10.0):
    from bureau.receipts.codec import receipt_id
    replies.publish("ev/v1/charger/GZ-TH-0001/receipt", env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, msg = replies.next(timeout)
        if msg.get("type") == "ack" and msg["receipt"] == receipt_id(env):
            return True
    return False


def test_a_bureaus_client_id_cannot_be_taken_over(bureau, replies, mosquitto):
    envs = _enrolled_receipts(bureau, 4)
    assert _acked(replies, envs[0])
    ingest, authz = bureau.node.ingest, bureau.node.authz.shell
    # a charger's valid login, asking for each of the bureau's client ids (and the old ones)
    thieves = [_client(mosquitto, mosquitto.login("CH-THIEF"), client_id=cid)[0]
               for cid in ("bureau-1.ingest", "bureau-1.authz", "bureau-bureau-1", "bureau-bureau-1-authz")]
    c, rc = _client(mosquitto, ("bureau-1.ingest", "guessed"))
    assert rc.is_failure  # and nobody logs in as the bureau without its password
    _close(c)
    for env in envs[1:]:
        assert _acked(replies, env)  # the bureau keeps receiving and committing
    assert ingest.disconnects == 0 and authz.disconnects == 0
    assert ingest.connected.is_set() and authz.connected.is_set()
    assert bureau.node.metrics.get("admitted") == 4
    _close(*thieves)


def _retained_now(broker, login, settle_s=0.5) -> dict:
    """What the broker holds on the bureau's retained topics, as a newly subscribed charger sees it."""
    inbox: queue.Queue = queue.Queue()
    c, _ = _client(broker, login, inbox)
    _subscribed(c, "ev/v1/bureau/#")
    held = {}
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        try:
            topic, payload, retained = inbox.get(timeout=0.05)
        except queue.Empty:
            continue
        if retained:
            held[topic] = payload
    _close(c)
    return held


def _until(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_the_bureau_restores_its_retained_list_and_tariff(bureau, mosquitto):
    reader = mosquitto.login("CH-READER")
    genuine = _until(lambda: (held := _retained_now(mosquitto, reader)).keys() >= {
        "ev/v1/bureau/tariff", "ev/v1/bureau/authlist/manifest"} and held)
    # what can still write there: a stolen bureau login, or a broker run without the ACL
    intruder, _ = _client(mosquitto, mosquitto.login("intruder.authz", "authz"))
    attacks = [("ev/v1/bureau/tariff", b""),  # erased
               ("ev/v1/bureau/authlist/manifest", b"forged manifest"),  # overwritten
               ("ev/v1/bureau/authlist/page/7", b"planted page")]  # a page the bureau never published
    for topic, payload in attacks:
        intruder.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    _until(lambda: _retained_now(mosquitto, reader) == genuine)
    metrics = bureau.node.metrics
    assert {k: metrics.get("authz_retained_restored", k) for k in ("tariff", "manifest", "page")} == \
        {"tariff": 1, "manifest": 1, "page": 1}

    # overwritten in a loop: put right again each time, at most once a second per topic
    started = time.monotonic()
    while time.monotonic() - started < 3:
        intruder.publish("ev/v1/bureau/tariff", b"forged tariff", qos=1, retain=True).wait_for_publish(5)
        time.sleep(0.02)
    _close(intruder)
    _until(lambda: _retained_now(mosquitto, reader) == genuine)
    restored = metrics.get("authz_retained_restored", "tariff") - 1
    assert 1 <= restored <= 5 and metrics.get("authz_retained_wrong", "tariff") > restored
