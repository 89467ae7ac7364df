"""The API's schemas, one family per resource (``CustomerPublic``, ``SegmentsPublic``, ...): what each JSON route
declares as its ``response_model`` (so ``/openapi.json`` describes every payload) and the request bodies.

The routes serialise their payloads themselves (orjson, the hot path); these models document them, and
tests/test_api.py validates real responses against the published schema. Two kinds: :class:`Public` for what
the API builds (every key declared), :class:`RunDocument` for what is read from a run's files (the keys below,
plus any a newer pipeline adds).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from rfmseg.io.rules import MAX_ABS_NUMBER

Number = int | float


def _unicode(value: str) -> str:
    """Text a request may carry: JSON lets a string hold a lone surrogate (``"\\ud800"``), which is no character
    and cannot be stored, compared with a stored id or written back."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "the text holds a lone surrogate (\\ud800-\\udfff), which is not a character; send valid Unicode"
        ) from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]
"""A string of a request body: any valid Unicode (a lone surrogate is a 422)."""
Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A number of a request body: Infinity, NaN and numbers too large for a float (1e400) are a 422."""
MAX_COUNT = int(MAX_ABS_NUMBER)
"""the largest whole number a request may carry (a frequency): beyond it no count is real, and 2**63 overflows"""


class Public(BaseModel):
    """A payload the API builds: every key is declared."""

    model_config = ConfigDict(extra="forbid")


class RunDocument(BaseModel):
    """A part of a run's files (summary, registry line, history row): the keys below and any a pipeline adds."""

    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------------------------ customers
class CustomerPublic(Public):
    customer_id: str
    segment: str
    previous_segment: str | None = Field(description="The segment before the last change; null if it never changed")
    segment_since: str = Field(description="As-of date of the run where the customer entered this segment")
    recency_days: Number
    frequency: int
    monetary: float
    aov: float = Field(description="Average order value: monetary / frequency")
    distance: float = Field(description="Distance to the segment's centroid, in scaled units")
    p_alive: float | None = Field(
        default=None,
        description="Probability the customer is still a customer (modified BG/NBD; docs/rhythm.md); null when "
        "the run fitted no rhythm model (not asked, or the preset's events are not purchases)",
    )
    expected_orders_90d: float | None = Field(default=None, description="Orders to expect in the next 90 days")
    expected_value_90d: float | None = Field(
        default=None, description="Spend to expect in the next 90 days (expected orders × Gamma-Gamma spend per order)"
    )
    action: str | None = Field(description="The recommended action for the segment")
    priority: int | None = Field(description="1 = act first")
    run_id: str
    as_of: str
    model_version: str


class LookupRequest(BaseModel):
    ids: list[Text] = Field(description="Customer ids (at most 1,000)", examples=[["C001", "C087"]])


class CustomersLookupPublic(Public):
    run_id: str | None
    customers: list[CustomerPublic] = Field(description="The profiles found, in the order asked")
    missing: list[str] = Field(description="Ids the served run does not have")


class CustomerRunRow(RunDocument):
    """The customer in one run (a row of the run's assignments with the run's label)."""

    run_id: str
    kind: str
    as_of: str
    model_version: str | None
    customer_id: str
    segment: str
    segment_reason: str | None = None
    recency_days: Number
    frequency: int
    monetary: float
    distance: float | None = None
    margin: float | None = None
    p_alive: float | None = None
    expected_orders_90d: float | None = None
    expected_value_90d: float | None = None


class CustomerHistoryPublic(Public):
    customer_id: str
    history: list[CustomerRunRow] = Field(description="Oldest run first")


