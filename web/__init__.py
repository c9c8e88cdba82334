"""The web editor under `/ui`: pages rendered with Jinja (web/templates), static files at
`/ui/static/` (web/static), the login and session of web.session.

engine.server.app.create_app includes `ui_handlers()` and `template_config()`; who may
reach a page is engine.server.access's business (token header or session cookie, CSRF).
Add a page: a Litestar handler under `/ui` returning `Template("x.html", context={...})`,
`x.html` extending base.html, listed in `ui_handlers()`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from web import api_data, api_rules, api_trial, pages, setup_pages
from web.session import HANDLERS as SESSION_HANDLERS
from web.session import template_csrf_token

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES = WEB_DIR / "templates"
STATIC = WEB_DIR / "static"

__all__ = ["STATIC", "TEMPLATES", "api_handlers", "template_config", "ui_handlers"]


def pretty_json(value: Any) -> str:
    """JSON for people: indented, characters as they are (autoescape makes it safe HTML,
    unlike `tojson`, which shows `<` as \\u003c)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _engine_setup(engine: JinjaTemplateEngine) -> None:
    # Litestar's own csrf_token() reads its CSRFConfig; ours is the session's
    engine.register_template_callable("csrf_token", template_csrf_token)
    engine.engine.filters["pretty_json"] = pretty_json


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja over web/templates, autoescaped (JinjaTemplateEngine turns it on)."""
    return TemplateConfig(
        directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_engine_setup
    )


def ui_handlers() -> list[Any]:
    """Every `/ui` route: login/logout, the pages, the static files."""
    return [
        *SESSION_HANDLERS,
        *pages.ROUTES,
        *setup_pages.ROUTES,
        create_static_files_router(path="/ui/static", directories=[STATIC], name="ui-static"),
    ]


def api_handlers() -> list[Any]:
    """The editor's JSON API (`/api/rules`, `/api/dry-run`, `/api/backtest`, ...): the pages
    use it, and so can scripts (admin token header)."""
    return [*api_rules.ROUTES, *api_trial.ROUTES, *api_data.ROUTES]
