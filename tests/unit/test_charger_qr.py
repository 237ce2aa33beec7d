"""`bureau charger qr`: the phone link a charger's QR code holds, and the code as a PNG."""

from __future__ import annotations

import struct
import zlib

import pytest

from bureau.cli import main


def _png(path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, i = b"", 8
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"IDAT":
            idat += data[i + 8:i + 8 + n]
        i += 12 + n
    return width, height, zlib.decompress(idat)


def test_the_link_names_the_node_and_the_charger_and_the_png_holds_a_qr_code(tmp_path, capsys):
    out = tmp_path / "CH-7.png"
    assert main(["charger", "qr", "CH-7", "--node", "https://bureau-1.example:8443/", "--png", str(out),
                 "--scale", "4"]) == 0
    assert capsys.readouterr().out == "https://bureau-1.example:8443/phone#start=CH-7\n"
    width, height, pixels = _png(out)
    # a version-4 code (33 modules) holds this 46-character link at error correction M; 4 modules of quiet zone
    assert width == height == (33 + 8) * 4
    assert len(set(pixels)) > 2  # dark and light modules, not a blank image


@pytest.mark.parametrize("argv, message", [
    (["bad id", "--node", "https://b.example"], "bad_charger_id"),
    (["CH-7", "--node", "bureau-1.example"], "bad_node"),
    (["CH-7", "--node", "https://b.example/phone"], "bad_node"),
    (["CH-7", "--node", "https://b.example#x"], "bad_node"),
])
def test_a_bad_charger_or_node_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["charger", "qr", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_an_unwritable_png_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["charger", "qr", "CH-7", "--node", "https://b.example", "--png", str(tmp_path / "no" / "q.png")]) == 1
    assert "cannot_write" in capsys.readouterr().err
