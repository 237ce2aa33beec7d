"""OCPP 2.0.1: the CSMS side of one charging station's connection (subprotocol `ocpp2.0.1`)."""

from __future__ import annotations

import datetime
import secrets

from ocpp.exceptions import FormatViolationError
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from .meter import MeterValueError, readings_v201, unix_s
from .station import StationMixin

VERSION = "2.0.1"


def id_token_info(decision) -> dict:
    if decision.accepted:
        return {"status": "Accepted"}
    status = {"token_expired": "Expired", "token_used": "Expired", "card_blocked": "Blocked",
              "in_debt": "NoCredit", "insufficient_balance": "NoCredit"}.get(decision.reason, "Invalid")
    return {"status": status}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Station201(StationMixin, ChargePoint):
    def __init__(self, charger_id: str, connection, csms) -> None:
        super().__init__(charger_id, connection)
        self.csms = csms
        self.core = csms.core

    def _readings(self, meter_values):
        try:
            return readings_v201(meter_values)
        except MeterValueError as e:
            raise FormatViolationError(details={"cause": str(e)}) from None

    @on(Action.boot_notification)
    def on_boot(self, charging_station, reason, **_):
        return call_result.BootNotification(current_time=_utc_now(), interval=self.csms.settings.heartbeat_s,
                                            status="Accepted")

    @after(Action.boot_notification)
    async def after_boot(self, **_):
        await self.csms.send_local_list(self)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=_utc_now())

    @on(Action.status_notification)
    def on_status(self, timestamp, connector_status, evse_id, connector_id, **_):
        self.csms.note_status(self.id, evse_id, connector_status, None)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token, **_):
        decision = self.core.authorize(self.id, id_token["id_token"], self.csms.now())
        return call_result.Authorize(id_token_info=id_token_info(decision))

    @on(Action.meter_values)
    def on_meter_values(self, evse_id, meter_value, **_):
        self._readings(meter_value)  # checked; outside a transaction they bill nothing
        return call_result.MeterValues()

    @on(Action.transaction_event)
    async def on_transaction_event(self, event_type, timestamp, trigger_reason, seq_no, transaction_info,
                                   id_token=None, meter_value=None, **_):
        try:
            at = unix_s(timestamp)
        except MeterValueError as e:
            raise FormatViolationError(details={"cause": str(e)}) from None
        readings, ocmf = self._readings(meter_value or [])
        tid = transaction_info["transaction_id"]
        t = self.core.transaction(self.id, tid)
        reply = {}
        if t is None:
            if id_token is None:
                if event_type == "Ended":
                    self.csms.note_unknown_stop(self.id, tid)
                return call_result.TransactionEvent()  # not authorized yet: an Updated event names the token
            first = readings[0] if readings else (at, None)
            t, decision = self.core.start(self.id, tid, VERSION, id_token["id_token"], first[1], first[0],
                                          self.csms.now())
            reply["id_token_info"] = id_token_info(decision)
            if t is None:
                return call_result.TransactionEvent(**reply)
            readings = readings[1:]
        elif id_token is not None:
            reply["id_token_info"] = {"status": "Accepted"}
        if event_type == "Ended":
            end_at, end = readings[-1] if readings else (at, None)
            self.core.meter(t, readings[:-1], ocmf, self.csms.now())
            reason = transaction_info.get("stopped_reason") or "Local"
            await self.csms.bill(t, self.core.stop(t, end, end_at, reason, self.csms.now(), ocmf))
            return call_result.TransactionEvent(**reply)
        if self.core.meter(t, readings, ocmf, self.csms.now()):
            self.csms.spawn(self.call(call.RequestStopTransaction(transaction_id=tid)))
        return call_result.TransactionEvent(**reply)

    # ---- the CSMS's own requests ---------------------------------------------------------

    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> str:
        res = await self.call(call.RequestStartTransaction(
            id_token={"id_token": id_tag, "type": "Central"}, remote_start_id=secrets.randbelow(2**31 - 1) + 1,
            evse_id=connector_id))
        return res.status

    async def change_availability(self, connector_id: int, available: bool) -> str:
        evse = {"id": connector_id} if connector_id else None
        res = await self.call(call.ChangeAvailability(operational_status="Operative" if available else "Inoperative",
                                                      evse=evse))
        return res.status

    async def reset(self, hard: bool) -> str:
        res = await self.call(call.Reset(type="Immediate" if hard else "OnIdle"))
        return res.status

    async def send_list(self, version: int, uids: list[str]) -> str:
        res = await self.call(call.SendLocalList(
            version_number=version, update_type="Full",
            local_authorization_list=[{"id_token": {"id_token": uid, "type": "ISO14443"},
                                       "id_token_info": {"status": "Accepted"}} for uid in uids]))
        return res.status
