"""Node settings: one frozen `Settings` with a section per part of the node, read once at start
from the BUREAU_* environment (docs/settings.md lists every variable). An unknown BUREAU_*
variable or a value outside what its setting allows is refused with a `SettingsError` naming the
variable, before anything starts."""

from __future__ import annotations

import difflib
import os
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from .ocpi.addresses import Network, parse_networks

# A node's connections to the MQTT broker. Each logs in as `<mqtt.username>.<link>`: with
# use_username_as_clientid on the broker that name is also its client id, so the links never
# take over each other's connection, and the ACL gives each only its own topics (docs/broker.md).
BROKER_LINKS = ("ingest", "authz")
ENV_PREFIX = "BUREAU_"
LOG_FORMATS = ("text", "json")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A setting the node cannot start with; the message is one line naming the variable."""


def _between(default: int, lo: int, hi: int | None = None):
    """An integer setting allowed only in lo..hi (hi None: no upper bound)."""
    return field(default=default, metadata={"range": (lo, hi)})


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = _between(1883, 1, 65535)
    username: str = ""  # the node's broker login; default: the node id (see BROKER_LINKS)
    password: str | None = None  # one password for all of the node's links; None: no password
    shared_subscription: bool = True  # bureaus sharing one broker split the receipts between them
    tls: bool = False  # TLS to the broker, its certificate verified (docs/broker.md, "TLS")
    ca_file: Path | None = None  # the CA the broker's certificate must chain to; None: the system's


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = _between(8080, 1, 65535)
    auth_window_s: int = _between(120, 1, 86_400)  # how far a signed request's time may be from ours
    tls_cert_file: Path | None = None  # with the key file: the API serves HTTPS only
    tls_key_file: Path | None = None
    # the operator's bearer token (Prometheus, the dashboard's login); None: signed requests only
    operator_token_file: Path | None = None
    ca_file: Path | None = None  # the CA the peers' API certificates chain to (the dashboard reads them); None: the system's

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError(f"{ENV_PREFIX}HTTP_TLS_CERT_FILE and {ENV_PREFIX}HTTP_TLS_KEY_FILE: "
                                "allowed: both set (HTTPS) or neither (HTTP)")


@dataclass(frozen=True)
class ConsensusSettings:
    block_interval_ms: int = _between(200, 1, 600_000)  # gathering time between blocks
    max_block_txs: int = _between(5000, 1, 1_000_000)
    mempool_limit: int = _between(200_000, 1)
    peer_listen: str = ""  # host:port; default: this node's address in the genesis
    peer_addresses: str = ""  # "id=host:port,..." to dial instead of the genesis addresses

    def __post_init__(self) -> None:
        if self.peer_listen and _host_port_error(self.peer_listen):
            raise SettingsError(f"{ENV_PREFIX}PEER_LISTEN={self.peer_listen!r}: {_host_port_error(self.peer_listen)}")
        for item in filter(None, self.peer_addresses.split(",")):
            node_id, _, address = item.partition("=")
            problem = "needs id=host:port" if not node_id or not address else _host_port_error(address)
            if problem:
                raise SettingsError(f"{ENV_PREFIX}PEER_ADDRESSES: {item!r} {problem} "
                                    "(allowed: id=host:port,id=host:port...)")

    @property
    def peer_address_map(self) -> dict[str, str] | None:
        if not self.peer_addresses:
            return None
        return dict(item.split("=", 1) for item in self.peer_addresses.split(",") if item)


def _host_port_error(address: str) -> str | None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return "is not host:port"
    return None if 1 <= int(port) <= 65535 else "has a port outside 1..65535"


@dataclass(frozen=True)
class StorageSettings:
    db_url: str = ""  # default: SQLite file in the data directory


@dataclass(frozen=True)
class AuthzSettings:
    # Whether this node answers authorization requests and publishes the signed list and tariff.
    # None: the first validator of the genesis does (exactly one responder per network, so a
    # wallet's holds live in one place; see docs/authorization.md).
    enabled: bool | None = None
    hold_ttl_s: int = _between(12 * 3600, 1)  # an open authorization holds its amount at most this long
    min_authorize_fen: int = _between(100, 0)  # below this much available, a start is refused
    max_authorize_fen: int = _between(50_000, 1)  # the most one online authorization allows (500 CNY)
    app_token_ttl_s: int = _between(120, 1)  # a phone start must be redeemed by the charger within this
    offline_cap_fen: int = _between(5_000, 0)  # the most a card may spend offline per list (50 CNY)
    offline_min_fen: int = _between(100, 0)  # cards whose offline limit would be lower are left off the list
    list_ttl_s: int = _between(24 * 3600, 1)  # a list expires this long after it is issued
    list_min_interval_s: int = _between(60, 0)  # a changed list is published at most this often
    # what one manifest of 1536-byte pages can name (docs/authorization.md)
    list_max_entries: int = _between(1400, 0, 1400)
    tariff_id: str = ""  # the tariff this bureau's chargers use; default: the genesis's first
    max_request_bytes: int = _between(1024, 64, 65_536)


@dataclass(frozen=True)
class OcppSettings:
    """The node's CSMS for OCPP charge points (docs/ocpp.md): security profile 2, so it serves
    WSS only, with the API's TLS certificate (BUREAU_HTTP_TLS_CERT_FILE / _KEY_FILE)."""
    port: int = _between(0, 0, 65535)  # 0: no OCPP listener
    host: str = "127.0.0.1"
    max_message_bytes: int = _between(65_536, 1024, 16 * 1024 * 1024)  # a larger frame closes the connection
    max_connections: int = _between(1000, 1)  # more charge points are refused at the upgrade (503)
    rate_per_s: int = _between(20, 1)  # messages a connection may send per second (a burst of twice that)
    heartbeat_s: int = _between(300, 10, 86_400)  # the interval BootNotification gives the charge point
    commit_wait_s: int = _between(20, 1, 300)  # a stop waits this long for its bill's block before it is retried


