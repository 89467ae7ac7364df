"""Campaign history: who was contacted, with what, when, and whether they responded or converted.

A *touch* is one contact of one customer by one campaign: customer_id, campaign, kind (loyalty_offer,
discount, win_back, onboarding, ...), channel, sent_at, and optionally responded_at and converted_at.
``rfmseg touches import FILE`` reads a CSV or Parquet file of touches, judges every row with the same
reason-coded rules as transactions (:mod:`rfmseg.io.validate`), and stores the used rows.

Storage: one folder per import under ``<runs_dir>/touches/<import_id>/`` holding ``touches.parquet`` (the
used rows, typed), ``quarantine.parquet`` (every set-aside row with its reason and original values) and
``manifest.json`` (input path and hash, column mapping, row counts). The folder is written under a hidden
name and renamed into place, like a run, so an import is all there or not there; readers (the questions,
the MCP server) never take a lock and never see half an import. All imports are queried together with
DuckDB over the committed ``touches.parquet`` files.

Nothing is dropped silently: rows read = rows used + the sum of the rows quarantined per reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rfmseg import schema
from rfmseg.errors import ColumnError, InputError, ParameterError
from rfmseg.io import open_source
from rfmseg.io.passes import reason_case
from rfmseg.io.readers import Source, sql_identifier, sql_string
from rfmseg.io.rules import Rule
from rfmseg.io.validate import DEFAULT_DATE_FORMATS, date_expr, id_expr
from rfmseg.runs import DEFAULT_RUNS_DIR, RunWriter

TOUCHES_DIR = "touches"

FIELDS = ("customer_id", "campaign", "kind", "channel", "sent_at", "responded_at", "converted_at")
REQUIRED = ("customer_id", "campaign", "kind", "channel", "sent_at")
OPTIONAL = ("responded_at", "converted_at")

KINDS: dict[str, str] = {
    "loyalty_offer": "reward for loyal customers: points, early access, VIP perks",
    "discount": "a price incentive: percentage or amount off",
    "win_back": "reactivation of lapsed customers",
    "onboarding": "welcome / second-order series for new customers",
    "cross_sell": "recommendations of other categories or bundles",
    "subscription": "subscription or membership offer",
    "survey": "feedback or exit survey",
    "newsletter": "general news, no offer",
}
"""The campaign kinds accepted by default (extend with ``extra_kinds`` / ``--kind``)."""

ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": schema.ALIASES[schema.CUSTOMER_ID],
    "campaign": ("campaign", "campaignid", "campaignname", "campaigncode"),
    "kind": ("kind", "type", "campaignkind", "campaigntype", "offertype"),
    "channel": ("channel", "medium", "contactchannel"),
    "sent_at": (
        "sentat",
        "sent",
        "sentdate",
        "senton",
        "senttime",
        "sendat",
        "senddate",
        "sendon",
        "sendtime",
        "contactedat",
        "contactdate",
        "date",
        "timestamp",
        "ts",
    ),
    "responded_at": ("respondedat", "responded", "respondedon", "responsedate", "responseat", "responsetime"),
    "converted_at": ("convertedat", "converted", "convertedon", "conversiondate", "conversionat", "conversiontime"),
}
"""The one table of the column names a touch file may use for each field, compared as
:func:`rfmseg.schema.normalise` leaves them (lower case, letters and digits only: ``Sent At``, ``sent_at`` and
``SENT-AT`` are all ``sentat``); a field takes the file's column matching the earliest of its names (one
already taken by an earlier field is passed over). docs/agents.md lists the same table (a test holds the
two together)."""

TOUCH_SCHEMA = pa.schema(
    [
        ("import_id", pa.string()),
        ("row_number", pa.int64()),
        ("customer_id", pa.string()),
        ("campaign", pa.string()),
        ("kind", pa.string()),
        ("channel", pa.string()),
        ("sent_at", pa.timestamp("us")),
        ("responded_at", pa.timestamp("us")),
        ("converted_at", pa.timestamp("us")),
    ]
)
"""The stored columns of every touch."""

RULES: tuple[Rule, ...] = (
    Rule("missing_customer_id", "customer_id IS NULL", "no customer id", "fill the customer id"),
    Rule("missing_campaign", "campaign IS NULL", "no campaign", "fill the campaign name or code"),
    Rule("missing_kind", "kind IS NULL", "no campaign kind", "fill the kind (e.g. discount, win_back)"),
    Rule(
        "unknown_kind",
        "NOT list_contains(_kinds, kind)",
        "a campaign kind that is not known",
        "use one of the known kinds or add yours with {extra_kinds} NAME",
    ),
    Rule("missing_channel", "channel IS NULL", "no channel", "fill the channel (e.g. email, sms)"),
    Rule(
        "bad_sent_at",
        "sent_at IS NULL",
        "sent date missing or not a date",
        "fix the date or set {date_format} (e.g. '%d/%m/%Y')",
    ),
    Rule(
        "bad_responded_at",
        "_responded_raw IS NOT NULL AND responded_at IS NULL",
        "response date that is not a date",
        "fix the date or leave it empty",
    ),
    Rule(
        "responded_before_sent",
        "responded_at < sent_at",
        "response dated before the contact was sent",
        "fix the response or sent date",
    ),
    Rule(
        "bad_converted_at",
        "_converted_raw IS NOT NULL AND converted_at IS NULL",
        "conversion date that is not a date",
        "fix the date or leave it empty",
    ),
    Rule(
        "converted_before_sent",
        "converted_at < sent_at",
        "conversion dated before the contact was sent",
        "fix the conversion or sent date",
    ),
    Rule(
        "duplicate_in_file",
        "_dup > 1",
        "the same customer, campaign and sent date listed again in the file",
        "keep one row per contact",
    ),
    Rule(
        "already_imported",
        "_stored",
        "the same customer, campaign and sent date already imported",
        "nothing to do for these rows; import only new contacts",
    ),
)
"""Checked in this order; a row gets the reason of the first rule it breaks."""

BadRows = Literal["error", "quarantine"]


@dataclass
class ImportReport:
    """What one import did: rows read = used + the sum of ``quarantined``."""

    import_id: str
    path: str
    rows_read: int
    rows_used: int
    quarantined: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    sent_from: str | None = None
    sent_to: str | None = None
    unknown_customers: int | None = None
    """customers in the used rows that the latest run does not know (None when there is no run)"""
    folder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "path": self.path,
            "rows": {"read": self.rows_read, "used": self.rows_used, "quarantined": dict(self.quarantined)},
            "kinds": dict(self.kinds),
            "sent_from": self.sent_from,
            "sent_to": self.sent_to,
            "unknown_customers": self.unknown_customers,
            "folder": self.folder,
        }


def touches_dir(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
    return Path(runs_dir) / TOUCHES_DIR


def import_folders(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[Path]:
    """Committed import folders, oldest first (import ids sort by creation time)."""
    base = touches_dir(runs_dir)
    if not base.is_dir():
        return []
    return [
        p
        for p in sorted(base.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").exists()
    ]


def new_import_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"T{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


# ----------------------------------------------------------------------------------------------- reading


def register_touches(con: duckdb.DuckDBPyConnection, runs_dir: str | Path, name: str = "touches") -> int:
    """Create the view ``name`` over every stored touch (an empty view when none); return the row count."""
    files = [p / "touches.parquet" for p in import_folders(runs_dir)]
    if not files:
        con.register(f"{name}_empty", TOUCH_SCHEMA.empty_table())
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {name}_empty")
        return 0
    paths = ", ".join(sql_string(str(f)) for f in files)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet([{paths}])")
    return int(con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])


def load_touches(runs_dir: str | Path = DEFAULT_RUNS_DIR, customer_id: str | None = None) -> pa.Table:
    """Every stored touch (of one customer when given), ordered by sent date."""
    con = duckdb.connect()
    try:
        register_touches(con, runs_dir)
        where = f"WHERE customer_id = {sql_string(customer_id)}" if customer_id else ""
        return con.sql(f"SELECT * FROM touches {where} ORDER BY sent_at, customer_id, campaign").to_arrow_table()
    finally:
        con.close()


def list_imports(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[dict[str, Any]]:
    """The manifests of all imports, oldest first."""
    import json

    return [json.loads((p / "manifest.json").read_text(encoding="utf-8")) for p in import_folders(runs_dir)]


# ----------------------------------------------------------------------------------------------- importing


def _resolve(source: Source, columns: dict[str, str] | None) -> dict[str, str]:
    """touch field -> source column, from explicit ``columns`` and the known aliases."""
    columns = {k: v for k, v in (columns or {}).items() if v}
    unknown = set(columns) - set(FIELDS)
    if unknown:
        raise ParameterError(
            f"unknown touch field(s) in the column mapping: {', '.join(sorted(unknown))}; map {', '.join(FIELDS)}"
        )
    by_norm = {schema.normalise(c): c for c in source.columns}
    by_lower = {c.lower(): c for c in source.columns}
    found: dict[str, str] = {}
    for f in FIELDS:
        explicit = columns.get(f)
        if explicit:
            col = explicit if explicit in source.columns else by_lower.get(explicit.lower())
            if col is None:
                raise ColumnError(
                    f"{source.label}: no column '{explicit}' (given for {f}); "
                    f"columns found: {', '.join(source.columns)}"
                )
            found[f] = col
            continue
        for alias in (schema.normalise(f), *ALIASES[f]):
            if alias in by_norm and by_norm[alias] not in found.values():
                found[f] = by_norm[alias]
                break
    missing = [f for f in REQUIRED if f not in found]
    if missing:
        raise ColumnError(
            f"{source.label}: no {', '.join(missing)} column; columns found: {', '.join(source.columns)}; "
            f"map yours with {{columns}} {missing[0]}=COLUMN",
            param="columns",
        )
    return found


def _text(col: str, duck_type: str) -> str:
    return f"NULLIF(trim(CAST({sql_identifier(col)} AS VARCHAR)), '')"


def _slug(expr: str) -> str:
    return f"NULLIF(regexp_replace(lower(trim({expr})), '[^a-z0-9]+', '_', 'g'), '')"


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


def normalise_kind(kind: str) -> str:
    """'Win-Back' -> 'win_back': how kinds are compared everywhere."""
    import re

    return re.sub(r"[^a-z0-9]+", "_", kind.strip().lower()).strip("_")


TOUCH_DATE_FORMATS = (*DEFAULT_DATE_FORMATS, "%m/%d/%Y %H:%M", "%m/%d/%Y")
"""the formats a campaign file's text dates are tried with without a date format: ISO, then month-first
slashed dates (what campaign tools export); transactions detect theirs (:func:`rfmseg.io.validate.plan`)"""


def import_touches(
    source: Any,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    columns: dict[str, str] | None = None,
    *,
    bad_rows: BadRows = "quarantine",
    date_format: str | None = None,
    extra_kinds: tuple[str, ...] | list[str] = (),
    input_label: str | None = None,
) -> ImportReport:
    """Validate ``source`` (CSV/Parquet path, DataFrame or Arrow table) and store its good rows.

    Bad rows are quarantined with a reason code (or, with ``bad_rows='error'``, the first one stops the
    import with a one-line message). When no row is usable nothing is written and :class:`InputError` says why.
    """
    if bad_rows not in ("error", "quarantine"):
        raise ParameterError(f"{{bad_rows}} '{bad_rows}' is not allowed; use quarantine or error", param="bad_rows")
    kinds = sorted({*KINDS, *(normalise_kind(k) for k in extra_kinds if normalise_kind(k))})
    runs_dir = Path(runs_dir)
    con = duckdb.connect()
    try:
        src = open_source(con, source, name="tsrc")
        label = input_label or src.label
        mapping = _resolve(src, columns)
        types = src.columns
        cust = id_expr(mapping["customer_id"], types[mapping["customer_id"]])
        campaign = _text(mapping["campaign"], types[mapping["campaign"]])
        kind = _slug(f"CAST({sql_identifier(mapping['kind'])} AS VARCHAR)")
        channel = f"lower({_text(mapping['channel'], types[mapping['channel']])})"
        sent = date_expr(mapping["sent_at"], types[mapping["sent_at"]], date_format, TOUCH_DATE_FORMATS)
        optional = []
        for f in OPTIONAL:
            if f in mapping:
                col = mapping[f]
                optional.append(f"{date_expr(col, types[col], date_format, TOUCH_DATE_FORMATS)} AS {f}")
                optional.append(f"{_text(col, types[col])} AS _{f.split('_')[0]}_raw")
            else:
                optional.append(f"CAST(NULL AS TIMESTAMP) AS {f}")
                optional.append(f"CAST(NULL AS VARCHAR) AS _{f.split('_')[0]}_raw")
        kinds_sql = "[" + ", ".join(sql_string(k) for k in kinds) + "]"
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW ttyped AS SELECT _row, {cust} AS customer_id, {campaign} AS campaign, "
            f"{kind} AS kind, {channel} AS channel, {sent} AS sent_at, {', '.join(optional)}, "
            f"{kinds_sql} AS _kinds FROM tsrc"
        )
        stored = register_touches(con, runs_dir, "stored")
        stored_keys = (
            "SELECT DISTINCT customer_id, campaign, sent_at FROM stored"
            if stored
            else "SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS campaign, NULL::TIMESTAMP AS sent_at "
            "WHERE FALSE"
        )
        con.execute(
            "CREATE OR REPLACE TEMP VIEW tkeyed AS SELECT t.*, "
            "row_number() OVER (PARTITION BY t.customer_id, t.campaign, t.sent_at ORDER BY t._row) AS _dup, "
            "s.customer_id IS NOT NULL AS _stored "
            f"FROM ttyped t LEFT JOIN ({stored_keys}) s "
            "ON s.customer_id = t.customer_id AND s.campaign = t.campaign AND s.sent_at = t.sent_at"
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE tjudged AS SELECT *, {reason_case(RULES)} AS _reason FROM tkeyed")
        counts = dict(con.execute("SELECT coalesce(_reason, ''), count(*) FROM tjudged GROUP BY ALL").fetchall())
        used = int(counts.pop("", 0))
        quarantined = {k: int(v) for k, v in sorted(counts.items())}
        read = used + sum(quarantined.values())
        if quarantined and bad_rows == "error":
            raise InputError(f"{label}: {_problem(con, kinds, largest=False, hint_quarantine=True)}", param=_NAMED)
        if used == 0:
            raise InputError(
                f"{label}: no usable touch rows, nothing imported; "
                f"{_problem(con, kinds, largest=True, hint_quarantine=False)}",
                param=_NAMED,
            )

        import_id = new_import_id()
        report = ImportReport(import_id, label, read, used, quarantined)
        report.kinds = dict(
            con.execute(
                "SELECT kind, count(*) FROM tjudged WHERE _reason IS NULL GROUP BY kind ORDER BY kind"
            ).fetchall()
        )
        lo, hi = con.execute("SELECT min(sent_at), max(sent_at) FROM tjudged WHERE _reason IS NULL").fetchall()[0]
        report.sent_from, report.sent_to = lo.isoformat(), hi.isoformat()
        report.unknown_customers = _unknown_customers(con, runs_dir)
        table = con.sql(
            f"SELECT {sql_string(import_id)} AS import_id, CAST(_row AS BIGINT) AS row_number, customer_id, "
            "campaign, kind, channel, CAST(sent_at AS TIMESTAMP) AS sent_at, "
            "CAST(responded_at AS TIMESTAMP) AS responded_at, CAST(converted_at AS TIMESTAMP) AS converted_at "
            "FROM tjudged WHERE _reason IS NULL ORDER BY _row"
        ).to_arrow_table()
        table = table.cast(TOUCH_SCHEMA)
        manifest = {
            "import_id": import_id,
            "created": datetime.now(UTC).isoformat(),
            "input": {"path": label, "sha256": src.sha256, "format": src.format, "columns": mapping},
            **{k: v for k, v in report.to_dict().items() if k not in ("import_id", "path", "folder")},
            "kinds_allowed": kinds,
        }
        writer = RunWriter(touches_dir(runs_dir), import_id)
        try:
            pq.write_table(table, writer.path("touches.parquet"), compression="zstd")
            _write_quarantine(con, src, writer.path("quarantine.parquet"))
            writer.json("manifest.json", manifest)
            run = writer.commit()
        except BaseException:
            writer.abort()
            raise
        report.folder = str(run.path)
        return report
    finally:
        con.close()


_NAMED = ("extra_kinds", "date_format", "bad_rows")
"""the parameters a row problem's fix may name (see :func:`_problem`)"""


