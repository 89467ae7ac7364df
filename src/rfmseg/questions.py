"""The marketer's questions, answered from the runs (the history) and the campaign touches.

Each question is one function returning a JSON-able dict: ``question`` (what was asked, with the
parameters filled in), ``answer`` (one plain sentence), ``params``, and the numbers and rows the answer was
computed from. Numbers, thresholds and segment names are parameters; nothing about the study is assumed.

History: every run folder is a snapshot of all customers as of its as-of date. Snapshots are ordered by
as-of date (ties: the run created last wins, so a retrain replaces a refresh of the same day). "The latest
run" is the last snapshot in that order. "N days ago" is the earlier snapshot whose as-of date is closest to
the latest as-of minus N days; the real gap is reported with every answer.

Distances for trends ("tracking toward", "trending toward") are measured with ONE yardstick: the latest
run's model (its transform and centroids) applied to the customer's RFM values in each snapshot, so that a
change in distance is a change in the customer's behaviour, not a refit moving the centroids.

The formulas (also in docs/agents.md):

* campaign fit: ``fit`` = how many of the campaign kind's keywords (:data:`KIND_KEYWORDS`) occur in the
  segment's recommended action; segments are ranked by fit, then by revenue at stake (the segment's revenue:
  sum of its customers' monetary value).
* discount response score = (w_aov × AOV / max AOV + w_freq × frequency / max frequency) × 0.5^(recency /
  half-life) × response factor, maxima taken within the segment; response factor = 2 × (r + 1) / (n + 2)
  for n past touches of the kind of which r were responded to or converted (1.0 with no history).
* intervention effect: customers of a segment at the start run; contacted = at least one touch (of the kind)
  sent in [start as-of, end as-of); control = no touch at all in that window; moved = in one of the target
  segments at the end run. The data is *too thin* when fewer than ``min_contacted`` (default 30) were
  contacted or fewer than ``min_control`` (default 30) were not.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.io.readers import sql_string
from rfmseg.model import SegmentModel
from rfmseg.runs import DEFAULT_RUNS_DIR, Run
from rfmseg.runs import history as run_history
from rfmseg.runs.history import RunMeta
from rfmseg.touches import normalise_kind, register_touches

RFM = ("recency_days", "frequency", "monetary")

KIND_KEYWORDS: dict[str, tuple[str, ...]] = {
    "loyalty_offer": ("loyalty", "early access", "vip", "membership", "premium", "concierge"),
    "discount": ("discount", "incentive", "offer", "limited-time"),
    "win_back": ("win-back", "reactivation", "outreach", "exit survey", "reminder"),
    "onboarding": ("onboarding", "welcome", "first-repeat", "second order", "discovery"),
    "cross_sell": ("cross-sell", "recommendation", "bundle", "second-category", "discovery"),
    "subscription": ("subscription", "membership", "volume"),
    "survey": ("survey", "feedback"),
    "newsletter": ("new products", "discovery", "reminder"),
}
"""Which words in a segment's recommended action make a campaign kind fit it (matched case-insensitively
at the start of a word, hyphens and spaces alike). Data, not code: pass ``keywords`` to override."""


# ================================================================================================ history


@dataclass(frozen=True)
class Snapshot:
    """One run seen as a point in the history."""

    run_id: str
    as_of: date
    created: str
    path: Path

    @property
    def run(self) -> Run:
        return Run(self.run_id, self.path)

    def brief(self) -> dict[str, str]:
        return {"run_id": self.run_id, "as_of": self.as_of.isoformat()}


def _snapshot(meta: RunMeta) -> Snapshot:
    return Snapshot(meta.run_id, meta.date, meta.created.isoformat(), Path(meta.file).parent)


def no_runs_error(runs_dir: Path) -> NotFoundError:
    return NotFoundError(
        f"no runs in {runs_dir}; run `rfmseg run FILE` (or `rfmseg demo`) first, or point --runs-dir / "
        "RFMSEG_RUNS_DIR at the folder that holds them"
    )


class History:
    """The runs of one runs folder as an ordered history (the timeline of :mod:`rfmseg.runs.history`: one run per
    as-of date, the last written), with cached reads of their files."""

    def __init__(self, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> None:
        self.runs_dir = Path(runs_dir)
        self.all = [_snapshot(m) for m in run_history.run_metas(self.runs_dir)]
        self.snapshots = [_snapshot(m) for m in run_history.timeline(self.runs_dir)] if self.all else []

    # ------------------------------------------------------------------------------------------ selection
    def resolve(self, run: str | None = "latest") -> Snapshot:
        """``latest`` (the last snapshot), a run id or a unique prefix of one."""
        if not self.all:
            raise no_runs_error(self.runs_dir)
        if run in (None, "", "latest"):
            return self.snapshots[-1]
        found = run_history.resolve(self.runs_dir, run)
        return next(s for s in self.all if s.run_id == found.run_id)

    def before(self, snap: Snapshot) -> list[Snapshot]:
        """The history up to and including ``snap`` (one snapshot per day, ``snap`` itself last)."""
        earlier = [s for s in self.snapshots if s.as_of < snap.as_of]
        return [*earlier, snap]

    def recent(self, snap: Snapshot, n: int) -> list[Snapshot]:
        if n < 1:
            raise ParameterError(f"runs={n} should be >= 1")
        return self.before(snap)[-n:]

    def baseline(self, snap: Snapshot, days: int) -> Snapshot:
        """The earlier snapshot whose as-of date is closest to ``snap.as_of - days`` (ties: the earlier)."""
        if days < 1:
            raise ParameterError(f"the period of {days} days should be at least 1 day")
        earlier = [s for s in self.snapshots if s.as_of < snap.as_of]
        if not earlier:
            raise NotFoundError(
                f"there is no run before {snap.run_id} (as of {snap.as_of}) to compare with; "
                "history questions need at least two runs at different as-of dates (`rfmseg refresh` daily, "
                "or `rfmseg run FILE --as-of DATE`)"
            )
        target = snap.as_of - timedelta(days=days)
        return min(earlier, key=lambda s: (abs((s.as_of - target).days), s.as_of))

    # ------------------------------------------------------------------------------------------ reading
    def summary(self, snap: Snapshot) -> dict[str, Any]:
        return copy.deepcopy(_read_json(str(snap.path / "summary.json")))

    def model(self, snap: Snapshot) -> SegmentModel:
        return _read_model(str(snap.path / "model.json"))

    def assignments(self, snap: Snapshot) -> pd.DataFrame:
        return _read_assignments(str(snap.path / "assignments.parquet")).copy()

    def segments(self, snap: Snapshot) -> list[str]:
        return [s["name"] for s in self.summary(snap)["segments"]]

    def segment(self, snap: Snapshot, name: str) -> str:
        """The segment called ``name`` in ``snap`` (any case, or a slug such as loyal-buyers)."""
        return match_segment(name, self.segments(snap), snap.run_id)

    def customer_rows(self, snaps: Sequence[Snapshot], customer_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Assignments of ``snaps`` stacked, with run_id, as_of and step (0 = first snapshot) columns."""
        if not snaps:
            return pd.DataFrame()
        con = duckdb.connect()
        try:
            runs = pd.DataFrame(
                {
                    "path": [str(s.path / "assignments.parquet") for s in snaps],
                    "run_id": [s.run_id for s in snaps],
                    "as_of": [s.as_of for s in snaps],
                    "step": list(range(len(snaps))),
                }
            )
            con.register("runs_meta", runs)
            files = ", ".join(sql_string(p) for p in runs["path"])
            where = ""
            if customer_ids is not None:
                con.register("wanted", pd.DataFrame({"customer_id": list(customer_ids)}))
                where = "WHERE a.customer_id IN (SELECT customer_id FROM wanted)"
            return con.sql(
                "SELECT a.customer_id, a.segment, a.recency_days, a.frequency, a.monetary, a.distance, "
                "m.run_id, m.as_of, m.step "
                f"FROM read_parquet([{files}], filename = true, union_by_name = true) a "
                "JOIN runs_meta m ON a.filename = m.path "
                f"{where} ORDER BY a.customer_id, m.step"
            ).df()
        finally:
            con.close()


