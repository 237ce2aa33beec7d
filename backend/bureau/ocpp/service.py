"""The node's CSMS: a WSS listener for OCPP 1.6J and 2.0.1 charge points (security profile 2:
TLS with the API's certificate, HTTP Basic with the password whose digest the enrollment put on
chain), run on an asyncio loop of its own thread. docs/ocpp.md.

Bounded: frames above `max_message_bytes` close the connection (1009), more than
`max_connections` are refused at the upgrade (503), a connection sending faster than
`rate_per_s` is closed (1008); an unknown charge point, a wrong password, a user name other than
the identity in the path, or a subprotocol other than the enrolled one are refused at the
upgrade (401 / 400) before any OCPP message is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import ssl
import threading
import time
from http import HTTPStatus

from ocpp.exceptions import InternalError
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from ..ledger.tx import ID_RE, tx_hash
from ..ingest.mempool import MempoolFull
from . import password
from .core import BillOutcome, CsmsCore, Transaction
from .store import TransactionStore
from .station import RateLimited, LimitedConnection
from .v16 import Station16
from .v201 import Station201

log = logging.getLogger(__name__)
STATIONS = {"ocpp1.6": Station16, "ocpp2.0.1": Station201}
CALL_TIMEOUT_S = 15
SCRYPT_AT_ONCE = 2  # password checks running at once (the machine's cores, not more)
PASSED_KEPT = 10_000
SWEEP_S = 30  # how often unused Authorize holds are looked for


class CsmsUnavailable(Exception):
    """The charge point is not connected to this node (or did not answer): reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def identity_of(path: str) -> str | None:
    """The charge point identity: the last segment of the URL path (…/ocpp/<identity>)."""
    ident = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return ident if ID_RE.match(ident) else None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, sep, pw = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, pw) if sep else None