# ------------------------------------------------------------------------------------------------ changes
class ChangePublic(Public):
    """One change of the profile store's feed: a customer whose segment a publish changed."""

    cursor: str = Field(description="The change's position in the feed (opaque; strictly increasing)")
    customer_id: str
    from_segment: str | None = Field(description="The segment served before; null for a new customer")
    to_segment: str | None = Field(description="The segment published; null for a customer who left")
    reason: Literal["new", "moved", "left"] = Field(
        description="new: not served before; moved: served in another segment; left: not in the published run"
    )
    segment_reason: str | None = Field(description="Why the customer got to_segment (nearest_centroid, cold_start)")
    run_id: str = Field(description="The publish that made the change")
    as_of: str
    model_version: str


class ChangesPublic(Public):
    store: str = Field(description="The profile store read (password hidden)")
    after: str | None = Field(description="The cursor asked for (null: from the oldest change kept)")
    limit: int
    count: int = Field(description="Changes in this page")
    items: list[ChangePublic] = Field(description="Oldest first")
    next: str | None = Field(
        description="Pass as `after` for the next page: the last item's cursor, or `after` when nothing was new"
    )
    more: bool = Field(description="Whether more changes were waiting after this page (ask again at once)")


# ------------------------------------------------------------------------------------------------ segments
class SegmentProfile(RunDocument):
    name: str
    customers: int
    share_customers: float
    revenue: float
    share_revenue: float
    mean_recency_days: float
    mean_frequency: float
    mean_monetary: float
    median_recency_days: float
    median_frequency: float
    median_monetary: float
    aov: float
    action: str | None = None
    description: str | None = None
    reason: str | None = Field(None, description="Why the segment got its name")
    priority: int | None = Field(None, description="1 = act first")
    sequencing: str | None = Field(
        None,
        description="Where the segment sits in the sequence of work, when the data says it: 'the long-term "
        "activation project' for the segment that is both the largest by customers and the smallest by revenue",
    )


class Insight(RunDocument):
    id: str
    text: str
    values: dict[str, Any] = Field(description="The numbers behind the text")


class SegmentsPublic(RunDocument):
    """A run's summary (summary.json; the ``--json`` of ``rfmseg run``)."""

    run_id: str
    as_of: str
    k: int
    transform: str | None = None
    n_customers: int
    total_revenue: float
    currency: str | None = None
    segments: list[SegmentProfile]
    insights: list[Insight] = []
    units: dict[str, Any] | None = None
    pareto: dict[str, list[float]] | None = None
    preset: str | None = None
    rows: dict[str, Any] | None = Field(None, description="Rows read, used and quarantined (by reason)")
    warnings: list[Any] = []
    net_nonpositive: dict[str, Any] | None = None


class SegmentCustomerPublic(Public):
    customer_id: str
    recency_days: Number
    frequency: int
    monetary: float
    aov: float
    distance: float | None
    margin: float | None


class SegmentCustomersPublic(Public):
    run_id: str
    segment: str
    total: int
    page: int
    page_size: int
    pages: int
    sort: str
    order: str
    filters: dict[str, float]
    customers: list[SegmentCustomerPublic]


# ------------------------------------------------------------------------------------------------ score
class RfmRow(BaseModel):
    customer_id: Text
    recency_days: Finite = Field(ge=0, le=MAX_ABS_NUMBER)
    frequency: int = Field(ge=0, le=MAX_COUNT)
    monetary: Finite


class Transaction(BaseModel):
    customer_id: Text
    order_id: Text
    order_date: Text = Field(description="YYYY-MM-DD or an ISO timestamp")
    amount: Finite


