"""The online profile store: each customer's current segment, indexed by customer id, for downstream
systems (marketing platform, API, CRM). The backend is chosen by URL::

    sqlite:///profiles.db              embedded default (relative path; sqlite:////abs/path.db is absolute)
    postgresql://user@host:5432/db     PostgreSQL, needs  pip install 'rfmseg[postgres]'
    redis://host:6379/0                Redis, needs       pip install 'rfmseg[redis]'

Any URL takes ``?namespace=name`` (default ``rfmseg``) to keep several stores apart in one database.

    with open_store("sqlite:///profiles.db") as store:
        store.publish(assignments, run_id, as_of, model_version)
        store.get("C0001")
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from rfmseg.errors import StoreError
from rfmseg.stores.base import PROFILE_FIELDS, ProfileStore, PublishReport, redact_url

__all__ = ["PROFILE_FIELDS", "SCHEMES", "ProfileStore", "PublishReport", "open_store"]

# scheme -> (module, class, driver package, pip extra)
_BACKENDS: dict[str, tuple[str, str, str, str | None]] = {
    "sqlite": ("rfmseg.stores.sqlite", "SqliteStore", "sqlite3", None),
    "postgresql": ("rfmseg.stores.postgres", "PostgresStore", "psycopg", "postgres"),
    "postgres": ("rfmseg.stores.postgres", "PostgresStore", "psycopg", "postgres"),
    "redis": ("rfmseg.stores.redis", "RedisStore", "redis", "redis"),
    "rediss": ("rfmseg.stores.redis", "RedisStore", "redis", "redis"),
}
SCHEMES = tuple(_BACKENDS)
_EXAMPLES = "sqlite:///path/to/profiles.db, postgresql://user@host:5432/db or redis://host:6379/0"


def open_store(url: str, namespace: str | None = None) -> ProfileStore:
    """Connect to the profile store at ``url``; raise StoreError if it is unknown or unreachable.

    ``namespace`` (or the URL parameter ``?namespace=``) isolates one store from others in the same
    database or Redis; the default is ``rfmseg``.
    """
    if not isinstance(url, str) or "://" not in url:
        raise StoreError(
            f"the profile store URL {redact_url(str(url))!r} has no scheme; "
            f"supported: {', '.join(SCHEMES)} (e.g. {_EXAMPLES})"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _BACKENDS:
        raise StoreError(
            f"unsupported profile store scheme {scheme!r} in {redact_url(url)}; "
            f"supported: {', '.join(SCHEMES)} (e.g. {_EXAMPLES})"
        )
    module_name, class_name, driver, extra = _BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == driver and extra:
            raise StoreError(
                f"the {scheme} profile store needs the {driver} package: pip install 'rfmseg[{extra}]'"
            ) from exc
        raise
    store_class: type[ProfileStore] = getattr(module, class_name)
    return store_class(url, namespace=namespace)
