"""OCPI 2.2.1 endpoints of the CPO role (docs/ocpi.md): GET tariffs and CDRs, paged, for a
partner holding a credentials token, and the credentials module by which a partner with a
registration token registers. Answers are OCPI's envelope, not the node's own error shape: an
OCPI client reads `status_code`."""

from __future__ import annotations

import datetime
import json
import logging
import time

import anyio.to_thread
import sqlalchemy as sa
from litestar import Request, Response, delete, get, post, put
from litestar.di import NamedDependency

from ..ledger import ocppbill
from ..node import Node
from ..storage import tables as t
from . import credentials, model
from .partner import check_partner
from .tokens import TokenBook

log = logging.getLogger(__name__)
PREFIX = f"/ocpi/{model.VERSION}"
MODULES = (("cdrs", "SENDER"), ("credentials", "SENDER"), ("tariffs", "SENDER"))
_books: dict[object, TokenBook] = {}


class OcpiRefusal(Exception):
    def __init__(self, http_status: int, status_code: int, message: str) -> None:
        super().__init__(message)
        self.http_status, self.status_code, self.message = http_status, status_code, message


def _book(node: Node) -> TokenBook:
    path = node.settings.ocpi.tokens_file
    if path not in _books:
        _books[path] = TokenBook(path)
    return _books[path]


