"""The OpenAPI document and its Swagger UI at /schema, served whole by the node: the UI's
scripts and styles come from the pinned npm package swagger-ui-dist (package.json), not a CDN,
so the docs work on a network with no way out."""

from __future__ import annotations

import logging
from pathlib import Path

from litestar import get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.response import File

from .errors import ApiError

log = logging.getLogger(__name__)

SWAGGER_UI_DIR = Path(__file__).resolve().parents[3] / "node_modules" / "swagger-ui-dist"
ASSETS_PATH = "/assets/swagger-ui"
# the only files the page loads; nothing else of the package is served
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui-standalone-preset.js": "text/javascript",
          "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}


@get(ASSETS_PATH + "/{name:str}", include_in_schema=False, sync_to_thread=False)
def swagger_ui_asset(name: FromPath[str]) -> File:
    media_type = ASSETS.get(name)
    path = SWAGGER_UI_DIR / name
    if media_type is None or not path.is_file():
        raise ApiError("not_found", f"no asset {name}" if media_type is None else
                       f"{path} is missing: install the npm packages (scripts/setup.sh --node)")
    return File(path, media_type=media_type, content_disposition_type="inline")


def openapi_config(title: str, version: str) -> OpenAPIConfig:
    if not (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():
        log.warning("%s is missing: /schema shows no UI until the npm packages are installed "
                    "(scripts/setup.sh --node); /schema/openapi.json is served all the same", SWAGGER_UI_DIR)
    swagger = SwaggerRenderPlugin(
        path="/", js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js", css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>")
    return OpenAPIConfig(title=title, version=version, path="/schema",
                         render_plugins=[swagger, JsonRenderPlugin(path="/openapi.json")])
