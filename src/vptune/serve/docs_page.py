"""The OpenAPI page at /docs with Swagger UI served from the installed `swagger-ui-bundle` package.

FastAPI's own page loads Swagger UI from a CDN, which a machine without internet cannot
reach; with the package installed the page works offline. Without it, FastAPI's page stays.
"""

from __future__ import annotations

import importlib.util

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def offline_docs_available() -> bool:
    """Whether Swagger UI's files are installed (package `swagger-ui-bundle`)."""
    return importlib.util.find_spec("swagger_ui_bundle") is not None


def add_offline_docs(app: FastAPI) -> None:
    """Serve /docs from the local Swagger UI files; call it on an app made with `docs_url=None`."""
    import swagger_ui_bundle

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    # The bundled Swagger UI (4.x) renders OpenAPI 3.0 documents only; it shows this schema's
    # few 3.1 constructs (optional fields as anyOf with null) as they are.
    app.openapi_version = "3.0.3"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