@dataclass(frozen=True)
class OcpiSettings:
    """OCPI 2.2.1 out (docs/ocpi.md): tariffs and CDRs for roaming partners."""
    tokens_file: Path | None = None  # the credentials tokens issued (hashed; bureau ocpi issue-token); None: no OCPI
    country_code: str = "CN"  # ISO 3166-1 alpha-2 of the CPO, in every object
    party_id: str = ""  # the CPO's OCPI party id (3 of A-Z 0-9); needed with tokens_file
    vat_percent: int = _between(13, 0, 100)  # the VAT included in the tariffs' prices (China: 13 % on electricity)
    page_limit: int = _between(100, 1, 1000)  # the most objects one page holds, whatever `limit` asks
    business_name: str = ""  # the CPO's name in our credentials object (BusinessDetails.name); needed with tokens_file
    # CIDRs the node may fetch a partner's API from besides the globally routable addresses (labs, private peering)
    partner_networks: str = ""

    def __post_init__(self) -> None:
        if self.tokens_file is not None and not re.fullmatch(r"[A-Z0-9]{3}", self.party_id):
            raise SettingsError(f"{ENV_PREFIX}OCPI_PARTY_ID={self.party_id!r}: allowed: 3 of A-Z 0-9 "
                                f"(needed with {ENV_PREFIX}OCPI_TOKENS_FILE)")
        if not re.fullmatch(r"[A-Z]{2}", self.country_code):
            raise SettingsError(f"{ENV_PREFIX}OCPI_COUNTRY_CODE={self.country_code!r}: allowed: 2 of A-Z")
        if (self.tokens_file is not None or self.business_name) and not (
                0 < len(self.business_name) <= 100 and self.business_name.isprintable()):
            raise SettingsError(f"{ENV_PREFIX}OCPI_BUSINESS_NAME={self.business_name!r}: allowed: 1-100 printable "
                                f"characters (needed with {ENV_PREFIX}OCPI_TOKENS_FILE)")
        try:
            self.partner_network_list  # noqa: B018 (a bad list raises here)
        except ValueError as e:
            raise SettingsError(f"{ENV_PREFIX}OCPI_PARTNER_NETWORKS={self.partner_networks!r}: {e}; "
                                "allowed: comma-separated CIDRs (127.0.0.0/8,10.20.0.0/16)") from None

    @property
    def partner_network_list(self) -> tuple[Network, ...]:
        """The networks of partner_networks (ocpi/addresses.py)."""
        return parse_networks(self.partner_networks)


