"""`just flash PORT CONFIG`: install, provision and enroll one charger (hardware/README.md).

1. checks that PORT exists and that no other program has it open;
2. fetches from a bureau node the genesis (GET /v1/genesis) and the tariff in force
   (GET /v1/tariffs/<id>, the genesis tariff unless --tariff-id names another);
3. writes the application: the frozen MicroPython image when one is built (build/micropython/
   firmware.bin, or --image), else the .mpy bundle of `just firmware-build`; then main.py, the
   pin map, the meter's register map, config.json (CONFIG with the tariff in force) and
   data/bureau.json (chain id and validator keys, in authz.provision's format and through its
   code; the validators' keys also check the signed offline list and tariff push); with
   --ca, the bureau network's CA certificate as ca.der and "tls": true, "ca": "ca.der" in
   config's mqtt section, so the charger speaks MQTT over TLS with that CA pinned (a config
   with "tls": true needs --ca); with --broker HOST:PORT, that broker address (the charger's
   way to it) in config's mqtt host and port; with --broker-secret (the network's
   broker/charger-secret), the charger's broker login: user the charger id, password derived
   from that secret (bureau.tools.broker_registry.charger_password), a login the broker takes
   only while the committed registry holds the charger;
4. reads the public key the charger made (or makes now) over the serial cable: mpremote exec of
   the firmware's `app.print_public_key()`, or takes --public-key HEX read otherwise; then
   resets the board;
5. enrolls the key on chain with a signed operator action `enroll_charger` (the operator key
   file must exist: a new key would be one the chain does not know), waits for its commit and
   prints the height; the charger's broker login works once the broker's registry follower has
   seen that block.

--dry-run (or DRY_RUN=1) prints every command, request and file instead, and touches neither
the device nor the node. --enroll-only does steps 4 and 5 without writing the device.
Errors are one line, `error: <reason>: <detail>`, and exit status 1 (2 for bad arguments)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import chargerhost  # noqa: E402,F401  (puts the firmware library on sys.path)
import authz as fw_authz  # noqa: E402
import broker_tls  # noqa: E402
from flash import Flash  # noqa: E402

from bureau.tools.broker_registry import charger_password  # noqa: E402

BUNDLE = ROOT / "build" / "firmware"
FROZEN_IMAGE = ROOT / "build" / "micropython" / "firmware.bin"
BOARD = ROOT / "hardware" / "board" / "esp32_devkitc.json"
METERS = ROOT / "hardware" / "meters"
DEVICE_LIB = ("board", "uart_transport", "app")  # firmware/device modules that go to /lib
CA_FILE = "ca.der"  # the pinned CA on the device, beside config.json (firmware/device/app.py)
# What mpremote runs on the charger to read its key (firmware/device/app.py)
READ_KEY_CODE = "import app; app.print_public_key()"
PUBLIC_KEY_LINE = re.compile(r"^public_key ([0-9a-f]{64})$", re.M)
HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


class FlashError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


# ---- checks ---------------------------------------------------------------------------------

def port_holders(port: str) -> list[str]:
    """Other processes with `port` open ("pid (name)"), from /proc."""
    target = os.path.realpath(port)
    me = os.getpid()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    name = Path(f"/proc/{pid}/comm").read_text().strip()
                    found.append(f"{pid} ({name})")
                    break
            except OSError:
                continue
    return found


def check_port(port: str, dry_run: bool) -> None:
    if not os.path.exists(port):
        raise FlashError("no_port", f"{port} does not exist (is the board plugged in? see ls /dev/ttyUSB* /dev/ttyACM*)")
    holders = port_holders(port)
    if holders:
        raise FlashError("port_busy", f"{port} is open in {', '.join(holders)}; close it (screen, minicom, "
                                      "mpremote repl) and try again")
    if dry_run:
        return
    import serial

    try:
        serial.Serial(port, exclusive=True).close()
    except (serial.SerialException, OSError) as e:
        raise FlashError("port_busy", f"{port} cannot be opened: {e}") from None


def load_config(path: Path) -> dict:
    try:
        cfg = json.loads(Path(path).read_text())
    except OSError as e:
        raise FlashError("no_config", f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise FlashError("bad_config", f"{path} is not JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise FlashError("bad_config", f"{path} must hold a JSON object")
    for key in ("charger_id", "meter_serial", "wifi", "mqtt"):
        if not cfg.get(key):
            raise FlashError("bad_config", f"{path} must set {key} (see hardware/board/config.example.json)")
    if not cfg["mqtt"].get("host"):
        raise FlashError("bad_config", f"{path} must set mqtt.host")
    if cfg["mqtt"].get("tls", False) not in (True, False):
        raise FlashError("bad_config", f"{path}: mqtt.tls must be true or false")
    return cfg


def load_ca(path: Path | None, cfg: dict) -> bytes | None:
    """The network's CA certificate (PEM or DER file) as DER, checked as the charger checks it;
    None for plain MQTT."""
    if path is None:
        if cfg["mqtt"].get("tls"):
            raise FlashError("no_ca", "the config sets mqtt.tls: pass the network's CA certificate with --ca")
        return None
    try:
        return broker_tls.ca_der(Path(path).read_bytes())
    except OSError as e:
        raise FlashError("no_ca", f"{path}: {e.strerror}") from None
    except broker_tls.TLSConfigError as e:
        raise FlashError(e.reason, f"{path}: {e.detail}") from None


def load_broker_secret(path: Path | None) -> bytes | None:
    """The network's broker/charger-secret (32 bytes in hex), or None without --broker-secret."""
    if path is None:
        return None
    try:
        secret = bytes.fromhex(Path(path).read_text().strip())
    except OSError as e:
        raise FlashError("no_broker_secret", f"{path}: {e.strerror} (the network's broker/charger-secret)") from None
    except ValueError:
        raise FlashError("bad_broker_secret", f"{path} must hold the secret in hex") from None
    if len(secret) != 32:
        raise FlashError("bad_broker_secret", f"{path} holds {len(secret)} bytes, not 32")
    return secret


