"""OCPP charge points simulated by the `ocpp` library itself, over real websockets (WSS with the
network's CA, HTTP Basic), for the CSMS tests. Each runs on the caller's asyncio loop."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from contextlib import asynccontextmanager

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16, call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201, call_result as result201
from websockets.asyncio.client import connect


def iso(unix_s: int) -> str:
    return datetime.datetime.fromtimestamp(unix_s, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Recorder:
    """What the CSMS asked of the charge point."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.event = asyncio.Event()

    def note(self, action: str, **payload) -> None:
        self.requests.append((action, payload))
        self.event.set()

    async def wait_for(self, action: str, timeout: float = 30.0) -> dict:
        async def seen():
            while True:
                for a, p in self.requests:
                    if a == action:
                        return p
                self.event.clear()
                await self.event.wait()
        return await asyncio.wait_for(seen(), timeout)


class Sim16(ChargePoint16):
    def __init__(self, ident, ws) -> None:
        super().__init__(ident, ws)
        self.seen = Recorder()

    @on("SendLocalList")
    def on_list(self, list_version, update_type, local_authorization_list=None):
        self.seen.note("SendLocalList", list_version=list_version, entries=local_authorization_list or [])
        return result16.SendLocalList(status="Accepted")

    @on("RemoteStartTransaction")
    def on_remote_start(self, id_tag, connector_id=None, **_):
        self.seen.note("RemoteStartTransaction", id_tag=id_tag)
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id):
        self.seen.note("RemoteStopTransaction", transaction_id=transaction_id)
        return result16.RemoteStopTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type):
        self.seen.note("Reset", type=type)
        return result16.Reset(status="Accepted")

    @on("ChangeAvailability")
    def on_availability(self, connector_id, type):
        self.seen.note("ChangeAvailability", connector_id=connector_id, type=type)
        return result16.ChangeAvailability(status="Accepted")


class Sim201(ChargePoint201):
    def __init__(self, ident, ws) -> None:
        super().__init__(ident, ws)
        self.seen = Recorder()

    @on("SendLocalList")
    def on_list(self, version_number, update_type, local_authorization_list=None):
        self.seen.note("SendLocalList", list_version=version_number, entries=local_authorization_list or [])
        return result201.SendLocalList(status="Accepted")

    @on("RequestStartTransaction")
    def on_remote_start(self, id_token, remote_start_id, **_):
        self.seen.note("RequestStartTransaction", id_tag=id_token["id_token"])
        return result201.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    def on_remote_stop(self, transaction_id):
        self.seen.note("RequestStopTransaction", transaction_id=transaction_id)
        return result201.RequestStopTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type, **_):
        self.seen.note("Reset", type=type)
        return result201.Reset(status="Accepted")

    @on("ChangeAvailability")
    def on_availability(self, operational_status, evse=None):
        self.seen.note("ChangeAvailability", type=operational_status)
        return result201.ChangeAvailability(status="Accepted")


SIMS = {"1.6": Sim16, "2.0.1": Sim201}


@asynccontextmanager
async def station(port: int, ident: str, password: str, version: str, tls: ssl.SSLContext, *, user: str | None = None):
    """A connected simulated charge point; its message loop runs until the block ends."""
    async with connect(f"wss://127.0.0.1:{port}/ocpp/{ident}", subprotocols=[f"ocpp{version}"], ssl=tls,
                       additional_headers={"Authorization": basic(user or ident, password)}, open_timeout=30) as ws:
        cp = SIMS[version](ident, ws)
        loop = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            loop.cancel()


@asynccontextmanager
async def raw(port: int, ident: str, password: str, version: str, tls: ssl.SSLContext):
    """The bare websocket of an authenticated charge point, for frames the library would not send."""
    async with connect(f"wss://127.0.0.1:{port}/ocpp/{ident}", subprotocols=[f"ocpp{version}"], ssl=tls,
                       additional_headers={"Authorization": basic(ident, password)}, open_timeout=30) as ws:
        yield ws
