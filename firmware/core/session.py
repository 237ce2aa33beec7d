# One charging session: metered energy split by tariff period, running cost against the
# authorized amount, and the receipt at the end. Pure logic; time and meter readings come in.
import binascii

import receipt
from tariff import KINDS, periods_of


class Session:
    def __init__(self, d):
        # `d` is the persisted form (see `to_dict`), so a session rebuilt from flash after a
        # power cut is the same object as before it.
        self.d = d

    @classmethod
    def begin(cls, session_id, auth, tariff, meter_serial, start_wh, start_time, synced):
        return cls({
            "v": 1,
            "session_id": binascii.hexlify(session_id).decode(),
            "auth": auth,  # method, id_token, wallet_id, authorized_fen, auth_ref
            "tariff_id": tariff.tariff_id,
            "tariff_version": tariff.version,
            "meter_serial": meter_serial,
            "start_wh": start_wh,
            "start_time": start_time,
            "start_synced": bool(synced),
            "last_wh": start_wh,
            "last_time": start_time,
            "energy": [0] * KINDS,
            "meter_status": 0,
            "closing": None,
        })

    def to_dict(self):
        return self.d

    @property
    def energy_wh(self):
        return self.d["last_wh"] - self.d["start_wh"]

    def amount_fen(self, tariff):
        return tariff.amount_fen(periods_of(self.d["energy"]))

    def sample(self, tariff, wh, now):
        """A new meter reading. Energy since the last one goes to the period in force now.
        Energy is counted forward only (a receipt's energy is its end reading minus its begin
        reading): a reading below the last adds nothing; the meter watch flags it."""
        d = self.d
        if wh < d["last_wh"]:
            return
        delta = wh - d["last_wh"]
        if delta:
            d["energy"][tariff.kind_at(now)] += delta
        d["last_delta"] = delta
        d["last_wh"] = wh
        d["last_time"] = now

    def limit_reached(self, tariff, now):
        """True when one more interval like the last would cost more than was authorized: the
        contactor opens before the bill can pass the prepaid amount."""
        limit = self.d["auth"]["authorized_fen"]
        energy = self.d["energy"]
        if tariff.amount_fen(periods_of(energy)) >= limit:
            return True
        step = self.d.get("last_delta", 0)
        if not step:
            return False
        kind = tariff.kind_at(now)
        energy[kind] += step
        over = tariff.amount_fen(periods_of(energy)) > limit
        energy[kind] -= step
        return over

    def flag(self, status_bits):
        self.d["meter_status"] |= status_bits

    def close(self, seq, end_time, synced, stop_reason):
        """Freeze the end of the session; after this the receipt is fully determined."""
        self.d["closing"] = {"seq": seq, "end_time": end_time, "end_synced": bool(synced), "stop_reason": stop_reason}

    def receipt(self, tariff, charger_id, firmware_version):
        d, c, a = self.d, self.d["closing"], self.d["auth"]
        return {
            "version": receipt.VERSION,
            "charger_id": charger_id,
            "seq": c["seq"],
            "session_id": binascii.unhexlify(d["session_id"]),
            "auth_method": a["method"],
            "id_token": a["id_token"],
            "wallet_id": a["wallet_id"],
            "authorized_fen": a["authorized_fen"],
            "auth_ref": a["auth_ref"],
            "start_time": d["start_time"],
            "end_time": max(c["end_time"], d["start_time"]),
            "time_flags": (1 if d["start_synced"] else 0) | (2 if c["end_synced"] else 0),
            "meter_serial": d["meter_serial"],
            "meter_start_wh": d["start_wh"],
            "meter_end_wh": d["last_wh"],
            "meter_status": d["meter_status"],
            "stop_reason": c["stop_reason"],
            "tariff_id": d["tariff_id"],
            "tariff_version": d["tariff_version"],
            "periods": periods_of(d["energy"]),
            "amount_fen": self.amount_fen(tariff),
            "firmware_version": firmware_version,
        }