def parse_broker(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FlashError("bad_broker", f"--broker must be HOST:PORT, not {value!r}")
    return host, int(port)


def parse_public_key(value: str | None) -> str | None:
    if value is not None and not HEX_KEY.match(value):
        raise FlashError("bad_public_key", "--public-key must be 64 lowercase hex digits (32 bytes)")
    return value


def device_config(cfg: dict, tariff, ca: bytes | None, broker: tuple[str, int] | None = None,
                  secret: bytes | None = None) -> dict:
    """CONFIG as the charger gets it: its register map's file name, the tariff in force; with a
    CA, MQTT over TLS with ca.der pinned; with `broker`, that host and port; with the network's
    charger secret, the charger's registry login."""
    mqtt = dict(cfg["mqtt"])
    if ca is not None:
        mqtt.update(tls=True, ca=CA_FILE)
    if broker is not None:
        mqtt.update(host=broker[0], port=broker[1])
    if secret is not None:
        cid = cfg["charger_id"]
        mqtt.update(username=cid, password=charger_password(secret, cid))
    return dict(cfg, meter="meter.json", tariff=tariff, mqtt=mqtt)


# ---- what goes onto the device --------------------------------------------------------------

def node_verify(ca: bytes | None) -> ssl.SSLContext | bool:
    """httpx's `verify` for the node's API: the network's CA (it signs the nodes' certificates
    too) when given, else the system's."""
    return ssl.create_default_context(cadata=ca) if ca is not None else True


def fetch_bureau(node: str, tariff_id: str | None, verify: ssl.SSLContext | bool = True) -> tuple[dict, dict]:
    """(genesis, tariff in force) from a bureau node's API."""
    import httpx

    try:
        genesis = httpx.get(f"{node}/v1/genesis", timeout=10, verify=verify).raise_for_status().json()
        if tariff_id is None:
            if not genesis.get("tariffs"):
                raise FlashError("no_tariff", "the genesis names no tariff; pass --tariff-id")
            tariff_id = genesis["tariffs"][0]["tariff_id"]
        r = httpx.get(f"{node}/v1/tariffs/{tariff_id}", timeout=10, verify=verify)
        if r.status_code == 404:
            raise FlashError("unknown_tariff", f"the bureau has no tariff {tariff_id}")
        return genesis, r.raise_for_status().json()
    except httpx.HTTPError as e:
        raise FlashError("node_unreachable", f"{node}: {e}") from None


def stage_files(cfg: dict, meter: str, genesis: dict, tariff: dict, staging: Path, ca: bytes | None = None,
                broker: tuple[str, int] | None = None, secret: bytes | None = None) -> list[tuple[Path, str]]:
    """The files for the device's filesystem, written under `staging`: (local, device path)."""
    regmap = METERS / f"{meter}.json"
    if not regmap.exists():
        raise FlashError("unknown_meter", f"no register map {regmap.relative_to(ROOT)}")
    (staging / "config.json").write_text(json.dumps(device_config(cfg, tariff, ca, broker, secret), indent=1) + "\n")
    (staging / "data").mkdir(exist_ok=True)
    fw_authz.provision(Flash(str(staging / "data")), genesis)
    files = [(ROOT / "firmware" / "device" / "main.py", "main.py"), (BOARD, "board.json"), (regmap, "meter.json"),
             (staging / "config.json", "config.json"), (staging / "data" / fw_authz.TRUST_FILE, "data/bureau.json")]
    if ca is not None:
        (staging / CA_FILE).write_bytes(ca)
        files.append((staging / CA_FILE, CA_FILE))
    return files


def application(image: Path | None) -> tuple[str, list[Path]]:
    """("image", [the frozen image]) or ("bundle", [the .mpy files for /lib])."""
    if image is not None:
        if not image.exists():
            raise FlashError("no_image", f"{image} does not exist")
        return "image", [image]
    if FROZEN_IMAGE.exists():
        return "image", [FROZEN_IMAGE]
    mpys = sorted((BUNDLE / "lib").glob("*.mpy")) + [BUNDLE / "device" / f"{m}.mpy" for m in DEVICE_LIB]
    if not (BUNDLE / "lib").is_dir() or not all(p.exists() for p in mpys):
        raise FlashError("not_built", "no firmware build in build/: run `just firmware-build` first")
    return "bundle", mpys


def mpremote(port: str, *args: str) -> list[str]:
    return [tool("mpremote"), "connect", port, *args]


def device_commands(port: str, kind: str, app: list[Path], files: list[tuple[Path, str]]) -> list[list[str]]:
    cmds = []
    if kind == "image":  # MicroPython with the firmware frozen in; the filesystem (the key) stays
        cmds.append([tool("esptool.py"), "--chip", "esp32", "--port", port, "--baud", "460800", "write_flash", "-z",
                     "0x1000", str(app[0])])
    cmds.append(mpremote(port, "exec", "import os; [os.mkdir(d) for d in ('lib', 'data') if d not in os.listdir()]"))
    if kind == "bundle":
        cmds.append(mpremote(port, "cp", *map(str, app), ":lib/"))
    for local, remote in files:
        cmds.append(mpremote(port, "cp", str(local), ":" + remote))
    return cmds


def run(cmd: list[str]) -> str:
    """Run one command, printed first; its standard output."""
    print("$ " + shlex.join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise FlashError("no_tool", f"{cmd[0]} is not installed (just setup)") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise FlashError("device_failed", f"{Path(cmd[0]).name} exited with {proc.returncode}: "
                                          f"{last[-1] if last else 'no output'}")
    return proc.stdout


# ---- enrollment -----------------------------------------------------------------------------

def read_public_key(port: str) -> str:
    """The charger's public key, printed by the firmware over the serial cable."""
    out = run(mpremote(port, "exec", READ_KEY_CODE))
    found = PUBLIC_KEY_LINE.findall(out)
    if not found:
        last = out.strip().splitlines()
        raise FlashError("no_public_key", f"the charger printed no key: {last[-1] if last else 'nothing'} "
                                          "(is the firmware written? see `just firmware-build`)")
    return found[-1]


def enroll(cid: str, public_key: str, args, key, verify) -> None:
    """Enroll the key on chain and wait for the commit."""
    import httpx

    from bureau.tools.enroll import enroll_charger

    try:
        height = enroll_charger(args.node, key, cid, public_key, verify=verify)
    except httpx.HTTPError as e:
        raise FlashError("node_unreachable", f"{args.node}: {e}") from None
    if height is None:
        print(f"{cid}: already enrolled with public key {public_key}")
    else:
        print(f"{cid}: enrolled with public key {public_key}, committed at height {height}; its broker login "
              "works once the broker's registry follower has seen that block")


def dry_run(cfg: dict, args, kind: str | None, app: list[Path], ca: bytes | None = None,
            broker: tuple[str, int] | None = None, secret: bytes | None = None) -> None:
    """What a run would do; `kind` None: the enrollment only."""
    node, cid = args.node, cfg["charger_id"]
    if kind is not None:
        print_device_plan(cfg, args, kind, app, ca, broker, secret)
    if args.public_key:
        print(f"public key {args.public_key} (from --public-key)")
    else:
        print("$ " + shlex.join(mpremote(args.port, "exec", READ_KEY_CODE))
              + "   # prints `public_key <64 hex>`, the key made at first boot (or now)")
    if kind is not None or not args.public_key:
        print("$ " + shlex.join(mpremote(args.port, "reset")))
    print(f"GET {node}/v1/chargers/{cid}   # already enrolled with this key: nothing to do")
    print(f"POST {node}/v1/operator/actions enroll_charger {{\"charger_id\": \"{cid}\", "
          f"\"public_key\": <the charger's key>}} signed with {args.operator_key}")
    print(f"GET {node}/v1/operator/actions/<tx hash> until committed: prints the height")
    print(f"GET {node}/v1/chargers/{cid}")


def print_device_plan(cfg: dict, args, kind: str, app: list[Path], ca: bytes | None,
                      broker: tuple[str, int] | None, secret: bytes | None) -> None:
    node = args.node
    regmap = METERS / f"{args.meter}.json"
    if not regmap.exists():
        raise FlashError("unknown_meter", f"no register map {regmap.relative_to(ROOT)}")
    print(f"check {args.port}: exists, not open in another program")
    print(f"GET {node}/v1/genesis")
    print(f"GET {node}/v1/tariffs/{args.tariff_id or '<the genesis tariff>'}")
    staged = Path("<staging>")
    files = [(ROOT / "firmware" / "device" / "main.py", "main.py"), (BOARD, "board.json"),
             (regmap, "meter.json"), (staged / "config.json", "config.json"),
             (staged / "data" / fw_authz.TRUST_FILE, "data/bureau.json")]
    mqtt = []
    if ca is not None:
        files.append((staged / CA_FILE, CA_FILE))
        mqtt.append(f"\"tls\": true, \"ca\": \"{CA_FILE}\"")
    if broker is not None:
        mqtt.append(f"\"host\": \"{broker[0]}\", \"port\": {broker[1]}")
    if secret is not None:
        mqtt.append(f"\"username\": \"{cfg['charger_id']}\", \"password\": derived from {args.broker_secret} "
                    f"({len(charger_password(secret, cfg['charger_id']))} characters)")
    over = f", \"mqtt\" with {', '.join(mqtt)}" if mqtt else ""
    print(f"write {staged / 'config.json'}: {args.config} with \"meter\": \"meter.json\", \"tariff\": the tariff "
          f"in force{over}")
    if ca is not None:
        print(f"write {staged / CA_FILE}: the network's CA certificate from {args.ca} as DER ({len(ca)} bytes), "
              "the only CA the broker's certificate may be signed by")
    print(f"write {staged / 'data' / fw_authz.TRUST_FILE}: authz.provision of the genesis "
          "({\"v\": 1, \"chain_id\", \"keys\": validator id -> public key})")
    for cmd in device_commands(args.port, kind, app, files):
        print("$ " + shlex.join(cmd))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("port", help="the ESP32's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("config", type=Path, help="the charger's config.json (hardware/board/config.example.json)")
    p.add_argument("--meter", default="eastron_sdm120", help="register map in hardware/meters/ (without .json)")
    p.add_argument("--node", required=True, help="a bureau node's API, e.g. http://10.10.0.2:8080")
    p.add_argument("--operator-key", required=True, type=Path, help="the operator's key file (hex seed)")
    p.add_argument("--tariff-id", help="the tariff to install (default: the genesis tariff)")
    p.add_argument("--image", type=Path, help=f"a frozen MicroPython image (default {FROZEN_IMAGE.relative_to(ROOT)} "
                                              "when built)")
    p.add_argument("--ca", type=Path, help="the bureau network's CA certificate (PEM or DER): the charger then "
                                           "speaks MQTT over TLS and accepts only a broker certificate it signed")
    p.add_argument("--broker", help="HOST:PORT of the broker as the charger reaches it, written to config's mqtt "
                                    "(default: the config's)")
    p.add_argument("--broker-secret", type=Path, help="the network's broker/charger-secret: the charger's broker "
                                                      "login (user the charger id, password derived from it)")
    p.add_argument("--public-key", help="the charger's public key (64 hex digits) when read otherwise than "
                                        "over the serial cable")
    p.add_argument("--enroll-only", action="store_true", help="the device is written: read its key and enroll it")
    p.add_argument("--dry-run", action="store_true", default=os.environ.get("DRY_RUN") == "1",
                   help="print what would be run and written (also DRY_RUN=1)")
    args = p.parse_args(argv)
    args.node = args.node.rstrip("/")
    from bureau.tools.enroll import EnrollError, load_operator_key

    try:
        cfg = load_config(args.config)
        key = load_operator_key(args.operator_key)
        ca = load_ca(args.ca, cfg)
        broker = parse_broker(args.broker)
        secret = load_broker_secret(args.broker_secret)
        parse_public_key(args.public_key)
        serial = not (args.enroll_only and args.public_key)  # the cable is used: the board is reset after
        if serial:
            check_port(args.port, args.dry_run)
        kind, app = (None, []) if args.enroll_only else application(args.image)
        if args.dry_run:
            dry_run(cfg, args, kind, app, ca, broker, secret)
            return 0
        verify = node_verify(ca)
        if kind is not None:
            genesis, tariff = fetch_bureau(args.node, args.tariff_id, verify)
            with tempfile.TemporaryDirectory(prefix="flash-") as staging:
                files = stage_files(cfg, args.meter, genesis, tariff, Path(staging), ca, broker, secret)
                for cmd in device_commands(args.port, kind, app, files):
                    run(cmd)
        public_key = args.public_key or read_public_key(args.port)
        if serial:  # mpremote stopped the application: boot it with its files and key
            run(mpremote(args.port, "reset"))
        enroll(cfg["charger_id"], public_key, args, key, verify)
        return 0
    except (FlashError, EnrollError) as e:
        print(f"error: {e.reason}: {e.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
