"""The web editor under `/ui`: pages rendered with Jinja (web/templates), static files at
`/ui/static/` (web/static), the login and session of web.session.

engine.server.app.create_app includes `ui_handlers()` and `template_config()`; who may
reach a page is engine.server.access's business (token header or session cookie, CSRF).
Add a page: a Litestar handler under `/ui` returning `Template("x.html", context={...})`,
`x.html` extending base.html, listed in `ui_handlers()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import get
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from web.session import HANDLERS as SESSION_HANDLERS
from web.session import template_csrf_token

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES = WEB_DIR / "templates"
STATIC = WEB_DIR / "static"

__all__ = ["STATIC", "TEMPLATES", "template_config", "ui_handlers"]


@get("/ui", name="ui-home", include_in_schema=False)
async def ui_home() -> Template:
    """Placeholder home page (the rules list replaces it)."""
    return Template(template_name="home.html", context={"title": "Rules", "nav": "rules"})


def _engine_setup(engine: JinjaTemplateEngine) -> None:
    # Litestar's own csrf_token() reads its CSRFConfig; ours is the session's
    engine.register_template_callable("csrf_token", template_csrf_token)


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja over web/templates, autoescaped (JinjaTemplateEngine turns it on)."""
    return TemplateConfig(
        directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_engine_setup
    )


def ui_handlers() -> list[Any]:
    """Every `/ui` route: login/logout, the pages, the static files."""
    return [
        *SESSION_HANDLERS,
        ui_home,
        create_static_files_router(path="/ui/static", directories=[STATIC], name="ui-static"),
    ]
