"""`/`: a plain page that says which node this is and leads to what a person comes for."""

from __future__ import annotations

from html import escape

from litestar import MediaType, get
from litestar.di import NamedDependency

from ..node import Node

# (path, what a person finds there); no asset of the page comes from elsewhere
LINKS = (("/dashboard", "Operator dashboard", "chargers, receipts, blocks and the node's health at a glance"),
         ("/schema", "API documentation", "every endpoint, its parameters and answers (OpenAPI, Swagger UI)"),
         ("/v1/chain/head", "Chain head", "the latest committed block, as JSON"),
         ("/healthz", "Health", "whether the node and its consensus make progress, as JSON"),
         ("/schema/openapi.json", "OpenAPI document", "the machine-readable API description"))

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}"
          "h1{font-size:1.5rem;margin-bottom:.25rem}p.node{color:#555;margin-top:0}"
          "ul{list-style:none;padding:0}li{margin:1rem 0}a{font-weight:600;color:#0a58ca}"
          "span{display:block;color:#555;font-size:.9rem}")


def render_home(node_id: str, chain_id: str, height: int) -> str:
    items = "".join(f'<li><a href="{path}">{escape(title)}</a><span>{escape(what)}</span></li>'
                    for path, title, what in LINKS)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Bureau node {escape(node_id)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body><h1>Bureau node {escape(node_id)}</h1>'
            f'<p class="node">chain {escape(chain_id)}, height {height}</p><ul>{items}</ul></body></html>')


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def home(node: NamedDependency[Node]) -> str:
    return render_home(node.settings.node_id, node.chain.genesis.chain_id, node.chain.height)