class Csms:
    def __init__(self, node) -> None:
        self.node = node
        self.settings = node.settings.ocpp
        self.chain, self.mempool, self.metrics = node.chain, node.mempool, node.metrics
        service = node.authz.service
        self.core = CsmsCore(node.settings.node_id, node.chain, service, node.key, service.tariff_id,
                             TransactionStore(node.repo.engine))
        self.enabled = bool(self.settings.port)
        self.stations: dict[str, object] = {}  # identity -> the station of its live connection
        self.status: dict[str, dict] = {}  # identity -> connector -> last StatusNotification
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._passed: set[tuple[str, bytes, str]] = set()  # (identity, HMAC of a password that passed, digest)
        self._memo_key = secrets.token_bytes(32)
        self._tasks: set[asyncio.Task] = set()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None  # the port bound (the setting's)
        self.chain.on_commit(self._on_commit)

    def now(self) -> int:
        return int(time.time())

    # ---- the listener --------------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        http = self.node.settings.http
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profile 2: TLS 1.2 or later
        ctx.load_cert_chain(http.tls_cert_file, http.tls_key_file)
        return ctx

    def start(self) -> None:
        if not self.enabled:
            return
        self._thread = self.node.supervisor.thread("ocpp", self._run)
        self._thread.start()
        self._ready.wait(60)
        if self.port is None:
            raise RuntimeError(f"the OCPP listener did not start: {self.node.supervisor.reason or 'timed out'}")

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._scrypt_slots = asyncio.Semaphore(SCRYPT_AT_ONCE)
        s = self.settings
        async with serve(self._handle, s.host, s.port, ssl=self._tls(), process_request=self._upgrade,
                         select_subprotocol=self._subprotocol, subprotocols=list(STATIONS), compression=None,
                         max_size=s.max_message_bytes, max_queue=4) as server:
            self.port = server.sockets[0].getsockname()[1]
            log.info("OCPP listener on %s:%d", s.host, self.port)
            self._ready.set()
            self.spawn(self._sweep())
            await self._stop.wait()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            await asyncio.get_running_loop().run_in_executor(None, self.core.expire_pending, self.now())

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _refuse(self, connection, status: HTTPStatus, reason: str, detail: str):
        self.metrics.inc("ocpp_refused", reason)
        log.info("OCPP upgrade refused: %s: %s", reason, detail, extra={"event": "ocpp_refused", "reason": reason})
        return connection.respond(status, f"{reason}: {detail}\n")

    async def _upgrade(self, connection, request):
        """The HTTP upgrade's checks: capacity, identity, password, subprotocol."""
        if len(self.stations) >= self.settings.max_connections:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "busy",
                                f"{self.settings.max_connections} charge points connected")
        ident = identity_of(request.path)
        cp = self.chain.state.ocpp_chargers.get(ident) if ident else None
        creds = basic_credentials(request.headers.get("Authorization"))
        refused = (HTTPStatus.UNAUTHORIZED, "unauthorized", "unknown charge point or wrong password")
        if cp is None or ident in self.chain.state.retired or creds is None or creds[0] != ident:
            return self._refuse(connection, *refused)
        if not await self._password_ok(ident, creds[1], cp.password_digest):
            return self._refuse(connection, *refused)
        offered = [p.strip() for h in request.headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]
        if "ocpp" + cp.ocpp_version not in offered:
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, "subprotocol",
                                f"{ident} is enrolled for ocpp{cp.ocpp_version}; offered {offered}")
        return None

    async def _password_ok(self, ident: str, given: str, digest: str) -> bool:
        """scrypt costs tens of ms of CPU by design: a password that passed is remembered (its HMAC
        under a key of this process, per identity and digest) for the reconnects, and at most SCRYPT_AT_ONCE checks
        run at a time, so a flood of wrong passwords queues (and times out its handshakes)
        instead of taking the node's CPU."""
        seen = (ident, hmac.new(self._memo_key, given.encode(), hashlib.sha256).digest(), digest)
        if seen in self._passed:
            return True
        async with self._scrypt_slots:
            ok = await asyncio.get_running_loop().run_in_executor(None, password.check, given, digest)
        if ok:
            if len(self._passed) >= PASSED_KEPT:
                self._passed.clear()
            self._passed.add(seen)
        return ok

    def _subprotocol(self, connection, subprotocols):
        cp = self.chain.state.ocpp_chargers.get(identity_of(connection.request.path) or "")
        want = "ocpp" + cp.ocpp_version if cp else None
        return want if want in subprotocols else None

    async def _handle(self, ws) -> None:
        ident = identity_of(ws.request.path)
        station = STATIONS[ws.subprotocol](ident, LimitedConnection(ws, self.settings.rate_per_s), self)
        old = self.stations.get(ident)
        self.stations[ident] = station
        if old is not None:  # the charge point reconnected: its new connection takes over
            self.spawn(old._connection.ws.close(1000, "replaced by a new connection"))
        try:
            await station.start()
        except RateLimited as e:
            self.metrics.inc("ocpp_refused", "rate_limited")
            await ws.close(1008, str(e))
        except ConnectionClosed:
            pass
        finally:
            if self.stations.get(ident) is station:
                del self.stations[ident]

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- bills ---------------------------------------------------------------------------

    async def bill(self, t: Transaction, outcome: BillOutcome) -> None:
        """Commit the bill of a stop before the stop is answered: the charge point resends a stop
        it got no answer to (or an InternalError for), and the resend finds the bill on chain."""
        if outcome.committed:
            return
        if outcome.tx is None:  # refused by the ledger's rules: no resend can change that
            self.metrics.inc("ocpp_bill_refused", outcome.reason)
            return
        h = tx_hash(outcome.tx)
        future = self.loop.create_future()
        self._waiters.setdefault(h, []).append(future)
        try:
            self.mempool.add(h, outcome.tx, verified=True)
        except MempoolFull:
            raise InternalError(details={"cause": "the bureau is busy; send the stop again"}) from None
        if (t.charger_id, t.transaction_id) in self.chain.state.ocpp_bills:
            return
        try:
            await asyncio.wait_for(future, self.settings.commit_wait_s)
        except asyncio.TimeoutError:
            raise InternalError(details={"cause": "the bill is not committed yet; send the stop again"}) from None
        finally:
            waiting = self._waiters.get(h, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(h, None)

    def _on_commit(self, block, ex) -> None:
        billed = [e for e in ex.effects if e.kind == "ocpp_bill"]
        for e in billed:
            self.metrics.inc("ocpp_bills", "ocmf" if e.detail["verified_by"] == "ocmf" else "bureau")
        if self.loop is None:
            return
        if ex.ocpp_passwords:  # a connection logged in with the old password ends: it must log in anew
            self.loop.call_soon_threadsafe(self._drop, sorted(ex.ocpp_passwords))
        if billed:
            self.loop.call_soon_threadsafe(self._resolve, [e.tx_hash for e in billed])

    def _drop(self, idents: list[str]) -> None:
        for ident in idents:
            station = self.stations.get(ident)
            if station is not None:
                self.spawn(station._connection.ws.close(1008, "password changed"))

    def _resolve(self, hashes: list[bytes]) -> None:
        for h in hashes:
            for f in self._waiters.pop(h, []):
                if not f.done():
                    f.set_result(True)

    # ---- what the handlers report ----------------------------------------------------------

    def note_status(self, ident: str, connector, status: str, error_code: str | None) -> None:
        self.status.setdefault(ident, {})[str(connector)] = {"status": status, "error_code": error_code,
                                                              "time": self.now()}

    def note_unknown_stop(self, ident: str, transaction_id: str) -> None:
        if (ident, transaction_id) not in self.chain.state.ocpp_bills:
            self.metrics.inc("ocpp_unknown_stop")
            log.warning("OCPP stop of %s transaction %s: not running here and not billed", ident, transaction_id,
                        extra={"event": "ocpp_unknown_stop"})

    async def send_local_list(self, station) -> None:
        """The cards of the signed offline list (authz), as the charge point's local list."""
        height, entries = self.node.authz.service.list_entries()
        try:
            await station.send_list(max(1, height), [e.uid for e in entries])
        except Exception as e:  # a charge point without a local list says NotSupported / NotImplemented
            log.info("OCPP local list to %s not taken: %s", station.id, e)

    # ---- requests from other threads (API, operator) ------------------------------------------

    def request(self, ident: str, name: str, *args):
        """Run the station's request `name` (remote_start, reset, change_availability) from
        another thread; its status text, or CsmsUnavailable."""
        station = self.stations.get(ident) if self.loop is not None else None
        if station is None:
            raise CsmsUnavailable("charger_unreachable", f"charge point {ident} is not connected to this bureau")
        fut = asyncio.run_coroutine_threadsafe(getattr(station, name)(*args), self.loop)
        try:
            return fut.result(CALL_TIMEOUT_S)
        except Exception as e:
            fut.cancel()
            raise CsmsUnavailable("charger_unreachable", f"charge point {ident} did not answer: {e!r}") from None
