"""The change feed: who changed segment in the profile store, one page after a cursor
(:func:`rfmseg.questions.feed_page`, as the MCP tool ``changes_since`` and `rfmseg ask changes-since` read it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from rfmseg.questions import MAX_FEED_PAGE, feed_page
from rfmseg.questions.feed import MAX_CURSOR
from rfmseg.service.deps import StateDep, json_response
from rfmseg.service.models import ChangesPublic, ErrorPublic

router = APIRouter(tags=["changes"])
DEFAULT_LIMIT = 1_000


@router.get(
    "/changes",
    response_model=ChangesPublic,
    summary="Who changed segment: the profile store's change feed, after a cursor",
    responses={
        410: {
            "model": ErrorPublic,
            "description": "The cursor is older than the feed's trim point: reload, start again",
        }
    },
)
def changes(
    state: StateDep,
    after: Annotated[
        str | None,
        Query(
            max_length=MAX_CURSOR,
            description="The `next` of the page read before; leave it out to read from the oldest change kept",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_PAGE, description="Most changes in the page (1-10,000)")] = (
        DEFAULT_LIMIT
    ),
) -> Response:
    """The changes every publish appended after cursor ``after``, oldest first: customer, from_segment,
    to_segment, reason (new, moved, left), the run and its as-of date. Save ``next`` once the page is applied
    and pass it as ``after`` next time; ``more`` says whether to ask again at once."""
    return json_response(feed_page(state.store(), after, limit))