class ScoreRequest(BaseModel):
    rfm: list[RfmRow] | None = Field(None, description="Ready RFM rows (give these or transactions)")
    transactions: list[Transaction] | None = Field(None, description="Orders; RFM is computed as of `as_of`")
    as_of: date | None = Field(None, description="Date recency is counted to (transactions only)")
    model: Text = Field("latest", description="The run whose model scores: id, unique prefix or 'latest'")
    cold_start: bool = Field(True, description="Give customers with a thin history the cold-start segment")

    @model_validator(mode="after")
    def one_input(self) -> ScoreRequest:
        if (self.rfm is None) == (self.transactions is None):
            raise ValueError(
                "give either 'rfm' (rows of customer_id, recency_days, frequency, monetary) or "
                "'transactions' (rows of customer_id, order_id, order_date, amount), not both or none"
            )
        return self

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"rfm": [{"customer_id": "N1", "recency_days": 5, "frequency": 30, "monetary": 8000}]},
                {
                    "transactions": [
                        {"customer_id": "N1", "order_id": "1", "order_date": "2024-12-20", "amount": 120.0},
                        {"customer_id": "N1", "order_id": "2", "order_date": "2024-12-27", "amount": 80.0},
                    ],
                    "as_of": "2024-12-31",
                },
            ]
        }
    }


class ScoredCustomerPublic(Public):
    customer_id: str
    segment: str
    segment_reason: str | None
    recency_days: Number
    frequency: int
    monetary: float
    distance: float | None
    margin: float | None
    action: str | None = Field(description="The recommended action of the segment in the model's run")


class ScorePublic(Public):
    model_run: str = Field(description="The run whose model scored")
    model_version: str | None
    as_of: str | None
    n_customers: int
    segments: dict[str, int] = Field(description="Customers per segment")
    cold_start: int = Field(description="Customers given the cold-start segment")
    cold_start_rule: dict[str, Any] | None
    rows: dict[str, Any] = Field(description="Rows read, used and quarantined (by reason)")
    warnings: list[Any]
    customers: list[ScoredCustomerPublic]


# ------------------------------------------------------------------------------------------------ runs
class RunLine(RunDocument):
    """One run of the registry (a line of ``rfmseg runs list``)."""

    run_id: str
    created: str | None
    kind: str
    as_of: str | None
    k: int | None
    customers: int | None
    input: str | None
    model_version: str


class RunsPublic(Public):
    runs: list[RunLine] = Field(description="Oldest first")
    latest: str | None


class RunPublic(RunLine):
    files: list[str]
    manifest: dict[str, Any]
    summary: SegmentsPublic
    model: dict[str, Any] = Field(description="K, transform, names, raw centroids and provenance (or an error)")


class RunViewPublic(RunDocument):
    """What the explorer draws for a run (see docs/explorer.md)."""

    format: int
    generated: str
    run: dict[str, Any]
    summary: SegmentsPublic
    scatter: dict[str, Any] = Field(description="A per-segment sample of the customers")
    choose_k: dict[str, Any] | None = Field(description="The K choice: metrics per K and the votes")
    pareto: dict[str, list[float]]
    quality: dict[str, Any]
    transitions: dict[str, Any] | None = Field(description="From the previous run; null for the first run")
    search: dict[str, Any] | None


class RunLabel(Public):
    run_id: str
    kind: str
    as_of: str


class Move(Public):
    model_config = ConfigDict(populate_by_name=True)

    customer_id: str
    from_: str = Field(alias="from")
    to: str
    reason_from: str | None
    reason_to: str | None
    cause: str | None = Field(
        default=None, description="behaviour, or model_drift: a retrain moved them, their values did not"
    )
    recency_days_from: Number | None
    recency_days_to: Number | None
    frequency_from: int | None
    frequency_to: int | None
    monetary_from: float | None
    monetary_to: float | None


class TransitionsPublic(Public):
    from_run: str
    to_run: str
    from_as_of: str
    to_as_of: str
    segments: list[str]
    rows: list[str] = Field(description="Segments in the from-run (and '(new)'): the matrix rows")
    columns: list[str] = Field(description="Segments in the to-run (and '(gone)'): the matrix columns")
    customers: list[list[int]] = Field(description="Customers moved from row to column")
    revenue: list[list[float]] = Field(description="Their revenue in the to-run")
    revenue_from: list[list[float]] = Field(description="Their revenue in the from-run")
    totals: dict[str, int]
    drift: dict[str, Any] = Field(
        default_factory=dict,
        description="customers: the from -> to counts of the moves a retrain made (model drift); retrain: its report",
    )
    filter: dict[str, str | None]
    moves: list[Move] = Field(description="The customers who moved (within the filter)")