@lru_cache(maxsize=64)
def _read_json(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@lru_cache(maxsize=16)
def _read_model(path: str) -> SegmentModel:
    return SegmentModel.load(Path(path))


@lru_cache(maxsize=4)
def _read_assignments(path: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def slug(name: str) -> str:
    """'Loyal Buyers' -> 'loyal-buyers', "Can't Lose Them" -> 'can-t-lose-them'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def match_segment(name: str, valid: Sequence[str], where: str = "the latest run") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"give a segment name; segments in {where}: {', '.join(valid)}")
    for v in valid:
        if v == name:
            return v
    for v in valid:
        if v.lower() == name.strip().lower() or slug(v) == slug(name):
            return v
    raise NotFoundError(f"unknown segment '{name}'; segments in {where}: {', '.join(valid)}")


def _money(x: float) -> str:
    return f"{'-' if x < 0 else ''}${abs(x):,.0f}"


def _r(x: float, nd: int = 4) -> float:
    return float(round(float(x), nd))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain JSON-able dicts (numpy scalars, NaN -> None, dates -> ISO)."""
    out = []
    for row in df.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, np.generic):
                v = v.item()
            if (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or v is pd.NA:
                v = None
            elif isinstance(v, (pd.Timestamp, datetime, date)):
                v = v.isoformat()
            clean[k] = v
        out.append(clean)
    return out


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise ParameterError(f"limit={limit} should be a whole number >= 1")
    return limit


# ================================================================================================ lookups


def list_segments(runs_dir: str | Path = DEFAULT_RUNS_DIR, run: str = "latest") -> dict[str, Any]:
    """The segment table of a run (the ``--json`` schema of ``rfmseg show``)."""
    h = History(runs_dir)
    snap = h.resolve(run)
    s = h.summary(snap)
    return {
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "n_customers": s["n_customers"],
        "total_revenue": s["total_revenue"],
        "segments": s["segments"],
        "insights": s.get("insights", []),
    }


def segment_profile(
    runs_dir: str | Path = DEFAULT_RUNS_DIR, segment: str = "Champions", run: str = "latest", examples: int = 5
) -> dict[str, Any]:
    """One segment's profile row, its centroid, and its most typical customers (nearest the centroid)."""
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    row = next(s for s in h.summary(snap)["segments"] if s["name"] == name)
    model = h.model(snap)
    centroid = None
    if name in model.names_:
        c = model.centroids_raw_[model.names_.index(name)]
        centroid = {f: _r(v, 2) for f, v in zip(RFM, c, strict=True)}
    a = h.assignments(snap)
    members = a[a["segment"] == name].sort_values(["distance", "customer_id"])
    ex = members.head(max(0, examples))[["customer_id", *RFM, "distance"]]
    return {
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "segment": name,
        "slug": slug(name),
        "profile": row,
        "centroid": centroid,
        "examples": _records(ex),
    }


def customer_segment(
    runs_dir: str | Path = DEFAULT_RUNS_DIR, customer_id: str = "", run: str = "latest"
) -> dict[str, Any]:
    """A customer's segment, RFM values and distance in a run, with the segment's action."""
    h = History(runs_dir)
    snap = h.resolve(run)
    a = h.assignments(snap)
    hit = a[a["customer_id"] == customer_id]
    if hit.empty:
        example = a["customer_id"].iloc[0] if len(a) else "?"
        raise NotFoundError(
            f"unknown customer '{customer_id}' in run {snap.run_id}; ids look like {example} "
            "(check the id, or run a newer segmentation that includes it)"
        )
    row = _records(hit)[0]
    profile = next(s for s in h.summary(snap)["segments"] if s["name"] == row["segment"])
    keep = ("customer_id", "segment", *RFM, "distance", "margin")
    return {
        **{k: row[k] for k in keep if k in row},
        "action": profile.get("action", ""),
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "source": "run",
    }


SortField = Literal["recency_days", "frequency", "monetary", "distance", "customer_id", "aov"]


def find_customers(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    *,
    segment: str | None = None,
    recency_min: float | None = None,
    recency_max: float | None = None,
    frequency_min: float | None = None,
    frequency_max: float | None = None,
    monetary_min: float | None = None,
    monetary_max: float | None = None,
    sort_by: SortField = "monetary",
    descending: bool = True,
    limit: int = 20,
    run: str = "latest",
) -> dict[str, Any]:
    """Customers of a run filtered by segment and RFM ranges (inclusive), sorted, limited."""
    _check_limit(limit)
    if sort_by not in ("recency_days", "frequency", "monetary", "distance", "customer_id", "aov"):
        raise ParameterError(
            f"sort_by '{sort_by}' is not allowed; use recency_days, frequency, monetary, aov, distance or customer_id"
        )
    for lo, hi, what in (
        (recency_min, recency_max, "recency"),
        (frequency_min, frequency_max, "frequency"),
        (monetary_min, monetary_max, "monetary"),
    ):
        if lo is not None and hi is not None and lo > hi:
            raise ParameterError(f"{what}_min={lo} is above {what}_max={hi}; swap them")
    h = History(runs_dir)
    snap = h.resolve(run)
    a = h.assignments(snap)
    a["aov"] = a["monetary"] / a["frequency"].where(a["frequency"] > 0, 1)
    mask = pd.Series(True, index=a.index)
    name = None
    if segment:
        name = h.segment(snap, segment)
        mask &= a["segment"] == name
    for col, lo, hi in (
        ("recency_days", recency_min, recency_max),
        ("frequency", frequency_min, frequency_max),
        ("monetary", monetary_min, monetary_max),
    ):
        if lo is not None:
            mask &= a[col] >= lo
        if hi is not None:
            mask &= a[col] <= hi
    hits = a[mask].sort_values([sort_by, "customer_id"], ascending=[not descending, True], kind="stable")
    rows = hits.head(limit)[["customer_id", "segment", *RFM, "aov", "distance"]].copy()
    rows["aov"] = rows["aov"].round(2)
    return {
        "run_id": snap.run_id,
        "as_of": snap.as_of.isoformat(),
        "filters": {
            "segment": name,
            "recency_days": [recency_min, recency_max],
            "frequency": [frequency_min, frequency_max],
            "monetary": [monetary_min, monetary_max],
        },
        "sort_by": sort_by,
        "descending": descending,
        "matched": int(mask.sum()),
        "returned": len(rows),
        "customers": _records(rows),
    }


# ================================================================================================ questions


def _kw_norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def keyword_hits(action: str, keywords: Sequence[str]) -> list[str]:
    """The keywords found in ``action`` (at the start of a word; case, hyphens and spaces ignored)."""
    text = _kw_norm(action)
    return [k for k in keywords if _kw_norm(k) and re.search(r"\b" + re.escape(_kw_norm(k)), text)]


def campaign_segments(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    kind: str = "loyalty_offer",
    *,
    keywords: Sequence[str] | None = None,
    run: str = "latest",
) -> dict[str, Any]:
    """Which segment should receive a campaign of ``kind``: segments ranked by how well their recommended
    action fits the kind (keyword hits), then by revenue at stake (the segment's revenue)."""
    k = normalise_kind(kind or "")
    if keywords is None:
        if k not in KIND_KEYWORDS:
            raise NotFoundError(
                f"unknown campaign kind '{kind}'; known kinds: {', '.join(KIND_KEYWORDS)} "
                "(or pass your own keywords with --keyword)"
            )
        keywords = KIND_KEYWORDS[k]
    keywords = [w for w in keywords if w and w.strip()]
    if not keywords:
        raise ParameterError("give at least one keyword to match against the segments' actions")
    h = History(runs_dir)
    snap = h.resolve(run)
    summary = h.summary(snap)
    ranking = []
    for s in summary["segments"]:
        hits = keyword_hits(s.get("action", ""), keywords)
        why = (
            f"its action '{s.get('action', '')}' mentions {', '.join(hits)}"
            if hits
            else f"its action '{s.get('action', '')}' mentions none of {', '.join(keywords)}"
        )
        ranking.append(
            {
                "segment": s["name"],
                "fit": len(hits),
                "matched": hits,
                "action": s.get("action", ""),
                "customers": s["customers"],
                "revenue_at_stake": s["revenue"],
                "share_revenue": s["share_revenue"],
                "why": f"{why}; revenue at stake {_money(s['revenue'])} ({s['share_revenue']:.0%} of revenue, "
                f"{s['customers']:,} customers)",
            }
        )
    ranking.sort(key=lambda r: (-r["fit"], -r["revenue_at_stake"], r["segment"]))
    for i, r in enumerate(ranking, start=1):
        r["rank"] = i
    best = ranking[0] if ranking and ranking[0]["fit"] > 0 else None
    if best:
        answer = f"Send the {k or kind} campaign to {best['segment']}: {best['why']}."
        runners = [r["segment"] for r in ranking[1:] if r["fit"] > 0]
        if runners:
            answer += f" Next: {', '.join(runners)}."
    else:
        answer = (
            f"No segment's recommended action fits a {k or kind} campaign (keywords: {', '.join(keywords)}); "
            "check the kind or pass keywords."
        )
    return {
        "question": f"Which segment should receive a {k or kind} campaign?",
        "answer": answer,
        "params": {"kind": k or kind, "keywords": list(keywords), "run": run},
        **snap.brief(),
        "recommended": best["segment"] if best else None,
        "ranking": ranking,
        "method": "fit = number of the kind's keywords in the segment's action; ties broken by revenue at stake "
        "(sum of the segment's monetary value)",
    }


def discount_candidates(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    *,
    segment: str = "At-Risk",
    kind: str = "discount",
    limit: int = 10,
    half_life_days: float = 90.0,
    aov_weight: float = 0.5,
    frequency_weight: float = 0.5,
    run: str = "latest",
) -> dict[str, Any]:
    """Customers of ``segment`` ranked by how likely they are to respond to a ``kind`` campaign.

    score = (aov_weight × AOV / max AOV + frequency_weight × frequency / max frequency)
            × 0.5 ^ (recency_days / half_life_days) × response_factor,
    response_factor = 2 × (responses + 1) / (touches + 2) over the customer's past touches of ``kind``
    (responses = touches with a response or a conversion); 1.0 with no history.
    """
    _check_limit(limit)
    if half_life_days <= 0:
        raise ParameterError(f"half_life_days={half_life_days} should be > 0")
    if aov_weight < 0 or frequency_weight < 0 or aov_weight + frequency_weight <= 0:
        raise ParameterError("aov_weight and frequency_weight should be >= 0 and not both 0")
    k = normalise_kind(kind)
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    a = h.assignments(snap)
    m = a[a["segment"] == name][["customer_id", *RFM]].copy()
    m["aov"] = m["monetary"] / m["frequency"].where(m["frequency"] > 0, 1)
    max_aov = float(m["aov"].max()) or 1.0
    max_f = float(m["frequency"].max()) or 1.0
    m["aov_part"] = aov_weight * m["aov"] / max_aov
    m["frequency_part"] = frequency_weight * m["frequency"] / max_f
    m["decay"] = np.power(0.5, m["recency_days"] / half_life_days)
    hist = _touch_counts(runs_dir, k, m["customer_id"].tolist())
    m = m.merge(hist, on="customer_id", how="left").fillna({"touches": 0, "responses": 0})
    m["touches"] = m["touches"].astype(int)
    m["responses"] = m["responses"].astype(int)
    m["response_factor"] = 2 * (m["responses"] + 1) / (m["touches"] + 2)
    m["score"] = (m["aov_part"] + m["frequency_part"]) * m["decay"] * m["response_factor"]
    m = m.sort_values(["score", "customer_id"], ascending=[False, True], kind="stable")
    top = m.head(limit).copy()
    for c in ("aov", "aov_part", "frequency_part", "decay", "response_factor", "score"):
        top[c] = top[c].round(4 if c != "aov" else 2)
    with_history = int((m["touches"] > 0).sum())
    if top.empty:
        answer = f"{name} has no customers in run {snap.run_id}."
    else:
        best = top.iloc[0]
        answer = (
            f"Most likely to respond to a {k} among the {len(m):,} customers in {name}: "
            f"{', '.join(top['customer_id'].head(5))}"
            f"{' …' if len(top) > 5 else ''}; the top one, {best['customer_id']}, scores {best['score']:.3f} "
            f"(AOV {_money(best['aov'])}, {int(best['frequency'])} orders, last order {int(best['recency_days'])} "
            f"day(s) ago, {int(best['touches'])} past {k} touches)."
        )
        answer += (
            f" {with_history:,} of them have {k} history in the touches."
            if with_history
            else f" No {k} touches are recorded for them, so the score rests on AOV, frequency and recency."
        )
    return {
        "question": f"Which customers in {name} are most likely to respond to a {k}?",
        "answer": answer,
        "params": {
            "segment": name,
            "kind": k,
            "limit": limit,
            "half_life_days": half_life_days,
            "aov_weight": aov_weight,
            "frequency_weight": frequency_weight,
            "run": run,
        },
        **snap.brief(),
        "formula": "score = (aov_weight*aov/max_aov + frequency_weight*frequency/max_frequency) "
        "* 0.5**(recency_days/half_life_days) * response_factor; response_factor = 2*(responses+1)/(touches+2)",
        "max_aov": _r(max_aov, 2),
        "max_frequency": max_f,
        "segment_customers": len(m),
        "customers_with_history": with_history,
        "customers": _records(top),
    }


def _touch_counts(runs_dir: str | Path, kind: str, ids: list[str]) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        register_touches(con, runs_dir)
        con.register("ids", pd.DataFrame({"customer_id": ids}, dtype=object))
        return con.sql(
            "SELECT customer_id, count(*) AS touches, "
            "count(*) FILTER (WHERE responded_at IS NOT NULL OR converted_at IS NOT NULL) AS responses "
            f"FROM touches WHERE kind = {sql_string(kind)} AND customer_id IN (SELECT customer_id FROM ids) "
            "GROUP BY customer_id"
        ).df()
    finally:
        con.close()


def not_contacted(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    *,
    segment: str = "Champions",
    kind: str = "loyalty_offer",
    days: int = 90,
    reference: str | date | None = None,
    limit: int = 100,
    run: str = "latest",
) -> dict[str, Any]:
    """Customers of ``segment`` who were sent no ``kind`` touch in the ``days`` days up to ``reference``
    (default: the run's as-of date), i.e. none with reference - days <= sent date <= reference."""
    _check_limit(limit)
    if days < 1:
        raise ParameterError(f"days={days} should be >= 1")
    k = normalise_kind(kind)
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    ref = _as_date(reference) if reference is not None else snap.as_of
    start = ref - timedelta(days=days)
    a = h.assignments(snap)
    members = a[a["segment"] == name][["customer_id", *RFM]]
    con = duckdb.connect()
    try:
        register_touches(con, runs_dir)
        con.register("members", members)
        df = con.sql(
            "SELECT m.customer_id, m.recency_days, m.frequency, m.monetary, "
            f"max(t.sent_at) FILTER (WHERE CAST(t.sent_at AS DATE) <= DATE '{ref}') AS last_sent_at, "
            f"count(t.sent_at) FILTER (WHERE CAST(t.sent_at AS DATE) BETWEEN DATE '{start}' AND DATE '{ref}') "
            "AS in_window "
            f"FROM members m LEFT JOIN touches t ON t.customer_id = m.customer_id AND t.kind = {sql_string(k)} "
            "GROUP BY ALL ORDER BY m.monetary DESC, m.customer_id"
        ).df()
    finally:
        con.close()
    miss = df[df["in_window"] == 0].copy()
    miss["days_since_last"] = pd.array(
        [None if pd.isna(t) else (ref - pd.Timestamp(t).date()).days for t in miss["last_sent_at"]], dtype="Int64"
    )
    never = int(miss["last_sent_at"].isna().sum())
    rows = miss[["customer_id", *RFM, "last_sent_at", "days_since_last"]]
    answer = (
        f"{len(miss):,} of the {len(df):,} customers in {name} received no {k} in the {days} days to {ref} "
        f"({never:,} never received one); {len(df) - len(miss):,} did."
    )
    return {
        "question": f"Which {name} haven't received a {k} in {days} days?",
        "answer": answer,
        "params": {"segment": name, "kind": k, "days": days, "reference": ref.isoformat(), "limit": limit, "run": run},
        **snap.brief(),
        "window": [start.isoformat(), ref.isoformat()],
        "segment_customers": len(df),
        "contacted": len(df) - len(miss),
        "not_contacted": len(miss),
        "never_contacted": never,
        "customers": _records(rows.head(limit)),
    }


def _as_date(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ParameterError(f"'{value}' is not a date; use YYYY-MM-DD") from None


def _distances(model: SegmentModel, rows: pd.DataFrame) -> pd.DataFrame:
    """Distance of each row's RFM to each of ``model``'s centroids, one column per segment name."""
    d = model.distances(rows[list(RFM)].to_numpy(dtype=float))
    return pd.DataFrame(d, columns=model.names_, index=rows.index)


def trending_toward(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    *,
    segment: str = "Loyal Buyers",
    toward: str = "At-Risk",
    runs: int = 3,
    limit: int = 50,
    run: str = "latest",
) -> dict[str, Any]:
    """Customers of ``segment`` (in the latest run) on their way to ``toward``: over the last ``runs`` runs
    (they must be in all of them) the gap = distance to the ``toward`` centroid - distance to their own
    segment's centroid narrowed at every step (measured with the latest run's model). A gap of 0 is where
    they would switch."""
    _check_limit(limit)
    if runs < 2:
        raise ParameterError(f"runs={runs} should be >= 2 to see a trend")
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    target = h.segment(snap, toward)
    if name == target:
        raise ParameterError(f"segment and toward are both '{name}'; pick two different segments")
    window = h.recent(snap, runs)
    if len(window) < 2:
        raise NotFoundError(
            f"only one run up to {snap.run_id} in {h.runs_dir}; a trend needs at least 2 runs at different "
            "as-of dates (`rfmseg refresh` or `rfmseg run FILE --as-of DATE`)"
        )
    a = h.assignments(snap)
    ids = a.loc[a["segment"] == name, "customer_id"].tolist()
    rows = h.customer_rows(window, ids)
    model = h.model(snap)
    rows = pd.concat([rows, _distances(model, rows)[[target, name]].set_axis(["d_toward", "d_own"], axis=1)], axis=1)
    steps = len(window)
    hits = []
    for cid, g in rows.groupby("customer_id", sort=True):
        if len(g) != steps:
            continue
        gap = (g["d_toward"] - g["d_own"]).to_numpy()
        if np.all(np.diff(gap) < 0):
            hits.append(
                {
                    "customer_id": cid,
                    "gap": [_r(x) for x in gap],
                    "distance_to_toward": [_r(x) for x in g["d_toward"]],
                    "distance_to_own": [_r(x) for x in g["d_own"]],
                    "recency_days": [int(x) for x in g["recency_days"]],
                    "frequency": [int(x) for x in g["frequency"]],
                    "monetary": [_r(x, 2) for x in g["monetary"]],
                    "segments": list(g["segment"]),
                    "closed_by": _r(gap[0] - gap[-1]),
                    "gap_now": _r(gap[-1]),
                }
            )
    hits.sort(key=lambda r: (-r["closed_by"], r["customer_id"]))
    answer = (
        f"{len(hits):,} of the {len(ids):,} customers in {name} moved closer to {target} (relative to {name}) at every "
        f"one of the last {steps} runs ({window[0].as_of} to {window[-1].as_of})"
    )
    if hits:
        top = hits[0]
        answer += (
            f"; the fastest, {top['customer_id']}, narrowed the gap by {top['closed_by']:.3f} "
            f"(recency {top['recency_days'][0]} → {top['recency_days'][-1]} days) and is "
            f"{top['gap_now']:.3f} from switching."
        )
    else:
        answer += "."
    return {
        "question": f"Which customers in {name} are trending toward {target}?",
        "answer": answer,
        "params": {"segment": name, "toward": target, "runs": runs, "limit": limit, "run": run},
        **snap.brief(),
        "runs": [s.brief() for s in window],
        "yardstick": f"the model of run {snap.run_id}",
        "segment_customers": len(ids),
        "trending": len(hits),
        "customers": hits[:limit],
    }


def recent_changes(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    *,
    segment: str = "At-Risk",
    days: int = 30,
    limit: int = 50,
    run: str = "latest",
) -> dict[str, Any]:
    """What changed over about ``days`` days for the customers now in ``segment``: where they came from,
    and how their recency, frequency and spend moved."""
    _check_limit(limit)
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    base = h.baseline(snap, days)
    a = h.assignments(snap)
    now = a[a["segment"] == name][["customer_id", "segment", *RFM]]
    then = h.assignments(base)[["customer_id", "segment", *RFM]]
    m = now.merge(then, on="customer_id", how="left", suffixes=("", "_then"))
    m["segment_then"] = m["segment_then"].fillna("(new)")
    for c in RFM:
        m[f"{c}_change"] = m[c] - m[f"{c}_then"]
    came_from = m["segment_then"].value_counts().sort_index().to_dict()
    moved_in = m[m["segment_then"] != name]
    ordered = int((m["frequency_change"] > 0).sum())
    gap = (snap.as_of - base.as_of).days
    mean_rec = float(m["recency_days_change"].mean()) if m["recency_days_change"].notna().any() else None
    stayed = int(came_from.get(name, 0))
    parts = [f"{cnt} from {seg}" for seg, cnt in sorted(came_from.items(), key=lambda x: -x[1]) if seg != name]
    answer = (
        f"Of the {len(m):,} customers in {name} as of {snap.as_of}, {stayed:,} were already {name} {gap} days "
        f"earlier ({base.as_of})"
        + (f" and {len(moved_in):,} moved in ({', '.join(parts)})" if len(moved_in) else " and none moved in")
        + (f"; their recency changed by {mean_rec:+.1f} days on average" if mean_rec is not None else "")
        + f"; {ordered:,} placed an order in between."
    )
    cols = ["customer_id", "segment_then"] + [f"{c}{s}" for c in RFM for s in ("_then", "", "_change")]
    m = m.sort_values(
        ["segment_then", "recency_days_change", "customer_id"], ascending=[True, False, True], kind="stable"
    )
    moved_first = pd.concat([m[m["segment_then"] != name], m[m["segment_then"] == name]])
    return {
        "question": f"What changed in the last {days} days for customers now classified {name}?",
        "answer": answer,
        "params": {"segment": name, "days": days, "limit": limit, "run": run},
        **snap.brief(),
        "baseline": base.brief(),
        "gap_days": gap,
        "segment_customers": len(m),
        "came_from": {str(k): int(v) for k, v in came_from.items()},
        "moved_in": len(moved_in),
        "placed_orders": ordered,
        "mean_recency_change": _r(mean_rec, 2) if mean_rec is not None else None,
        "mean_frequency_change": _r(m["frequency_change"].mean(), 3) if len(m) else None,
        "mean_monetary_change": _r(m["monetary_change"].mean(), 2) if len(m) else None,
        "customers": _records(moved_first[cols].head(limit)),
    }


Membership = Literal["now", "start", "either"]
_MEMBERSHIP = {
    "now": "in {} now",
    "start": "in {} at the start of the period",
    "either": "in {} now or at the start of the period",
}


def recency_jump(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    *,
    segment: str = "Champions",
    more_than_days: int = 10,
    period_days: int = 30,
    membership: Membership = "either",
    limit: int = 100,
    run: str = "latest",
) -> dict[str, Any]:
    """Customers of ``segment`` whose recency rose by more than ``more_than_days`` over about
    ``period_days`` days. ``membership``: in the segment now, at the start of the period, or either."""
    _check_limit(limit)
    if membership not in ("now", "start", "either"):
        raise ParameterError(f"membership '{membership}' is not allowed; use now, start or either")
    h = History(runs_dir)
    snap = h.resolve(run)
    name = h.segment(snap, segment)
    base = h.baseline(snap, period_days)
    now = h.assignments(snap)[["customer_id", "segment", *RFM]]
    then = h.assignments(base)[["customer_id", "segment", *RFM]]
    m = now.merge(then, on="customer_id", how="inner", suffixes=("", "_then"))
    in_now, in_start = m["segment"] == name, m["segment_then"] == name
    pick = {"now": in_now, "start": in_start, "either": in_now | in_start}[membership]
    m = m[pick].copy()
    m["recency_increase"] = m["recency_days"] - m["recency_days_then"]
    m["frequency_change"] = m["frequency"] - m["frequency_then"]
    hits = m[m["recency_increase"] > more_than_days].sort_values(
        ["recency_increase", "monetary", "customer_id"], ascending=[False, False, True], kind="stable"
    )
    gap = (snap.as_of - base.as_of).days
    left = int((hits["segment"] != name).sum())
    answer = (
        f"{len(hits):,} of the {len(m):,} customers {_MEMBERSHIP[membership].format(name)} saw recency rise by more "
        f"than {more_than_days} days between {base.as_of} and {snap.as_of} ({gap} days)"
        + (f"; {left:,} of them are no longer {name}" if left else "")
        + "."
    )
    cols = [
        "customer_id",
        "segment_then",
        "segment",
        "recency_days_then",
        "recency_days",
        "recency_increase",
        "frequency_then",
        "frequency",
        "frequency_change",
        "monetary",
    ]
    return {
        "question": f"Which {name} saw recency increase by more than {more_than_days} days in {period_days} days?",
        "answer": answer,
        "params": {
            "segment": name,
            "more_than_days": more_than_days,
            "period_days": period_days,
            "membership": membership,
            "limit": limit,
            "run": run,
        },
        **snap.brief(),
        "baseline": base.brief(),
        "gap_days": gap,
        "segment_customers": len(m),
        "matched": len(hits),
        "no_longer_in_segment": left,
        "customers": _records(hits[cols].head(limit)),
    }


def customer_tracking(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    customer_id: str = "",
    *,
    targets: Sequence[str] = ("Champions", "Occasional"),
    runs: int = 5,
    run: str = "latest",
) -> dict[str, Any]:
    """Is the customer's behaviour tracking toward one target segment or another? Distance to every centroid
    of the latest model, in each of the last ``runs`` runs that include the customer."""
    if runs < 1:
        raise ParameterError(f"runs={runs} should be >= 1")
    h = History(runs_dir)
    snap = h.resolve(run)
    names = h.segments(snap)
    wanted = [match_segment(t, names, snap.run_id) for t in targets]
    if not wanted:
        raise ParameterError(f"give at least one target segment; segments: {', '.join(names)}")
    window = h.recent(snap, runs)
    rows = h.customer_rows(window, [customer_id])
    if rows.empty or snap.run_id not in set(rows["run_id"]):
        customer_segment(runs_dir, customer_id, snap.run_id)  # raises the unknown-customer error
    model = h.model(snap)
    dist = _distances(model, rows)
    points = []
    for i, r in rows.iterrows():
        points.append(
            {
                "run_id": r["run_id"],
                "as_of": pd.Timestamp(r["as_of"]).date().isoformat(),
                "segment": r["segment"],
                "recency_days": int(r["recency_days"]),
                "frequency": int(r["frequency"]),
                "monetary": _r(r["monetary"], 2),
                "distances": {n: _r(dist.loc[i, n]) for n in model.names_},
            }
        )
    trend = {}
    for t in wanted:
        first, last = points[0]["distances"][t], points[-1]["distances"][t]
        trend[t] = {"first": first, "last": last, "change": _r(last - first)}
    now = points[-1]
    nearest_target = min(wanted, key=lambda t: (now["distances"][t], t))
    closing = [t for t in wanted if trend[t]["change"] < 0]
    cid = customer_id
    if len(points) < 2:
        toward = None
        answer = (
            f"{cid} is {now['segment']}; only one run includes them, so no trend yet. Right now they are nearest "
            f"{nearest_target} among {', '.join(wanted)} "
            + ", ".join(f"({t} {now['distances'][t]:.3f})" for t in wanted)
            + "."
        )
    else:
        toward = min(closing, key=lambda t: (trend[t]["change"], t)) if closing else None
        moves = "; ".join(f"{t} {trend[t]['first']:.3f} → {trend[t]['last']:.3f}" for t in wanted)
        head = (
            f"{cid} ({now['segment']}) is tracking toward {toward}"
            if toward
            else f"{cid} ({now['segment']}) is moving away from all of {', '.join(wanted)}"
        )
        answer = (
            f"{head}: distance over {len(points)} runs ({points[0]['as_of']} to {now['as_of']}): {moves}. "
            f"Nearest now: {nearest_target}."
        )
    return {
        "question": f"Is {cid}'s behaviour tracking toward {' or '.join(wanted)}?",
        "answer": answer,
        "params": {"customer_id": cid, "targets": wanted, "runs": runs, "run": run},
        **snap.brief(),
        "yardstick": f"the model of run {snap.run_id} (scaled-unit Euclidean distance)",
        "segment": now["segment"],
        "toward": toward,
        "nearest_target": nearest_target,
        "trend": trend,
        "points": points,
    }


def intervention_effect(
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    *,
    segment: str = "Occasional",
    to: Sequence[str] = ("Loyal Buyers",),
    kind: str | None = None,
    from_run: str | None = None,
    to_run: str = "latest",
    min_contacted: int = 30,
    min_control: int = 30,
) -> dict[str, Any]:
    """What intervention has moved ``segment`` customers into ``to``? For each campaign kind sent in the
    window, the share that moved among the contacted against the share among the not contacted at all.

    Window: from the start run's as-of date (default: the earliest run) up to the day before the end run's.
    Too thin to say: fewer than ``min_contacted`` contacted or fewer than ``min_control`` not contacted.
    """
    from scipy.stats import fisher_exact

    if min_contacted < 1 or min_control < 1:
        raise ParameterError("min_contacted and min_control should be >= 1")
    h = History(runs_dir)
    end = h.resolve(to_run)
    start = h.resolve(from_run) if from_run else h.before(end)[0]
    if start.as_of >= end.as_of:
        raise NotFoundError(
            f"the start run ({start.run_id}, as of {start.as_of}) is not before the end run ({end.run_id}, as of "
            f"{end.as_of}); pass --from-run with an earlier run, or produce more runs over time"
        )
    name = h.segment(start, segment)
    targets = [match_segment(t, h.segments(end), end.run_id) for t in to]
    if not targets:
        raise ParameterError("give at least one target segment (--to)")
    pop = h.assignments(start)
    pop = pop[pop["segment"] == name][["customer_id"]]
    after = h.assignments(end)[["customer_id", "segment"]].rename(columns={"segment": "segment_end"})
    pop = pop.merge(after, on="customer_id", how="left")
    pop["moved"] = pop["segment_end"].isin(targets)
    k = normalise_kind(kind) if kind else None
    con = duckdb.connect()
    try:
        register_touches(con, runs_dir)
        con.register("pop", pop[["customer_id"]])
        t = con.sql(
            "SELECT customer_id, kind, count(*) AS n FROM touches "
            f"WHERE CAST(sent_at AS DATE) >= DATE '{start.as_of}' AND CAST(sent_at AS DATE) < DATE '{end.as_of}' "
            "AND customer_id IN (SELECT customer_id FROM pop) GROUP BY ALL"
        ).df()
    finally:
        con.close()
    any_touch = set(t["customer_id"])
    control = pop[~pop["customer_id"].isin(any_touch)]
    kinds = [k] if k else sorted(set(t["kind"]))
    groups = ([] if k else [("any", any_touch)]) + [(x, set(t.loc[t["kind"] == x, "customer_id"])) for x in kinds]
    results = []
    for label, ids in groups:
        contacted = pop[pop["customer_id"].isin(ids)]
        nc, mc = len(contacted), int(contacted["moved"].sum())
        nn, mn = len(control), int(control["moved"].sum())
        thin = nc < min_contacted or nn < min_control
        share_c = mc / nc if nc else None
        share_n = mn / nn if nn else None
        uplift = share_c - share_n if share_c is not None and share_n is not None else None
        p = float(fisher_exact([[mc, nc - mc], [mn, nn - mn]])[1]) if nc and nn else None
        if thin:
            verdict = (
                f"too thin to say: {nc} contacted (need {min_contacted}) and {nn} not contacted (need {min_control})"
            )
        else:
            verdict = (
                f"{mc} of {nc} contacted ({share_c:.0%}) moved vs {mn} of {nn} not contacted ({share_n:.0%}): "
                f"{uplift * 100:+.1f} points (Fisher exact p={p:.3g})"
            )
        results.append(
            {
                "kind": label,
                "contacted": nc,
                "contacted_moved": mc,
                "contacted_share": _r(share_c) if share_c is not None else None,
                "not_contacted": nn,
                "not_contacted_moved": mn,
                "not_contacted_share": _r(share_n) if share_n is not None else None,
                "uplift": _r(uplift) if uplift is not None else None,
                "p_value": _r(p, 6) if p is not None else None,
                "too_thin": thin,
                "verdict": verdict,
            }
        )
    solid = [r for r in results if not r["too_thin"] and r["uplift"] is not None]
    best = max(solid, key=lambda r: (r["uplift"], r["kind"] != "any"), default=None)
    target_text = " or ".join(targets)
    outcome = f"{name} → {target_text}"
    if t.empty:
        answer = (
            f"No touches were sent to the {len(pop):,} customers in {name} between {start.as_of} and {end.as_of}, "
            "so there is nothing to compare: import the campaign history with `rfmseg touches import FILE`."
        )
    elif not solid:
        answer = (
            f"The data is too thin to say what moves {outcome}: "
            + "; ".join(f"{r['kind']}: {r['contacted']} contacted, {r['not_contacted']} not" for r in results)
            + f" (need at least {min_contacted} contacted and {min_control} not contacted)."
        )
    elif best is not None and best["uplift"] > 0:
        answer = f"For {outcome} ({start.as_of} to {end.as_of}), {best['kind']} did best: {best['verdict']}."
    else:
        answer = f"No intervention beat no contact for {outcome} ({start.as_of} to {end.as_of}): " + "; ".join(
            f"{r['kind']}: {r['verdict']}" for r in solid
        )
    return {
        "question": f"What intervention has historically moved customers in {name} to {target_text}?",
        "answer": answer,
        "params": {
            "segment": name,
            "to": targets,
            "kind": k,
            "min_contacted": min_contacted,
            "min_control": min_control,
        },
        "start": start.brief(),
        "end": end.brief(),
        "window": [start.as_of.isoformat(), (end.as_of - timedelta(days=1)).isoformat()],
        "population": len(pop),
        "moved": int(pop["moved"].sum()),
        "missing_at_end": int(pop["segment_end"].isna().sum()),
        "too_thin_rule": f"fewer than {min_contacted} contacted or fewer than {min_control} not contacted",
        "best": best["kind"] if best is not None and best["uplift"] > 0 else None,
        "interventions": results,
    }


QUESTIONS = {
    "campaign": campaign_segments,
    "discount": discount_candidates,
    "not-contacted": not_contacted,
    "trending": trending_toward,
    "changed": recent_changes,
    "recency-jump": recency_jump,
    "tracking": customer_tracking,
    "intervention": intervention_effect,
}
"""CLI name -> question function."""