def _problem(con: duckdb.DuckDBPyConnection, kinds: list[str], *, largest: bool, hint_quarantine: bool) -> str:
    """The first broken rule (in RULES order), or the one most rows broke, as one line with its fix."""
    rows = {
        reason: (int(n), int(first))
        for reason, n, first in con.execute(
            "SELECT _reason, count(*), min(_row) FROM tjudged WHERE _reason IS NOT NULL GROUP BY ALL"
        ).fetchall()
    }
    order = [r for r in RULES if r.reason in rows]
    if not order:
        return "check the file"
    rule = max(order, key=lambda r: rows[r.reason][0]) if largest else order[0]
    n, first = rows[rule.reason]
    fix = rule.fix
    if rule.reason == "unknown_kind":
        fix = f"use one of {', '.join(kinds)} or add yours with {{extra_kinds}} NAME"
    hint = hint_quarantine and rule.reason != "already_imported"
    return f"{n} row(s) with {rule.meaning} (reason {rule.reason}, first at row {first}); {fix}" + (
        ", or pass {bad_rows} quarantine to set such rows aside" if hint else ""
    )


def _unknown_customers(con: duckdb.DuckDBPyConnection, runs_dir: Path) -> int | None:
    from rfmseg.runs import list_runs

    runs = list_runs(runs_dir)
    if not runs:
        return None
    path = runs[-1].path / "assignments.parquet"
    if not path.exists():
        return None
    return int(
        con.execute(
            f"SELECT count(DISTINCT customer_id) FROM tjudged WHERE _reason IS NULL AND customer_id NOT IN "
            f"(SELECT customer_id FROM read_parquet({sql_string(str(path))}))"
        ).fetchall()[0][0]
    )