class EarlyWarning(Public):
    id: str
    aliases: list[str] = Field(default_factory=list, description="Former ids of this warning, still accepted")
    title: str
    text: str
    params: dict[str, Any]
    compared: list[RunLabel]
    count: int
    customers: list[dict[str, Any]] = Field(description="With the values that triggered the warning")


class WarningsPublic(Public):
    run_id: str
    as_of: str
    previous_run: str | None
    timeline: list[str]
    warnings: list[EarlyWarning]


# ------------------------------------------------------------------------------------------------ system
class StoreHealth(RunDocument):
    ok: bool
    backend: str | None = None
    url: str | None = None
    run_id: str | None = None
    customers: int | None = None
    error: str | None = None


class LatestRun(Public):
    run_id: str
    as_of: str | None
    created: str | None
    age_seconds: float | None


class HealthPublic(Public):
    status: Literal["ok", "degraded"]
    store: StoreHealth
    served_run: str | None
    latest_run: LatestRun | None


class ErrorItem(Public):
    """One problem of an invalid request, as FastAPI's validation reports it."""

    loc: list[str | int] = Field(description="Where: ['query', 'page'], ['body', 'rfm', 0, 'monetary'], ...")
    msg: str = Field(description="What is wrong with the value")
    type: str = Field(description="The kind of problem: missing, int_parsing, less_than_equal, finite_number, ...")


class ErrorPublic(Public):
    """The body of every error the API answers (400, 401, 404, 405, 410, 413, 422, 500, 503)."""

    detail: str = Field(description="One line: the problem and the fix")
    errors: list[ErrorItem] | None = Field(
        None, description="Invalid input (422 from validation only): each problem, where it is and its kind"
    )


# ------------------------------------------------------------------------------------------------ campaigns
class CampaignPublic(RunDocument):
    """A campaign planned with a randomised holdout (``plan.json``), with ``measured`` once measured."""

    name: str
    action: str
    segments: list[str]
    holdout: float
    treated: int
    control: int
    send_date: str
    run_id: str


class CampaignsPublic(Public):
    campaigns: list[CampaignPublic] = Field(description="Oldest first")
    count: int


class CampaignMeasurePublic(RunDocument):
    """Treated against control per segment and overall: conversion and revenue uplift with intervals."""

    campaign: str
    design: str
    by_segment: dict[str, dict[str, Any]]
    all: dict[str, Any]
    rows: dict[str, Any] = Field(
        description="The transactions' rows: read, used, and quarantined per reason (with bad_rows quarantine)"
    )
    quarantine: str = Field(description="The file of the rows set aside, each with its reason (on the server)")


class CampaignSizePublic(RunDocument):
    """The customers and holdout a campaign needs to detect an uplift (power 80 %)."""

    baseline: float
    uplift: float
    customers_needed: int
    control_needed: int


class CampaignPlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=64)
    segments: list[Text] = Field(min_length=1, max_length=50)
    action: Text = "win_back"
    holdout: Text = "10%"
    seed: int = Field(default=7, ge=0, le=2**31 - 1)
    rank_by: Text = "monetary"
    bands: int = Field(default=4, ge=1, le=20)
    run: Text = "latest"
    send_date: Text | None = None


class CampaignMeasureBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: Text = Field(min_length=1, description="Path of the transactions file on the server")
    window: Text = "30d"
    confidence: Finite = Field(default=0.95, ge=0.5, le=0.999)
    bad_rows: Literal["error", "quarantine"] | None = Field(
        None,
        description="error: stop at the first bad row; quarantine: set bad rows aside with their reason and measure "
        "the rest (default: the preset's, else error)",
    )
