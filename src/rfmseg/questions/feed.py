"""The change feed: who changed segment in the online profile store, read page by page with a cursor.

Every publish appends one change per customer whose segment it changed (new, moved, left) to the store's
feed (:meth:`rfmseg.stores.ProfileStore.changes`, docs/stores.md). :func:`feed_page` is one page as every
adapter returns it (the API's ``GET /changes`` with the app's store); :func:`changes_since` is the question
(``rfmseg ask changes-since``, the MCP tool ``changes_since``), which opens the configured store.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.settings import existing_store_url
from rfmseg.stores import FeedCursorAheadError, FeedTrimmedError, ProfileStore, open_store
from rfmseg.stores.base import cursor_ahead

MAX_FEED_PAGE = 10_000
"""Most changes one page holds, over HTTP and MCP (the store allows more per call from Python)."""
MAX_CURSOR = 64

Cursor = Annotated[
    str | None,
    Field(
        max_length=MAX_CURSOR,
        description="The `next` cursor of the page read before; leave it out to read from the oldest change kept.",
    ),
]
FeedLimit = Annotated[int, Field(ge=1, le=MAX_FEED_PAGE, description="Most changes to return (1-10,000).")]
REASONS = ("new", "moved", "left")


def feed_page(store: ProfileStore, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
    """The changes after cursor ``after`` (None: from the oldest kept), at most ``limit``, oldest first:
    ``{store, after, limit, count, items, next, more}``. ``next`` is what to pass as ``after`` for the next
    page (the last item's cursor, or ``after`` when nothing was new); ``more`` says whether more changes were
    waiting. A cursor that is not one of this store's, past its last change, or older than the feed's trim
    point, is refused."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FEED_PAGE:
        raise ParameterError(f"{{limit}} {limit!r} should be a whole number from 1 to {MAX_FEED_PAGE:,}", param="limit")
    try:
        page = store.changes(after, limit)
    except FeedTrimmedError as exc:
        raise FeedTrimmedError(
            exc.message.removesuffix(" (after=None)") + " (leave {after} out)", param="after"
        ) from None
    except FeedCursorAheadError as exc:
        raise cursor_ahead(exc.cursor, exc.last, store.url_display, "leave {after} out") from None
    except ParameterError:
        raise ParameterError(
            f"{{after}} {after!r} is not a cursor of the change feed of the profile store at {store.url_display}; "
            "pass the `next` of a page read from it, or leave {after} out to read from the oldest change",
            param="after",
        ) from None
    return {
        "store": store.url_display,
        "after": after,
        "limit": limit,
        "count": len(page.rows),
        "items": page.rows,
        "next": page.next_cursor,
        "more": page.more,
    }


def changes_since(
    runs_dir: str | Path, after: Cursor = None, limit: FeedLimit = 100, store: str | None = None
) -> dict[str, Any]:
    """Who changed segment in the online profile store after a cursor (its change feed), oldest first: each
    change with the customer, the segment before and after (from_segment, to_segment), the reason (new,
    moved, left: no longer in the published run), the run and its as-of date. Pass the returned `next` as
    `after` to continue; `more` says whether more changes wait. Leave `after` out to start from the oldest."""
    url = existing_store_url(runs_dir, store)
    if url is None:
        raise NotFoundError(
            f"no profile store to read: none is configured and {Path(runs_dir) / 'profiles.db'} does not exist; "
            "set {store} (or RFMSEG_STORE), or publish a run first (`rfmseg publish latest`)",
            param="store",
        )
    with open_store(url) as opened:
        page = feed_page(opened, after, limit)
    items = page["items"]
    where = f"after cursor {after}" if after is not None else "from the oldest kept"
    if items:
        reasons = Counter(i["reason"] for i in items)
        counts = ", ".join(f"{reasons[r]:,} {r}" for r in REASONS if reasons[r])
        runs = list(dict.fromkeys(f"{i['run_id']} (as of {i['as_of']})" for i in items))
        more = (
            f"; more changes wait: ask again with after={page['next']}"
            if page["more"]
            else f"; that is all for now (next time: after={page['next']})"
        )
        from_runs = f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}"
        answer = f"{len(items):,} changes {where} ({counts}), from {from_runs}{more}."
    else:
        answer = f"No change {where} yet; ask again after the next publish."
    return {
        "question": f"Who changed segment in the profile store {where}?",
        "answer": answer,
        "params": {"after": after, "limit": limit},
        **page,
    }
