"""The driver's phone page at /phone: plain HTML, CSS and ES modules in this package (no build
step), and Ed25519 from the pinned npm package @noble/ed25519 (package.json) where the browser's
WebCrypto has none. Nothing comes from another host: the page talks to this node, and reads the
chain heads of the genesis validators to tell a driver when this node is behind.

The page is public: it holds no data. Everything it shows it fetches with requests signed by
the phone's key, and verifies on the phone (static/verify.js; docs/phone.md)."""

from __future__ import annotations

from pathlib import Path

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import File

from ..api.errors import ApiError
from ..dashboard import peer_base_url
from ..node import Node

STATIC = Path(__file__).with_name("static")
NOBLE_DIR = Path(__file__).resolve().parents[3] / "node_modules" / "@noble" / "ed25519"
NOBLE_PATH = "/assets/noble-ed25519"
# every file of the page, and its type; module scripts load only with a JavaScript type
ASSETS = {"app.js": "text/javascript", "client.js": "text/javascript", "i18n.js": "text/javascript",
          "verify.js": "text/javascript", "phone.css": "text/css", "icon.svg": "image/svg+xml"}
NOBLE_ASSETS = {"index.js": "text/javascript"}
_BASE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "Cross-Origin-Opener-Policy": "same-origin"}


def content_security_policy(connect: list[str]) -> str:
    """Only this node's own files run; requests go to this node and to the `connect` origins
    (the other validators' APIs, whose heads show whether this node is behind)."""
    sources = " ".join(["'self'", *connect])
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {sources}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def validator_origins(node: Node, tls: bool) -> list[str]:
    """The API origins of the other genesis validators, in the scheme this node serves."""
    me = node.settings.node_id
    return [peer_base_url(v.api, tls) for v in node.genesis.validators
            if v.id != me and v.api.startswith(("http://", "https://"))]


@get("/phone", include_in_schema=False)
async def page(request: Request, node: NamedDependency[Node]) -> Response[str]:
    """The page; the part after # (a charger to start at) never reaches the node."""
    tls = request.url.scheme == "https"
    headers = {**_BASE_HEADERS, "Cache-Control": "no-store",
               "Content-Security-Policy": content_security_policy(validator_origins(node, tls))}
    return Response((STATIC / "phone.html").read_text(), media_type="text/html; charset=utf-8", headers=headers)


def _file(directory: Path, name: str, types: dict[str, str]) -> File:
    media_type = types.get(name)
    path = directory / name
    if media_type is None:
        raise ApiError("not_found", f"no asset {name}")
    if not path.is_file():
        raise ApiError("not_found", f"{path} is missing: install the npm packages (scripts/setup.sh --node)")
    return File(path, media_type=media_type, content_disposition_type="inline",
                headers={**_BASE_HEADERS, "Cache-Control": "no-cache"})


@get("/phone/assets/{name:str}", include_in_schema=False, sync_to_thread=False)
def asset(name: FromPath[str]) -> File:
    return _file(STATIC, name, ASSETS)


@get(NOBLE_PATH + "/{name:str}", include_in_schema=False, sync_to_thread=False)
def noble_asset(name: FromPath[str]) -> File:
    """The one file of @noble/ed25519 the page imports; nothing else of the package is served."""
    return _file(NOBLE_DIR, name, NOBLE_ASSETS)


HANDLERS = [page, asset, noble_asset]