def _when(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        t_ = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise OcpiRefusal(400, model.INVALID_PARAMETERS, f"{name} must be an RFC 3339 date-time") from None
    if t_.tzinfo is None:
        t_ = t_.replace(tzinfo=datetime.timezone.utc)  # OCPI: UTC when no offset is given
    return int(t_.timestamp())


def _int(text: str | None, name: str, default: int, lo: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or int(text) < lo:
        raise OcpiRefusal(400, model.INVALID_PARAMETERS, f"{name} must be an integer >= {lo}")
    return int(text)


def _query(request: Request, node: Node) -> tuple[int | None, int | None, int, int]:
    if _book(node).party(request.headers.get("authorization")) is None:
        raise OcpiRefusal(401, model.CLIENT_ERROR, "missing or unknown credentials token (Authorization: Token ...)")
    q = request.query_params
    date_from, date_to = _when(q.get("date_from"), "date_from"), _when(q.get("date_to"), "date_to")
    offset = _int(q.get("offset"), "offset", 0, 0)
    limit = min(_int(q.get("limit"), "limit", node.settings.ocpi.page_limit, 1), node.settings.ocpi.page_limit)
    return date_from, date_to, offset, limit


def _answer(request: Request, run) -> Response:
    now = time.time()
    try:
        items, total, offset, limit = run()
    except OcpiRefusal as e:
        return Response(model.envelope(None, now, e.status_code, e.message), status_code=e.http_status)
    params = {k: request.query_params.get(k) for k in ("date_from", "date_to")}
    base = str(request.base_url).rstrip("/") + request.url.path
    return Response(model.envelope(items, now), headers=model.page_headers(base, params, offset, limit, total))


def _in_range(at: int, date_from: int | None, date_to: int | None) -> bool:
    # OCPI: date_from inclusive, date_to exclusive, over last_updated
    return (date_from is None or at >= date_from) and (date_to is None or at < date_to)


def _tariffs(node: Node) -> list[tuple[int, dict]]:
    """(last_updated, Tariff object) of every published tariff version, by id and version."""
    s = node.settings.ocpi
    state = node.chain.state
    with node.repo.engine.connect() as conn:
        published = {(r.tariff_id, r.version): r.time_ms // 1000 for r in conn.execute(
            sa.select(t.tariffs.c.tariff_id, t.tariffs.c.version, t.blocks.c.time_ms)
            .join(t.blocks, t.blocks.c.height == t.tariffs.c.height))}
    out = []
    for tid, v in sorted(state.tariffs):
        since = state.tariff_from[(tid, v)]
        later = [f for (i, w), f in state.tariff_from.items() if i == tid and w > v]
        updated = published.get((tid, v), node.genesis.time_ms // 1000)
        out.append((updated, model.tariff_object(state.tariffs[(tid, v)], since, min(later) if later else None,
                                                 updated, country_code=s.country_code, party_id=s.party_id,
                                                 vat_percent=s.vat_percent)))
    return out


@get(f"{PREFIX}/tariffs", include_in_schema=False, sync_to_thread=True)
def ocpi_tariffs(request: Request, node: NamedDependency[Node]) -> Response:
    def run():
        date_from, date_to, offset, limit = _query(request, node)
        chosen = [obj for at, obj in _tariffs(node) if _in_range(at, date_from, date_to)]
        return chosen[offset:offset + limit], len(chosen), offset, limit
    return _answer(request, run)


@get(f"{PREFIX}/cdrs", include_in_schema=False, sync_to_thread=True)
def ocpi_cdrs(request: Request, node: NamedDependency[Node]) -> Response:
    def run():
        date_from, date_to, offset, limit = _query(request, node)
        b, c, x = t.ocpp_bills.c, t.ocpp_chargers.c, t.txs.c
        where = [c.location.is_not(None)]  # a charge point enrolled without a site has no CDR location
        if date_from is not None:
            where.append(b.time_ms >= date_from * 1000)
        if date_to is not None:
            where.append(b.time_ms < date_to * 1000)
        joined = t.ocpp_bills.join(t.ocpp_chargers, c.charger_id == b.charger_id) \
            .join(t.txs, (x.height == b.height) & (x.idx == b.idx))
        with node.repo.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar_one()
            rows = list(conn.execute(sa.select(b.time_ms, x.data, x.tx_hash, c.location, c.ocmf_key)
                                     .select_from(joined).where(*where)
                                     .order_by(b.time_ms, b.charger_id, b.transaction_id).offset(offset).limit(limit)))
        tariffs = {obj["id"]: obj for _, obj in _tariffs(node)}
        s = node.settings.ocpi
        items = []
        for r in rows:
            bill = ocppbill.decode(bytes(r.data)).doc
            tariff = tariffs[model.tariff_ref(bill["tariff_id"], bill["tariff_version"])]
            items.append(model.cdr_object(bill, bytes(r.tx_hash), r.time_ms // 1000, json.loads(r.location), tariff,
                                          r.ocmf_key, country_code=s.country_code, party_id=s.party_id,
                                          vat_percent=s.vat_percent))
        return items, total, offset, limit
    return _answer(request, run)


def _listing(request: Request, node: Node, data_of) -> Response:
    """An unpaged answer for a partner with a token of either kind (the version information
    endpoints: a partner reads them before it registers)."""
    now = time.time()
    if _book(node).entry(request.headers.get("authorization")) is None:
        return Response(model.envelope(None, now, model.CLIENT_ERROR, "missing or unknown credentials token "
                                                                      "(Authorization: Token ...)"), status_code=401)
    return Response(model.envelope(data_of(str(request.base_url).rstrip("/")), now))


@get("/ocpi/versions", include_in_schema=False, sync_to_thread=False)
def ocpi_versions(request: Request, node: NamedDependency[Node]) -> Response:
    return _listing(request, node, lambda base: [{"version": model.VERSION, "url": base + PREFIX}])


@get(PREFIX, include_in_schema=False, sync_to_thread=False)
def ocpi_version_details(request: Request, node: NamedDependency[Node]) -> Response:
    return _listing(request, node, lambda base: {"version": model.VERSION, "endpoints": [
        {"identifier": module, "role": role, "url": f"{base}{PREFIX}/{module}"} for module, role in MODULES]})


def _token_gone() -> credentials.CredentialsRefusal:
    """The token was exchanged or revoked by another request meanwhile."""
    return credentials.CredentialsRefusal(401, model.CLIENT_ERROR, "unknown_token", "the token is gone")


def _credentials(request: Request, node: Node, method: str, body: bytes | None = None) -> Response:
    """One call of the credentials module (ocpi/credentials.py decides; this does the I/O): the
    partner's API is read before the tokens file changes, so a partner that cannot be used keeps
    its token and nothing is written."""
    now = time.time()
    book, s = _book(node), node.settings.ocpi
    found = book.entry(request.headers.get("authorization"))

    def ours(token: str) -> dict:
        return credentials.our_credentials(token, str(request.base_url).rstrip("/") + "/ocpi/versions",
                                           country_code=s.country_code, party_id=s.party_id,
                                           business_name=s.business_name)
    try:
        step = credentials.step(method, found[1].kind if found else None)
        token, entry = found
        if step == "show":
            data = ours(token)
        elif step == "unregister":
            if not book.revoke(token, entry.kind):
                raise _token_gone()
            data = None
        else:
            try:
                given = json.loads(body or b"")
            except (ValueError, UnicodeDecodeError):
                raise credentials.bad_object("the body is not JSON") from None
            partner = credentials.parse_credentials(given)
            check_partner(partner.url, partner.token, s.partner_network_list)
            fresh = book.exchange(token, entry.kind, partner.token, partner.url)
            if fresh is None:  # exchanged or revoked by another request while we read the partner
                raise _token_gone()
            data = ours(fresh)
    except credentials.CredentialsRefusal as e:
        if found is not None:
            log.info("ocpi credentials %s by %s refused: %s", method, found[1].party, e.message)
        return Response(model.envelope(None, now, e.status_code, e.message), status_code=e.http_status)
    log.info("ocpi credentials %s by %s: %s", method, entry.party, step)
    return Response(model.envelope(data, now))


@get(f"{PREFIX}/credentials", include_in_schema=False, sync_to_thread=False)
def ocpi_credentials_get(request: Request, node: NamedDependency[Node]) -> Response:
    return _credentials(request, node, "GET")


# POST and PUT read the partner's API (blocking, seconds at most): in a worker thread
@post(f"{PREFIX}/credentials", include_in_schema=False, status_code=200)
async def ocpi_credentials_post(request: Request, node: NamedDependency[Node]) -> Response:
    body = await request.body()
    return await anyio.to_thread.run_sync(_credentials, request, node, "POST", body)


@put(f"{PREFIX}/credentials", include_in_schema=False, status_code=200)
async def ocpi_credentials_put(request: Request, node: NamedDependency[Node]) -> Response:
    body = await request.body()
    return await anyio.to_thread.run_sync(_credentials, request, node, "PUT", body)


@delete(f"{PREFIX}/credentials", include_in_schema=False, sync_to_thread=True, status_code=200)
def ocpi_credentials_delete(request: Request, node: NamedDependency[Node]) -> Response:
    return _credentials(request, node, "DELETE")


HANDLERS = [ocpi_versions, ocpi_version_details, ocpi_tariffs, ocpi_cdrs, ocpi_credentials_get,
            ocpi_credentials_post, ocpi_credentials_put, ocpi_credentials_delete]