@dataclass(frozen=True)
class WorkerSettings:
    """Ingest workers (docs/ingest-workers.md). On the node: `listen` turns the worker link on
    (the node then takes no receipts from the broker itself) and `keys_file` names the workers
    allowed on it. On a `bureau ingest-worker`: the other fields."""
    listen: str = ""  # host:port the node serves its workers on; empty: no workers, today's ingest
    keys_file: Path | None = None  # lines "<worker id> <public key hex>": the workers the node lets in
    id: str = ""  # this worker's id: its login on the link, and `<bureau>.<id>` on the broker
    key_file: Path | None = None  # this worker's Ed25519 key; default: <data_dir>/<id>.key
    node: str = ""  # host:port of its node's worker link
    queue_limit: int = _between(10_000, 1, 1_000_000)  # receipts buffered before the worker drops new ones
    threads: int = _between(2, 1, 64)  # verification threads

    def __post_init__(self) -> None:
        for name, address in (("LISTEN", self.listen), ("NODE", self.node)):
            if address and _host_port_error(address):
                raise SettingsError(f"{ENV_PREFIX}WORKER_{name}={address!r}: {_host_port_error(address)}")
        if self.listen and self.keys_file is None:
            raise SettingsError(f"{ENV_PREFIX}WORKER_LISTEN needs {ENV_PREFIX}WORKER_KEYS_FILE (the workers let in)")
        if self.id and not WORKER_ID_RE.match(self.id):
            raise SettingsError(f"{ENV_PREFIX}WORKER_ID={self.id!r}: allowed: 1-32 of A-Z a-z 0-9 _ -")


WORKER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")


# section attribute -> the prefix of its variables after BUREAU_ ("" : the field name alone)
SECTIONS: dict[str, tuple[type, str]] = {
    "mqtt": (MqttSettings, "MQTT_"),
    "http": (HttpSettings, "HTTP_"),
    "consensus": (ConsensusSettings, ""),
    "storage": (StorageSettings, ""),
    "authz": (AuthzSettings, "AUTHZ_"),
    "ocpp": (OcppSettings, "OCPP_"),
    "ocpi": (OcpiSettings, "OCPI_"),
    "worker": (WorkerSettings, "WORKER_"),
}


@dataclass(frozen=True)
class Settings:
    node_id: str = "bureau-1"
    data_dir: Path = Path("var/bureau-1")
    genesis: Path = Path("var/genesis.json")
    key_file: Path | None = None  # default: <data_dir>/node.key
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    authz: AuthzSettings = field(default_factory=AuthzSettings)
    ocpp: OcppSettings = field(default_factory=OcppSettings)
    ocpi: OcpiSettings = field(default_factory=OcpiSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    log_format: str = "text"  # "text" or "json": one JSON object per line (bureau/logfmt.py)

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"{ENV_PREFIX}LOG_FORMAT={self.log_format!r}: allowed: {', '.join(LOG_FORMATS)}")
        if self.ocpp.port and self.http.tls_cert_file is None:
            raise SettingsError(f"{ENV_PREFIX}OCPP_PORT={self.ocpp.port}: the OCPP listener serves TLS only "
                                f"(security profile 2); set {ENV_PREFIX}HTTP_TLS_CERT_FILE and _KEY_FILE")

    def mqtt_login(self, link: str) -> tuple[str, str | None]:
        """(user name, password) of one of the node's broker links; the user name is its client id."""
        if link not in BROKER_LINKS:
            raise ValueError(f"unknown broker link {link!r}; links are {', '.join(BROKER_LINKS)}")
        return f"{self.mqtt.username or self.node_id}.{link}", self.mqtt.password

    def worker_login(self) -> tuple[str, str | None]:
        """(user name, password) of an ingest worker's broker login: `<bureau>.<worker id>`."""
        return f"{self.mqtt.username or self.node_id}.{self.worker.id}", self.mqtt.password

    @property
    def database_url(self) -> str:
        return self.storage.db_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def node_key_file(self) -> Path:
        return self.key_file or self.data_dir / "node.key"

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None, **overrides) -> "Settings":
        """The settings the BUREAU_* variables of `env` (default: os.environ) give, then
        `overrides`, each named as its variable without BUREAU_ in lower case (`mqtt_port=1884`,
        `db_url=...`, `authz_hold_ttl_s=60`); an override of None is ignored."""
        env = os.environ if env is None else env
        given: dict[str, str | object] = {}
        for name, raw in env.items():
            if name.startswith(ENV_PREFIX):
                if name not in VARIABLES:
                    close = difflib.get_close_matches(name, VARIABLES, n=1)
                    hint = f"; did you mean {close[0]}?" if close else ""
                    raise SettingsError(f"{name} is not a bureau setting (docs/settings.md lists them){hint}")
                given[name] = raw
        for key, value in overrides.items():
            name = ENV_PREFIX + key.upper()
            if name not in VARIABLES:
                raise TypeError(f"Settings.from_env got an unknown override {key!r}")
            if value is not None:
                given[name] = value
        top: dict = {}
        sections: dict[str, dict] = {s: {} for s in SECTIONS}
        for name, value in given.items():
            var = VARIABLES[name]
            (sections[var.section] if var.section else top)[var.field.name] = var.value(name, value)
        for s, values in sections.items():
            top[s] = SECTIONS[s][0](**values)
        return cls(**top)


