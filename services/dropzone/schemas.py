"""Request and response models of the dropzone routes (design.md §5): sites, establishments, site tokens,
deposit accounts, REST uploads."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, StrictBool

from shared.messages import ID_PATTERN
from shared.web import Instant, Page

UAI_PATTERN = r"^[0-9]{7}[A-Za-z]$"


class DepositMode(StrEnum):
    """What a deposit may ask for (an `undo` import is made by the history API only)."""

    MANUAL = "manual"
    AUTO = "auto"


class SiteCreate(BaseModel):
    id: str = Field(pattern=ID_PATTERN, examples=["4817"])
    name: str = Field(min_length=1, max_length=255)
    require_encryption: StrictBool = False


class SiteUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    require_encryption: StrictBool | None = None


class EstablishmentCreate(BaseModel):
    """PUT creates the establishment or replaces its UAI and name."""

    uai: str = Field(pattern=UAI_PATTERN, description="UAI/RNE, e.g. 0490856P")
    name: str = Field(min_length=1, max_length=255)


class EstablishmentRead(BaseModel):
    id: str
    uai: str
    name: str


class EstablishmentList(Page[EstablishmentRead]):
    pass


class WebdavUrl(BaseModel):
    """A WebDAV deposit URL: « Tous les établissements » (establishment null), then one per establishment."""

    label: str
    establishment: str | None
    url: str


class SiteRead(BaseModel):
    id: str
    name: str
    require_encryption: bool
    created_at: Instant
    first_import_at: Instant | None
    automatic_import_available: bool = Field(description="A manual import has been integrated (seed 001)")
    establishments: list[EstablishmentRead]
    accounts: int = Field(description="Number of deposit accounts")
    urls: list[WebdavUrl]


class TokenCreate(BaseModel):
    label: str | None = Field(default=None, max_length=255)
    expires_in_s: int | None = Field(default=None, ge=1, le=10 * 366 * 24 * 3600,
                                     description="Seconds the token works for (its `expires_at` is signed into "
                                                 "it); none: until revoked")


class TokenInfo(BaseModel):
    """A site token as listed: never its secret."""

    id: str
    site: str
    label: str | None
    created_at: Instant
    expires_at: Instant | None
    expired: bool


class TokenRead(TokenInfo):
    """A new site token, shown once (only its hash is stored)."""

    token: str


class TokenList(Page[TokenInfo]):
    pass


class AccountCreate(BaseModel):
    display_name: str | None = Field(default=None, max_length=255)
    first_name: str = Field(min_length=1, max_length=120)
    last_name: str = Field(min_length=1, max_length=120)
    notify: StrictBool = True


class AccountUpdate(BaseModel):
    notify: StrictBool | None = None
    display_name: str | None = Field(default=None, max_length=255)


class AccountRead(BaseModel):
    login: str = Field(examples=["emp.thibault.bourgeois"])
    site: str
    display_name: str
    first_name: str
    last_name: str
    notify: bool
    created_at: Instant
    password_changed_at: Instant
    locked: bool = Field(description="Locked after too many failed WebDAV logins")
    last_login_at: Instant | None


class AccountCredentialsRead(AccountRead):
    """A new or regenerated deposit account: its password, shown once, and its WebDAV URLs."""

    password: str = Field(min_length=10, max_length=10)
    urls: list[WebdavUrl]


class AccountList(Page[AccountRead]):
    pass


class UploadLinks(BaseModel):
    import_: str = Field(alias="import")


class ImportAccepted(BaseModel):
    """202: the import is recorded (readable at once at `links.import`) and on its way."""

    import_id: str
    links: UploadLinks


class WebdavLockRead(BaseModel):
    """A WebDAV lock held in the site's folder (its token stays its owner's secret)."""

    id: str = Field(description="The lock's id for `DELETE …/webdav-locks/{id}` (not its token)")
    path: str = Field(examples=["/webdav/4817/1754/EDT_To_KOSMOS_0490856P.xml"])
    account: str = Field(description="The deposit account that took it")
    scope: str = Field(examples=["exclusive"])
    depth: str = Field(examples=["0"])
    expires_at: Instant
    expires_in_s: int = Field(ge=0)


class WebdavLockList(Page[WebdavLockRead]):
    pass


class WebdavLocksReleased(BaseModel):
    released: int = Field(ge=0, description="How many locks were released")
