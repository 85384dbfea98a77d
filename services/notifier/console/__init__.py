"""The console of school staff and ops (`/console/`, French): Jinja2 pages served by the notifier — the
service that owns the history, its live streams and the ops figures — in both run modes (nginx routes
`/console` to it in distributed mode). Each page is a server-rendered shell (layout, navigation, forms,
labels); a little plain JS (static/) calls the REST API with the bearer token the person signed in with,
kept in the tab's sessionStorage only. No build step, nothing fetched from outside.

Pages never hold data the API does not give the same token: the server renders no site data at all, so a
page is the same for everyone and only the API decides what a token may see.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.notifier import domain
from shared.messages import ID_PATTERN, TERMINAL_STATUSES, ImportStatus, Stage
from shared.settings import Settings
from shared.web import not_found

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_PATH = "/console/static"
templates = Jinja2Templates(directory=HERE / "templates")

# Scripts and styles only from the console itself: an injected tag would find nothing to run with.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    admin: bool = False  # admin token only (the navigation hides it for a site token; the API refuses it)


# The site's pages, in the order of the navigation.
SITE_PAGES: tuple[Page, ...] = (
    Page("imports", "Historique des imports"),
    Page("manual", "Import manuel"),
    Page("thresholds", "Seuils et contrôles"),
    Page("accounts", "Comptes d'accès"),
    Page("closures", "Périodes de fermeture"),
    Page("directory", "Annuaire ENT"),
    Page("tokens", "Jetons d'accès", admin=True),
)
PAGES = {p.slug: p for p in SITE_PAGES}

# The history's status filter: one choice per label of the seeds, each the statuses it stands for.
STATUS_FILTER_ORDER = ("En attente", "En cours", "Fait", "Interrompu", "Remplacé")


def status_filters() -> list[dict[str, str]]:
    groups: dict[str, list[str]] = {}
    for status in ImportStatus:
        groups.setdefault(domain.label_for(status)[0], []).append(status.value)
    return [{"label": label, "value": ",".join(groups[label])} for label in STATUS_FILTER_ORDER if label in groups]


def console_labels(settings: Settings) -> dict[str, Any]:
    """What the scripts need to word things as the seeds do (the API's own labels, in one place)."""
    return {
        "statuses": {s.value: list(domain.label_for(s)) for s in ImportStatus},
        "terminal": sorted(s.value for s in TERMINAL_STATUSES),
        "steps": {s.value: domain.STEP_LABELS[s] for s in Stage},
        "actions": dict(domain.ACTION_LABELS),
        "timezone": settings.timezone,
    }


def build_console(settings: Settings) -> APIRouter:
    router = APIRouter()
    # Inside a <script type="application/json"> block: no "<" may close it early.
    labels = json.dumps(console_labels(settings), ensure_ascii=False).replace("<", "\\u003c")

    def render(request: Request, template: str, *, title: str, site: str | None = None, page: str = "",
               **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, {
            "title": title, "site": site, "page": page, "pages": SITE_PAGES, "labels_json": labels,
            "static": STATIC_PATH, **context}, headers=SECURITY_HEADERS)

    def site_id(site: str) -> str:
        if not re.match(ID_PATTERN, site):
            raise not_found("Site")
        return site

    @router.get("/", response_class=RedirectResponse)
    async def root() -> Response:
        return RedirectResponse("/console/", status_code=302)

    @router.get("/console", response_class=RedirectResponse)
    async def console_root() -> Response:
        return RedirectResponse("/console/", status_code=302)

    @router.get("/console/", response_class=HTMLResponse)
    async def sign_in(request: Request) -> HTMLResponse:
        return render(request, "signin.html", title="Connexion")

    @router.get("/console/ops", response_class=HTMLResponse)
    async def ops(request: Request) -> HTMLResponse:
        return render(request, "ops.html", title="Exploitation", page="ops")

    @router.get("/console/sites/{site}", response_class=RedirectResponse)
    @router.get("/console/sites/{site}/", response_class=RedirectResponse)
    async def site_home(site: str) -> Response:
        return RedirectResponse(f"/console/sites/{site_id(site)}/imports", status_code=302)

    @router.get("/console/sites/{site}/imports/{import_id}", response_class=HTMLResponse)
    async def one_import(request: Request, site: str, import_id: str) -> HTMLResponse:
        return render(request, "import.html", title="Détail de l'import", site=site_id(site), page="imports",
                      import_id=import_id)

    @router.get("/console/sites/{site}/{slug}", response_class=HTMLResponse)
    async def site_page(request: Request, site: str, slug: str) -> HTMLResponse:
        found = PAGES.get(slug)
        if found is None:
            raise not_found("Page")
        return render(request, f"{slug}.html", title=found.title, site=site_id(site), page=slug,
                      status_filters=status_filters())

    return router


def _static(_loop: Any) -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


# The console's scripts and styles, mounted beside its pages (shared.web.Service.mounts).
CONSOLE_STATIC = (STATIC_PATH, _static)