@dataclass(frozen=True)
class Variable:
    """One BUREAU_* variable: the section it sets (None: the node's own fields), the field, and
    the field's kind (int, bool, str or Path)."""
    section: str | None
    field: typing.Any
    kind: str

    @property
    def default(self):
        return self.field.default

    @property
    def allowed(self) -> str:
        if self.kind == "bool":
            return "allowed: " + ", ".join(f"{t}/{n}" for t, n in zip(_TRUE, _FALSE))
        if self.kind == "int":
            lo, hi = self.field.metadata.get("range", (None, None))
            if lo is None:
                return "allowed: an integer"
            return f"allowed: an integer {lo}..{hi}" if hi is not None else f"allowed: an integer >= {lo}"
        return f"allowed: a {'path' if self.kind == 'Path' else 'text'}"

    def value(self, name: str, value):
        """The typed value, from the variable's text or a typed override."""
        if isinstance(value, str) and self.kind != "str":
            text = value.strip()
            if self.field.default is None and text == "":
                return None
            if self.kind == "int":
                try:
                    value = int(text)
                except ValueError:
                    raise SettingsError(f"{name}={value!r}: {self.allowed}") from None
            elif self.kind == "bool":
                if text.lower() not in _TRUE + _FALSE:
                    raise SettingsError(f"{name}={value!r}: {self.allowed}")
                value = text.lower() in _TRUE
            else:
                value = Path(text)
        if self.kind == "Path" and isinstance(value, os.PathLike):
            value = Path(value)
        if type(value) is not {"int": int, "bool": bool, "str": str}.get(self.kind, type(value)) or \
                (self.kind == "Path" and not isinstance(value, Path)):
            raise SettingsError(f"{name}={value!r}: {self.allowed}")
        lo, hi = self.field.metadata.get("range", (None, None))
        if lo is not None and (value < lo or (hi is not None and value > hi)):
            raise SettingsError(f"{name}={value!r}: {self.allowed}")
        return value


def _variables() -> dict[str, Variable]:
    out: dict[str, Variable] = {}
    for owner, section, prefix in [(Settings, None, ""), *((c, s, p) for s, (c, p) in SECTIONS.items())]:
        hints = typing.get_type_hints(owner)
        for f in fields(owner):
            if owner is Settings and f.name in SECTIONS:
                continue
            kinds = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
            name = f"{ENV_PREFIX}{prefix}{f.name}".upper()
            assert name not in out, f"two settings share the variable {name}"
            out[name] = Variable(section, f, kinds[0].__name__)
    return out


VARIABLES = _variables()
