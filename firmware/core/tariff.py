# Time-of-use tariff arithmetic (docs/tariff.md): which period a moment falls in, and the one
# rounding rule. Runs under MicroPython and CPython; the backend has its own copy of this
# arithmetic held to this one by tests/vectors/tariff.json.
from errors import CodecError

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

LOCAL_OFFSET_S = const(28800)  # UTC+8, no daylight saving
KINDS = const(4)  # 0 critical peak, 1 peak, 2 flat, 3 valley
_HALF_FEN = const(50000)  # exact unit is 1e-7 CNY; a fen is 1e5 of them
_FEN = const(100000)


TariffError = CodecError  # a tariff document that breaks the rules of docs/tariff.md


class Tariff:
    """A parsed tariff document (v1). `rate[kind]` is energy price + service fee in
    0.0001 CNY per kWh, or None where the tariff has no price for that kind."""

    def __init__(self, doc):
        if doc.get("v") != 1:
            raise TariffError("unsupported_version", "tariff document v %r" % (doc.get("v"),))
        self.tariff_id = doc["tariff_id"]
        self.version = doc["version"]
        self.rate = [None] * KINDS
        last = -1
        for kind, energy, service in doc["prices"]:
            if not (0 <= kind < KINDS) or kind <= last or energy < 0 or service < 0:
                raise TariffError("malformed", "bad price row")
            self.rate[kind] = energy + service
            last = kind
        starts = []
        kinds = []
        for start, kind in doc["schedule"]:
            if not (0 <= kind < KINDS) or self.rate[kind] is None:
                raise TariffError("malformed", "schedule names a period kind without a price")
            if not (0 <= start < 1440) or (starts and start <= starts[-1]):
                raise TariffError("malformed", "schedule rows must ascend within 0..1439 minutes")
            starts.append(start)
            kinds.append(kind)
        if not starts or starts[0] != 0:
            raise TariffError("malformed", "schedule must start at minute 0")
        self._starts = starts
        self._kinds = kinds

    def kind_at(self, unix_s):
        minute = ((unix_s + LOCAL_OFFSET_S) % 86400) // 60
        kind = self._kinds[0]
        for i in range(len(self._starts)):
            if self._starts[i] <= minute:
                kind = self._kinds[i]
            else:
                break
        return kind

    def next_boundary(self, unix_s):
        """Unix second at which the next period row begins after `unix_s` (for a reading
        at every boundary)."""
        local = unix_s + LOCAL_OFFSET_S
        day = local - local % 86400
        minute = (local % 86400) // 60
        for start in self._starts:
            if start > minute:
                return day + start * 60 - LOCAL_OFFSET_S
        return day + 86400 - LOCAL_OFFSET_S

    def amount_fen(self, periods):
        """Cost in fen of (kind, wh) pairs, e.g. a receipt's periods or `periods_of(energy)`."""
        exact = 0
        for kind, wh in periods:
            if wh:
                rate = self.rate[kind]
                if rate is None:
                    raise TariffError("no_price", "no price for period kind %d" % kind)
                exact += wh * rate
        return (exact + _HALF_FEN) // _FEN


def periods_of(energy_by_kind):
    """Receipt field 21 from per-kind energy: (kind, wh) pairs, kinds ascending, zero rows left out."""
    return [(k, energy_by_kind[k]) for k in range(KINDS) if energy_by_kind[k]]