def _write_quarantine(con: duckdb.DuckDBPyConnection, src: Source, path: Path) -> None:
    """Every quarantined row with its reason and original values as text."""
    originals = ", ".join(f"CAST(s.{sql_identifier(c)} AS VARCHAR) AS {sql_identifier(c)}" for c in src.columns)
    target = sql_string(str(path))
    con.execute(
        f"COPY (SELECT q._row AS row_number, q._reason AS reason, {originals} "
        f"FROM (SELECT _row, _reason FROM tjudged WHERE _reason IS NOT NULL) q "
        f"JOIN {src.name} s USING (_row) ORDER BY q._row) TO {target} (FORMAT parquet, COMPRESSION zstd)"
    )


# ----------------------------------------------------------------------------------------------- simulation


def simulate_touches(truth: pa.Table, start: date | str, seed: int = 7, end: date | None = None) -> pa.Table:
    """Seeded campaign contacts for a simulated customer base (:func:`rfmseg.simulate.simulate`'s truth
    table and start date), for demos and tests. Four campaigns:

    * ``LOY-W2`` loyalty_offer by email, week 2, to half of the Champions group;
    * ``DISC-W4`` discount by email, week 4, to 70 % of the Occasional buyers who come back and 35 % of the
      other Occasional buyers (so the discount looks like it worked: the data's truth is known);
    * ``WB-W6`` win_back by sms, week 6, to 60 % of the At-Risk group;
    * ``ONB`` onboarding by email, three days after a new customer's first order.

    Responses (and conversions among them) are drawn with higher odds for customers whose behaviour the
    campaign fits. The columns are those ``rfmseg touches import`` reads. With ``end`` (the simulation's last
    day), nothing happens after it: a contact sent later is not sent, a response or conversion later has not
    happened yet.
    """
    day0 = start.date() if isinstance(start, datetime) else start
    if not isinstance(day0, date):
        day0 = date.fromisoformat(str(day0))
    rng = np.random.default_rng(seed)
    t = truth.to_pylist()
    rows: list[dict[str, Any]] = []

    def at(days: int, hour: int = 9) -> datetime:
        return datetime.combine(day0, datetime.min.time()).replace(hour=hour) + timedelta(days=days)

    last = None if end is None else datetime.combine(end, datetime.max.time())

    def add(cid: str, campaign: str, kind: str, channel: str, sent: datetime, p_respond: float) -> None:
        responded = rng.random() < p_respond
        converted = responded and rng.random() < 0.5
        responded_at = sent + timedelta(days=int(rng.integers(0, 4))) if responded else None
        converted_at = sent + timedelta(days=int(rng.integers(1, 8))) if converted else None
        if last is not None:  # the draws above happen either way, so a longer simulation keeps the same touches
            if sent > last:
                return
            responded_at = responded_at if responded_at is not None and responded_at <= last else None
            if responded_at is None or (converted_at is not None and converted_at > last):
                converted_at = None
        rows.append(
            {
                "customer_id": cid,
                "campaign": campaign,
                "kind": kind,
                "channel": channel,
                "sent_at": sent,
                "responded_at": responded_at,
                "converted_at": converted_at,
            }
        )

    for r in t:
        cid, group, behaviour = r["customer_id"], r["group"], r["behaviour"]
        if group == "Champions" and rng.random() < 0.5:
            add(cid, "LOY-W2", "loyalty_offer", "email", at(14), 0.2 if behaviour == "champion_slowing" else 0.5)
        elif group == "Occasional":
            returning = behaviour == "occasional_returning"
            if rng.random() < (0.7 if returning else 0.35):
                add(cid, "DISC-W4", "discount", "email", at(28), 0.6 if returning else 0.1)
        elif group == "At-Risk" and rng.random() < 0.6:
            add(cid, "WB-W6", "win_back", "sms", at(42, 18), 0.05)
        elif group == "new" and r["first_order_date"] is not None:
            first = (r["first_order_date"] - day0).days
            add(cid, "ONB", "onboarding", "email", at(first + 3), 0.3)
    return pa.table(
        {
            "customer_id": pa.array([x["customer_id"] for x in rows], pa.string()),
            "campaign": pa.array([x["campaign"] for x in rows], pa.string()),
            "kind": pa.array([x["kind"] for x in rows], pa.string()),
            "channel": pa.array([x["channel"] for x in rows], pa.string()),
            "sent_at": pa.array([x["sent_at"] for x in rows], pa.timestamp("us")),
            "responded_at": pa.array([x["responded_at"] for x in rows], pa.timestamp("us")),
            "converted_at": pa.array([x["converted_at"] for x in rows], pa.timestamp("us")),
        }
    )


def write_simulated_touches(truth: pa.Table, start: date, end: date, seed: int, out_dir: Path) -> dict[str, Any]:
    """:func:`simulate_touches` up to ``end`` written as ``out_dir/touches.csv`` (the file ``rfmseg touches
    import`` reads); returns its path, row count and contacts per campaign."""
    import pyarrow.csv as pacsv

    table = simulate_touches(truth, start, seed=seed, end=end)
    path = Path(out_dir) / "touches.csv"
    pacsv.write_csv(table, path)
    campaigns = pc.value_counts(table.column("campaign")).to_pylist()
    return {
        "path": str(path),
        "rows": table.num_rows,
        "campaigns": {c["values"]: c["counts"] for c in sorted(campaigns, key=lambda c: c["values"])},
    }
