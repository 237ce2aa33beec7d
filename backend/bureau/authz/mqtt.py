"""MQTT shell of authorization: answers chargers' requests (authorization replies signed by this
node) and publishes the signed offline list and tariff (retained). It reads its retained topics
back and writes again whatever it finds changed or erased there (RetainedGuard).

It has its own broker connection (clean session, so requests made while the node was down are
not answered minutes late) and its own threads, so a charger waiting at a card tap is never
queued behind a flood of receipts.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

import paho.mqtt.client as mqtt

from .. import topics
from ..brokerlink import BrokerLink
from ..supervisor import Supervisor
from . import wire
from .retained import RetainedGuard
from .service import AuthzService

log = logging.getLogger(__name__)



class AuthzMqtt(BrokerLink):
    def __init__(self, service: AuthzService, metrics, *, host: str, port: int, client_id: str,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 ca_file=None, supervisor: Supervisor | None = None) -> None:
        self.service, self.metrics = service, metrics
        supervisor = supervisor or Supervisor()
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._wake = threading.Event()
        self._republish = threading.Event()  # after (re)connect: the broker may have lost retained messages
        super().__init__(host=host, port=port, client_id=client_id, username=username, password=password,
                         clean_session=True, name="authorization", tls=tls, ca_file=ca_file,
                         threads=[supervisor.thread("authz-requests", self._work),
                                  supervisor.thread("authz-publisher", self._publisher)])
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.published_pages: int | None = None  # page topics in use on the broker; None: unknown
        self._last_list_key: tuple | None = None
        self._last_list_at = 0.0
        self._last_tariff: tuple[str, int] | None = None
        self.last_manifest: wire.Manifest | None = None  # the one last published
        self.retained = RetainedGuard()

    # ---- paho callbacks (network thread) -------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the authorization connection: %s", reason_code)
            return
        client.subscribe([(topics.every_charger(topics.AUTH), 1), (topics.LIST_ALL, 1), (topics.TARIFF, 1)])
        self.connected.set()
        self._republish.set()
        self._wake.set()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == topics.TARIFF or msg.topic.startswith(topics.LIST_PREFIX):
            if self.retained.seen(msg.topic, bytes(msg.payload)):
                self.metrics.inc("authz_retained_wrong", _retained_kind(msg.topic))
                self._wake.set()
            return
        charger = topics.charger_of(msg.topic, topics.AUTH)
        if charger is None:
            self.metrics.inc("auth_rejected", "bad_topic")
            return
        try:
            self._queue.put_nowait((charger, bytes(msg.payload)))
        except queue.Full:
            self.metrics.inc("auth_rejected", "busy")
            self.reply(charger, {"type": "auth", "req": None, "decision": "reject", "wallet_id": None,
                                 "authorized_fen": 0, "auth_ref": None, "reason": "busy",
                                 "detail": "too many requests waiting; try again"})

    # ---- requests (worker thread) ------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                charger, payload = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                reply = self.service.handle(charger, payload)
            except Exception as e:  # the database failed under us: say so, never promise, then fail the node
                self.metrics.inc("auth_rejected", "internal_error")
                self.reply(charger, {"type": "auth", "req": None, "decision": "reject", "wallet_id": None,
                                     "authorized_fen": 0, "auth_ref": None, "reason": "internal_error",
                                     "detail": str(e)[:200]})
                raise
            try:
                self.reply(charger, reply)
            except wire.WireError:  # a reply that cannot be signed is not sent: the charger times out
                log.exception("reply to %s could not be signed", charger)
                self.metrics.inc("auth_rejected", "unsignable_reply")

    def reply(self, charger_id: str, msg: dict) -> bool:
        """A reply to a charger's request: authorization decisions and release replies go out
        signed."""
        if msg.get("type") in ("auth", "release"):
            msg = self.service.signed(charger_id, msg)
        return self.publish_json(charger_id, msg)

    def publish_json(self, charger_id: str, msg: dict) -> bool:
        info = self.client.publish(topics.reply(charger_id), json.dumps(msg, separators=(",", ":")).encode(), qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def send_start(self, charger_id: str, command: dict) -> bool:
        """The phone start command to a charger; False when the broker is not reachable now."""
        return self.connected.is_set() and self.publish_json(charger_id, command)

    # ---- retained documents (publisher thread) -------------------------------------------

    def _publisher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if not self.connected.is_set():
                continue
            self.service.sweep()
            force = self._republish.is_set()
            self._republish.clear()
            self._publish_list(force)
            self._publish_tariff(force)
            self._restore_retained()

    def _publish_list(self, force: bool) -> None:
        s = self.service.settings
        now = time.monotonic()
        refresh = self.last_manifest is not None and \
            self.service.now() >= self.last_manifest.issued_at + s.list_ttl_s // 4
        changed = self.service.list_dirty.is_set() and now - self._last_list_at >= s.list_min_interval_s
        if not (force or refresh or changed):
            return
        self.service.list_dirty.clear()
        env, pages, manifest = self.service.build_list()
        key = tuple(h for _, h in manifest.pages)
        if not (force or refresh) and key == self._last_list_key:
            return  # the same limits as the list the chargers have
        for i, page in enumerate(pages):  # pages first: a charger that sees the manifest finds them
            self._retain(topics.list_page(i), page)
        self._retain(topics.LIST_MANIFEST, env)
        stale_to = self.published_pages if self.published_pages is not None else wire.MAX_PAGES
        for i in range(len(pages), stale_to):  # an empty retained message removes the old page
            self._retain(topics.list_page(i), b"")
        self.published_pages = len(pages)
        self.retained.own_family(topics.LIST_PREFIX)  # any other topic there was not put by this bureau
        self._last_list_key, self._last_list_at, self.last_manifest = key, now, manifest
        self.metrics.inc("authz_list_published")
        log.info("offline list v%d published: %d cards in %d pages", manifest.list_version, manifest.entries,
                 len(pages))

    def _publish_tariff(self, force: bool) -> None:
        if not (force or self.service.tariff_dirty.is_set()):
            return
        self.service.tariff_dirty.clear()
        found = self.service.tariff_push()
        if found is None:
            log.warning("no tariff %s on the chain to push", self.service.tariff_id)
            return
        ident, env = found
        if not force and ident == self._last_tariff:
            return
        self._retain(topics.TARIFF, env)
        self._last_tariff = ident
        self.metrics.inc("authz_tariff_published")

    def _retain(self, topic: str, payload: bytes) -> None:
        self.retained.published(topic, payload)
        self.client.publish(topic, payload, qos=1, retain=True)

    def _restore_retained(self) -> None:
        """What the broker holds on our retained topics but we did not publish: written again."""
        for topic, payload in self.retained.due(time.monotonic()):
            self.client.publish(topic, payload, qos=1, retain=True)
            self.metrics.inc("authz_retained_restored", _retained_kind(topic))
            log.warning("retained %s on the broker was changed or erased; published again", topic)

    # ---- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        self._wake.set()
        super().stop()


def _retained_kind(topic: str) -> str:
    if topic == topics.TARIFF:
        return "tariff"
    return "manifest" if topic == topics.LIST_MANIFEST else "page"
