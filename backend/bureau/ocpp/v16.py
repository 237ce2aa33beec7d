"""OCPP 1.6J: the CSMS side of one charge point's connection (subprotocol `ocpp1.6`)."""

from __future__ import annotations

import datetime

from ocpp.exceptions import FormationViolationError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from .meter import MeterValueError, readings_v16, unix_s
from .station import StationMixin

VERSION = "1.6"


def id_tag_info(decision) -> dict:
    if decision.accepted:
        return {"status": "Accepted"}
    if decision.reason in ("token_expired", "token_used"):
        return {"status": "Expired"}
    if decision.reason in ("card_blocked", "in_debt", "insufficient_balance"):
        return {"status": "Blocked"}
    return {"status": "Invalid"}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Station16(StationMixin, ChargePoint):
    def __init__(self, charger_id: str, connection, csms) -> None:
        super().__init__(charger_id, connection)
        self.csms = csms
        self.core = csms.core

    def _readings(self, meter_values):
        try:
            return readings_v16(meter_values)
        except MeterValueError as e:
            raise FormationViolationError(details={"cause": str(e)}) from None

    def _at(self, timestamp: str) -> int:
        try:
            return unix_s(timestamp)
        except MeterValueError as e:
            raise FormationViolationError(details={"cause": str(e)}) from None

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor, charge_point_model, **_):
        return call_result.BootNotification(current_time=_utc_now(), interval=self.csms.settings.heartbeat_s,
                                            status="Accepted")

    @after(Action.boot_notification)
    async def after_boot(self, **_):
        await self.csms.send_local_list(self)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=_utc_now())

    @on(Action.status_notification)
    def on_status(self, connector_id, error_code, status, **_):
        self.csms.note_status(self.id, connector_id, status, error_code)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info=id_tag_info(self.core.authorize(self.id, id_tag, self.csms.now())))

    @on(Action.start_transaction)
    def on_start(self, connector_id, id_tag, meter_start, timestamp, **_):
        at = self._at(timestamp)
        tid = self.core.new_transaction_id(self.id)
        t, decision = self.core.start(self.id, tid, VERSION, id_tag, meter_start, at, self.csms.now())
        # refused: the charge point must not charge; it still sends a StopTransaction for the id
        return call_result.StartTransaction(transaction_id=int(tid) if t is None else int(t.transaction_id),
                                            id_tag_info=id_tag_info(decision))

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id, meter_value, transaction_id=None, **_):
        readings, ocmf = self._readings(meter_value)
        t = self.core.transaction(self.id, str(transaction_id)) if transaction_id is not None else None
        if t is not None and self.core.meter(t, readings, ocmf, self.csms.now()):
            self.csms.spawn(self.call(call.RemoteStopTransaction(transaction_id=int(t.transaction_id))))
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop(self, meter_stop, timestamp, transaction_id, reason=None, transaction_data=None, **_):
        at = self._at(timestamp)
        readings, ocmf = self._readings(transaction_data or [])
        t = self.core.transaction(self.id, str(transaction_id))
        if t is not None:
            self.core.meter(t, readings, ocmf, self.csms.now())
            await self.csms.bill(t, self.core.stop(t, meter_stop, at, reason or "Local", self.csms.now()))
            return call_result.StopTransaction(id_tag_info={"status": "Accepted"})
        self.csms.note_unknown_stop(self.id, str(transaction_id))
        return call_result.StopTransaction()

    # ---- the CSMS's own requests ---------------------------------------------------------

    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> str:
        res = await self.call(call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector_id))
        return res.status

    async def change_availability(self, connector_id: int, available: bool) -> str:
        res = await self.call(call.ChangeAvailability(connector_id=connector_id,
                                                      type="Operative" if available else "Inoperative"))
        return res.status

    async def reset(self, hard: bool) -> str:
        res = await self.call(call.Reset(type="Hard" if hard else "Soft"))
        return res.status

    async def send_list(self, version: int, uids: list[str]) -> str:
        res = await self.call(call.SendLocalList(
            list_version=version, update_type="Full",
            local_authorization_list=[{"idTag": uid, "idTagInfo": {"status": "Accepted"}} for uid in uids]))
        return res.status
