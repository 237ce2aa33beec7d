"""Every firmware codec refuses input with one error shape (errors.CodecError): a machine
reason, a human detail, the same `args` and `str` under CPython and MicroPython."""

import authz
import charger
import dlt645
import errors
import meter
import modbus_rtu
import mqtt_codec
import rc522
import receipt
import tariff
import trust

from tests.support.micropython import run_micropython

ERROR_CLASSES = [authz.AuthzError, charger.ChargerError, dlt645.Dlt645Error, meter.MeterError,
                 modbus_rtu.ModbusError, mqtt_codec.MQTTError, mqtt_codec.MalformedPacket,
                 mqtt_codec.PacketTooLarge, rc522.RC522Error, receipt.ReceiptError, tariff.TariffError,
                 trust.TrustError]

SHAPE = r"""
import errors
e = errors.CodecError("bad_crc", "crc 1234, computed 4321", 7)
print(repr(e.args), e.reason, e.detail, e.code, str(e))
print(str(errors.CodecError("no_reply")), errors.CodecError("no_reply").detail == "")
print(isinstance(e, ValueError))
"""


def test_every_codec_error_has_the_one_shape():
    for cls in ERROR_CLASSES:
        assert issubclass(cls, errors.CodecError), cls
        e = cls("malformed", "text field is not ASCII")
        assert (e.reason, e.detail, e.args) == ("malformed", "text field is not ASCII",
                                                ("malformed", "text field is not ASCII"))
        assert str(e) == "malformed: text field is not ASCII"


def test_codecs_raise_reasons_with_details():
    try:
        receipt.decode_envelope(b"\x01" * 70)
    except receipt.ReceiptError as e:
        assert e.reason == "malformed" and e.detail
    else:
        raise AssertionError("a broken envelope was accepted")
    try:
        tariff.Tariff({"v": 2})
    except tariff.TariffError as e:
        assert e.reason == "unsupported_version" and "2" in e.detail
    else:
        raise AssertionError("a v2 tariff was accepted")


def test_the_shape_is_the_same_under_micropython():
    out = run_micropython(SHAPE).split("\n")
    assert out[0] == "('bad_crc', 'crc 1234, computed 4321') bad_crc crc 1234, computed 4321 7 bad_crc: crc 1234, computed 4321"
    assert out[1] == "no_reply True"
    assert out[2] == "True"
