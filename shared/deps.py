"""Route dependencies every service's api.py uses: who is calling (bearer token → Principal) and the
site and establishment ids of the paths, validated once, the same way everywhere.

    async def route(site: SiteId, who: SitePrincipal) -> …   # 401 without a token, 404 for another site

Cross-site access is 404, so that a site cannot even learn that another exists (design.md §5).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.establishments import KnownEstablishments
from shared.messages import ID_PATTERN
from shared.settings import Settings
from shared.web import (
    Principal,
    TokenRevocations,
    caller,
    not_found,
    require_admin,
    require_site,
)

SiteId = Annotated[str, Path(pattern=ID_PATTERN, description="Site (deposit space) id, e.g. `4817`")]
EstablishmentId = Annotated[str, Path(pattern=ID_PATTERN, description="Establishment id, e.g. `1754`")]
EntId = Annotated[str, Path(pattern=r"^[^/\x00-\x1f]{1,128}$",
                            description="A person's id in the ENT directory (`id` of PUT …/directory)")]

_bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="The admin token (EDT_ADMIN_TOKEN) or a site token (POST /sites/{site}/tokens)")


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


async def current_principal(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The caller (shared.web.caller)."""
    revocations: TokenRevocations | None = getattr(request.app.state, "revocations", None)
    return await caller(settings_of(request), revocations, credentials.credentials if credentials else None)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def optional_principal(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal | None:
    """None without an Authorization header (a route that also takes another proof, e.g. a feed's secret);
    401 for a bad token."""
    if credentials is None:
        return None
    return await current_principal(request, credentials)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    require_admin(principal)
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]


async def site_principal(principal: CurrentPrincipal, site: SiteId) -> Principal:
    require_site(principal, site)
    return principal


SitePrincipal = Annotated[Principal, Depends(site_principal)]


async def known_establishment(request: Request, est: EstablishmentId, site: SiteId, _: SitePrincipal) -> str:
    """An establishment of the path's site, else 404 like another site's (after the caller's own 401/404:
    an anonymous caller learns nothing of which establishments exist)."""
    known: KnownEstablishments | None = getattr(request.app.state, "establishments", None)
    if known is not None and not await known.exists(site, est):
        raise not_found("Establishment")
    return est


KnownEstablishment = Annotated[str, Depends(known_establishment)]
