"""OCPI 2.2.1's credentials module without I/O (docs/ocpi.md, "Registration"): what a request
with a given token may do, the partner's credentials object checked, its versions and version
details read, and our own credentials object.

The exchange: the partner holds a registration token (A) from the operator; it POSTs its
credentials (its token B, its versions URL, its roles); we read its versions and the details of
2.2.1 with B, then answer with ours carrying a new credentials token (C), and A is gone. PUT does
the same with C (a new C); DELETE removes C; GET shows ours."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from . import model
from .tokens import CREDENTIALS, PARTNER_TOKEN_RE, REGISTRATION

ROLES = frozenset({"CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"})  # OCPI 2.2.1 types, Role
IMAGE_CATEGORIES = frozenset({"CHARGER", "ENTRANCE", "LOCATION", "NETWORK", "OPERATOR", "OTHER", "OWNER"})
MAX_URL = 255  # OCPI's URL type: string(255)
MAX_ROLES = 100  # far above any platform's parties; bounds what we check and keep


class CredentialsRefusal(Exception):
    """An OCPI refusal: the HTTP status, OCPI's status code, a short machine reason and the detail."""

    def __init__(self, http_status: int, status_code: int, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.http_status, self.status_code, self.reason, self.detail = http_status, status_code, reason, detail

    @property
    def message(self) -> str:
        return f"{self.reason}: {self.detail}"


def bad_object(detail: str) -> CredentialsRefusal:
    return CredentialsRefusal(400, model.INVALID_PARAMETERS, "bad_credentials", detail)


def partner_unusable(detail: str) -> CredentialsRefusal:
    return CredentialsRefusal(200, model.UNABLE_TO_USE_CLIENT_API, "partner_unusable", detail)


# What each method does for the kind of token it comes with (None: no such token); the outcome
# names the step, a refusal says why not (405 on the registration state, as OCPI prescribes).
STEPS = {
    ("GET", CREDENTIALS): "show",
    ("POST", REGISTRATION): "register",
    ("PUT", CREDENTIALS): "update",
    ("DELETE", CREDENTIALS): "unregister",
}


def step(method: str, kind: str | None) -> str:
    """The step `method` takes with a token of `kind`, or the CredentialsRefusal."""
    if kind is None:
        raise CredentialsRefusal(401, model.CLIENT_ERROR, "unknown_token",
                                 "missing or unknown token (Authorization: Token ...)")
    found = STEPS.get((method, kind))
    if found is not None:
        return found
    if kind == CREDENTIALS:
        raise CredentialsRefusal(405, model.CLIENT_ERROR, "already_registered",
                                 "this token is registered already: PUT updates the credentials, DELETE ends them")
    raise CredentialsRefusal(405, model.CLIENT_ERROR, "not_registered",
                             "a registration token only POSTs the partner's credentials")


@dataclass(frozen=True)
class PartnerCredentials:
    token: str  # token B: ours to call the partner with
    url: str  # the partner's versions endpoint
    roles: tuple[dict, ...]


def check_url(value, name: str) -> str:
    """`value` when it is an absolute http or https URL of OCPI's length; the detail otherwise."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL:
        raise ValueError(f"{name} must be a URL of 1-{MAX_URL} characters")
    if any(not 0x21 <= ord(c) <= 0x7e for c in value):
        raise ValueError(f"{name} must be printable ASCII without whitespace")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise ValueError(f"{name} is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{name} must be an http or https URL with a host")
    return value


def _url(value, name: str) -> str:
    """check_url for a field of the partner's object: a 2001 refusal naming it."""
    try:
        return check_url(value, name)
    except ValueError as e:
        raise bad_object(str(e)) from None


def _text(obj: dict, name: str, limit: int, where: str, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise bad_object(f"{where}{name} must be a string of 1-{limit} characters")
    return value


def _image(logo, where: str) -> None:
    if not isinstance(logo, dict):
        raise bad_object(f"{where}logo must be an Image object")
    _url(logo.get("url"), f"{where}logo.url")
    if logo.get("thumbnail") is not None:
        _url(logo["thumbnail"], f"{where}logo.thumbnail")
    if logo.get("category") not in IMAGE_CATEGORIES:
        raise bad_object(f"{where}logo.category must be one of {', '.join(sorted(IMAGE_CATEGORIES))}")
    _text(logo, "type", 4, f"{where}logo.")
    for side in ("width", "height"):
        v = logo.get(side)
        if v is not None and (type(v) is not int or not 0 <= v <= 99_999):
            raise bad_object(f"{where}logo.{side} must be an integer of at most 5 digits")


def _role(obj, i: int) -> dict:
    where = f"roles[{i}]."
    if not isinstance(obj, dict):
        raise bad_object(f"roles[{i}] must be a CredentialsRole object")
    if obj.get("role") not in ROLES:
        raise bad_object(f"{where}role must be one of {', '.join(sorted(ROLES))}")
    party_id, country = obj.get("party_id"), obj.get("country_code")
    if not isinstance(party_id, str) or len(party_id) != 3 or not party_id.isascii() or not party_id.isalnum():
        raise bad_object(f"{where}party_id must be 3 of A-Z a-z 0-9")
    if not isinstance(country, str) or len(country) != 2 or not country.isascii() or not country.isalpha():
        raise bad_object(f"{where}country_code must be an ISO 3166-1 alpha-2 code")
    details = obj.get("business_details")
    if not isinstance(details, dict):
        raise bad_object(f"{where}business_details must be a BusinessDetails object")
    _text(details, "name", 100, f"{where}business_details.")
    if details.get("website") is not None:
        _url(details["website"], f"{where}business_details.website")
    if details.get("logo") is not None:
        _image(details["logo"], f"{where}business_details.")
    return {"role": obj["role"], "party_id": party_id.upper(), "country_code": country.upper()}


def parse_credentials(obj) -> PartnerCredentials:
    """The partner's credentials object (a request's JSON body) checked by OCPI 2.2.1's rules
    (mod_credentials Credentials, CredentialsRole; mod_locations BusinessDetails, Image); a
    CredentialsRefusal (2001) naming the first field that breaks them. Fields OCPI does not name
    are ignored, as its transport rules ask."""
    if not isinstance(obj, dict):
        raise bad_object("the body must be a Credentials object")
    token = obj.get("token")
    if not isinstance(token, str) or not PARTNER_TOKEN_RE.match(token):
        raise bad_object("token must be 1-64 printable ASCII characters without whitespace")
    url = _url(obj.get("url"), "url")
    roles = obj.get("roles")
    if not isinstance(roles, list) or not 0 < len(roles) <= MAX_ROLES:
        raise bad_object(f"roles must be a list of 1-{MAX_ROLES} CredentialsRole objects")
    return PartnerCredentials(token, url, tuple(_role(r, i) for i, r in enumerate(roles)))


def our_credentials(token: str, versions_url: str, *, country_code: str, party_id: str, business_name: str) -> dict:
    """Our Credentials object: the partner's token to us, our versions URL, our one CPO role."""
    return {"token": token, "url": versions_url,
            "roles": [{"role": "CPO", "party_id": party_id, "country_code": country_code,
                       "business_details": {"name": business_name}}]}


def _data(answer, what: str):
    """The `data` of a partner's successful OCPI answer; a 3001 refusal otherwise."""
    if not isinstance(answer, dict) or "data" not in answer:
        raise partner_unusable(f"the partner's {what} is not an OCPI response")
    if answer.get("status_code") != model.SUCCESS:
        raise partner_unusable(f"the partner's {what} answered status_code {answer.get('status_code')!r}")
    return answer["data"]


def details_url(versions_answer) -> str:
    """The URL of the partner's 2.2.1 details, from its versions answer: a 3001 refusal when the
    answer is not a versions list, 3002 when 2.2.1 is not in it."""
    data = _data(versions_answer, "versions endpoint")
    if not isinstance(data, list) or not all(isinstance(v, dict) for v in data):
        raise partner_unusable("the partner's versions endpoint did not list versions")
    urls = [v.get("url") for v in data if v.get("version") == model.VERSION]
    if not urls:
        raise CredentialsRefusal(200, model.UNSUPPORTED_VERSION, "unsupported_version",
                                 f"the partner's versions endpoint does not list OCPI {model.VERSION}")
    try:
        return check_url(urls[0], "the partner's 2.2.1 url")
    except ValueError as e:
        raise partner_unusable(str(e)) from None


def check_details(details_answer) -> list[dict]:
    """The endpoints of the partner's 2.2.1 details answer; a 3001 refusal when it is not one."""
    data = _data(details_answer, "version details")
    if not isinstance(data, dict) or data.get("version") != model.VERSION:
        raise partner_unusable(f"the partner's version details are not those of {model.VERSION}")
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list) or not all(
            isinstance(e, dict) and isinstance(e.get("identifier"), str) and e.get("role") in ("SENDER", "RECEIVER")
            and isinstance(e.get("url"), str) for e in endpoints):
        raise partner_unusable("the partner's version details do not list endpoints (identifier, role, url)")
    return endpoints
