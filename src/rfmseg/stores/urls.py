"""Store URLs and the messages that name them: namespaces, password redaction, and the one-line
StoreErrors for a store that cannot be reached or failed an operation (passwords scrubbed)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

from rfmseg.errors import ParameterError, StoreError

DEFAULT_NAMESPACE = "rfmseg"
_NAMESPACE_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")

_AUTHORITY_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)")
_PASSWORD_PARAM_RE = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with any password (in the authority or a ``password=`` parameter) replaced by ``***``."""

    def hide(match: re.Match[str]) -> str:
        userinfo, at, hostport = match.group(2).rpartition("@")
        user, colon, _password = userinfo.partition(":")
        return match.group(1) + (f"{user}:***@{hostport}" if at and colon else match.group(2))

    return _PASSWORD_PARAM_RE.sub(r"\1***", _AUTHORITY_RE.sub(hide, url, count=1))


def url_secrets(url: str) -> list[str]:
    """The passwords in ``url``, to scrub from driver messages."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password] if parts.password else []
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    except ValueError:
        return []
    return secrets


def split_namespace(url: str, namespace: str | None) -> tuple[str, str]:
    """Remove the ``namespace`` query parameter from ``url``; return (url, namespace) with the
    explicit argument winning over the parameter and :data:`DEFAULT_NAMESPACE` as the fallback."""
    head, _, tail = url.partition("?")
    query, hash_, fragment = tail.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    from_url = [v for k, v in pairs if k == "namespace"]
    rest = [(k, v) for k, v in pairs if k != "namespace"]
    # rebuilt by hand: urlunsplit would turn sqlite:////abs/path into sqlite://abs/path
    clean = head + (f"?{urlencode(rest)}" if rest else "") + hash_ + fragment
    chosen = namespace or (from_url[-1] if from_url else DEFAULT_NAMESPACE)
    if not _NAMESPACE_RE.fullmatch(chosen):
        raise ParameterError(
            f"store namespace {chosen!r} is not allowed; use 1-40 characters of a-z, 0-9 and _, starting with a letter"
        )
    return clean, chosen


_REASONS = (
    (("connection refused", "error 111"), "connection refused"),
    (("timed out", "timeout expired", "timeout"), "timed out"),
    (
        (
            "could not translate host name",
            "name or service not known",
            "nodename nor servname",
            "temporary failure in name resolution",
            "error -2 connecting",
            "error -3 connecting",
        ),
        "unknown host",
    ),
    (
        (
            "password authentication failed",
            "authentication failed",
            "invalid password",
            "wrongpass",
            "noauth",
            "authentication required",
            "no password supplied",
        ),
        "authentication failed",
    ),
    (("no route to host",), "no route to host"),
    (("network is unreachable",), "network unreachable"),
    (("connection reset", "server closed the connection", "connection closed"), "connection lost"),
)


def describe_failure(exc: BaseException, secrets: list[str] | None = None) -> str:
    """A short, one-line, password-free reason for a driver error."""
    text = str(exc).strip()
    low = text.lower()
    for needles, reason in _REASONS:
        if any(needle in low for needle in needles):
            return reason
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    line = line.removeprefix("connection failed:").strip()
    for secret in secrets or []:
        line = line.replace(secret, "***")
    return line[:200]


def unreachable(url_display: str, exc: BaseException, secrets: list[str] | None = None) -> StoreError:
    """The StoreError for a store that cannot be reached (to raise ``from exc``)."""
    return StoreError(
        f"cannot reach the profile store at {url_display} ({describe_failure(exc, secrets)}); start it or fix "
        "the store URL ({store})",
        param="store",
    )


def failed(url_display: str, action: str, exc: BaseException, secrets: list[str] | None = None) -> StoreError:
    """The StoreError for an operation the store refused or lost half way."""
    return StoreError(f"the profile store at {url_display} failed to {action} ({describe_failure(exc, secrets)})")


# the refusals of a staged publish, the same words on every backend
