"""The row rules and the row policy: what sends a row to quarantine (a reason code, its SQL condition over the
canonical columns, what it means and how a user fixes it), in the order the rules are checked, and how a
read judges rows (:class:`Policy`: error or quarantine, returns, date format, decimal mark, the extra fields a
preset reads). Data only: :mod:`rfmseg.io.validate` turns it into a read's plan, :mod:`rfmseg.io.passes` runs
it, and the presets and the Spark engine read the same definitions.

Each row of the input ends up either *used* (``_reason IS NULL``) or *quarantined* with exactly one reason
code, the first rule it breaks in :data:`GENERIC_RULES` order (after a preset's own). Nothing is dropped
silently: the counts per reason plus the used rows add up to the rows read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rfmseg.io.readers import sql_string
from rfmseg.io.views import VIEWS

BadRows = Literal["error", "quarantine"]
Returns = Literal["net", "exclude"]
Decimal = Literal[".", ","]

MAX_QUARANTINE = 0.20
"""the share of the rows one quarantine reason may take before the read stops (a misread format, not bad rows)"""
MAX_ABS_NUMBER = 1e15
"""a larger amount, quantity or price (or extra number) is not a real value: quarantined with the bad ones, so
no sum can overflow"""
MAX_ID_LENGTH = 128
"""a longer customer id is refused (quarantined as ``bad_customer_id``): the stores and the API take ids up
to this length"""
FIRST_YEAR, LAST_YEAR = 1900, 2999
"""order dates outside these years are quarantined as ``bad_date`` (9999-12-31 is a placeholder, not a date)"""


@dataclass(frozen=True)
class Rule:
    """A reason code, the SQL condition (over the canonical columns) that sends a row to quarantine,
    what it means, and how a user fixes it (a template: ``{date_format}`` names that parameter, which the
    CLI renders as its flag and the API as its field; see :data:`rfmseg.io.passes.RULE_PARAMS`)."""

    reason: str
    condition: str
    meaning: str
    fix: str

    @property
    def sql_reason(self) -> str:
        """the reason code as an SQL string literal"""
        return sql_string(self.reason)


@dataclass(frozen=True)
class ExtraField:
    """A canonical column beyond the core ones (e.g. ``session_count``, ``feature_name``) that a preset's
    features read: found by its name (or an alias, or the user's mapping), typed, and judged.

    A number that is missing or not a number is quarantined as ``bad_<name>``; one outside
    [min_value, max_value] as ``out_of_range_<name>``. Text is kept as clean text (empty -> NULL).
    """

    name: str
    kind: Literal["number", "text"] = "number"
    min_value: float | None = None
    max_value: float | None = None
    aliases: tuple[str, ...] = ()

    def rules(self) -> tuple[Rule, ...]:
        if self.kind != "number":
            return ()
        fix = f"fix the {self.name} values or map another column with {{columns}} {self.name}=COLUMN"
        out = [
            Rule(
                f"bad_{self.name}",
                f"{self.name} IS NULL OR isnan({self.name}) OR isinf({self.name}) "
                f"OR abs({self.name}) > {MAX_ABS_NUMBER:.0e}",
                f"{self.name} missing or not a number",
                fix,
            )
        ]
        bounds = [f"{self.name} < {self.min_value!r}"] if self.min_value is not None else []
        bounds += [f"{self.name} > {self.max_value!r}"] if self.max_value is not None else []
        if bounds:
            lo = "-inf" if self.min_value is None else f"{self.min_value:g}"
            hi = "inf" if self.max_value is None else f"{self.max_value:g}"
            out.append(
                Rule(
                    f"out_of_range_{self.name}",
                    " OR ".join(bounds),
                    f"{self.name} outside [{lo}, {hi}]",
                    f"fix the {self.name} values (allowed: {lo} to {hi})",
                )
            )
        return tuple(out)


@dataclass
class Policy:
    """How a source is read and its rows judged. Presets extend ``rules`` and set ``returns`` for line-item
    data."""

    bad_rows: BadRows = "error"
    date_format: str | None = None
    """the strptime format of text dates; None: detected from the column (:func:`detect_date_formats`)"""
    returns_condition: str = "FALSE"
    """SQL over the canonical columns (plus the originals) marking a row as a return."""
    returns: Returns = "net"
    """net: a return's (negative) value is subtracted from monetary; it is no order and sets no recency.
    exclude: returns are quarantined with reason ``excluded_return``."""
    rules_before: tuple[Rule, ...] = ()
    """preset rules checked before the generic ones"""
    extra_columns: tuple[tuple[str, str], ...] = ()
    """(name, SQL over the source's original columns) computed alongside the canonical ones, for rules;
    ``{source_columns}`` in the SQL stands for the list of all original columns (e.g. to find duplicates)"""
    fields: tuple[ExtraField, ...] = ()
    """extra canonical columns the features read (typed and judged like the core ones)"""
    needs_amount: bool = True
    """False when the features read no amount (e.g. SaaS usage): then no amount column is looked for"""
    decimal: Decimal | None = None
    """the decimal mark of text numbers; None: detected from the columns (:func:`detect_decimal`)"""
    encoding: str | None = None
    """a CSV's encoding (utf-8, utf-16, latin-1); None: detected from its bytes"""
    sheet: str | None = None
    """the sheet of a workbook to read (a name, or ``all``); None: its only sheet with data"""
    max_quarantine: float = MAX_QUARANTINE
    """the share of the rows one quarantine reason may take before the read stops (:func:`check_shares`)"""
    date_formats: tuple[str, ...] = ()
    """the formats text dates are tried with when no ``date_format`` is given: set by :func:`plan` from the
    column (empty: :data:`DEFAULT_DATE_FORMATS`)"""


GENERIC_RULES = (
    Rule(
        "missing_customer_id",
        "customer_id IS NULL",
        "no customer id",
        "fill the customer id or drop the row in the export",
    ),
    Rule("missing_order_id", "order_id IS NULL", "no order id", "fill the order id"),
    Rule(
        "bad_date",
        f"ts IS NULL OR ts < TIMESTAMP '{FIRST_YEAR}-01-01' OR ts >= TIMESTAMP '{LAST_YEAR + 1}-01-01'",
        f"order date missing or not a date (or not in the years {FIRST_YEAR}-{LAST_YEAR})",
        "fix the date or set {date_format} (e.g. '%d/%m/%Y')",
    ),
    Rule(
        "bad_amount",
        f"amount IS NULL OR isnan(amount) OR isinf(amount) OR abs(amount) > {MAX_ABS_NUMBER:.0e}",
        f"amount missing or not a number (or beyond ±{MAX_ABS_NUMBER:.0e})",
        "fix the amount (plain numbers, no currency signs; set {decimal} for a decimal comma)",
    ),
    Rule(
        "negative_amount",
        "amount < 0 AND NOT is_return",
        "negative amount on an order",
        "fix the amount, or pass {returns} net to count negative lines as returns",
    ),
)
BAD_CUSTOMER_ID = Rule(
    "bad_customer_id",
    f"length(customer_id) > {MAX_ID_LENGTH} OR regexp_matches(customer_id, '[\\x00-\\x1f\\x7f]')",
    f"customer id with a control character (a tab, a line break) or longer than {MAX_ID_LENGTH} characters",
    "fix the id in the export (such an id could not be published, served or looked up)",
)
"""The one id rule, judged when a source is read, right after ``missing_customer_id``: what a run accepts can be
published, served and looked up (:mod:`rfmseg.stores`, the API). Only for text ids (a number is always fine)."""
AFTER_AS_OF = Rule(
    "after_as_of",
    "CAST(ts AS DATE) > DATE '{as_of}'",
    "row dated after the as-of date",
    "set a later {as_of} or remove the future-dated rows",
)
RETURNS_ONLY = Rule(
    "returns_only_customer",
    f"customer_id IN (SELECT customer_id FROM {VIEWS.returns_only})",
    "usable rows of a customer who has only returns (no order to give recency or frequency)",
    "nothing to fix if the purchases predate the file; otherwise export the history that holds them",
)
"""Judged per customer, after every row rule (a window over the rows still used): applies when the policy
has returns, since only then can a customer's used rows all be returns."""
EXCLUDED_RETURN = Rule(
    "excluded_return",
    "is_return",
    "return or cancellation, excluded (returns: exclude)",
    "use {returns} net to subtract returns from monetary instead",
)
RFM_RULES = (
    Rule("missing_customer_id", "customer_id IS NULL", "no customer id", "fill the customer id"),
    BAD_CUSTOMER_ID,
    Rule(
        "bad_recency",
        "recency_days IS NULL OR isnan(recency_days) OR isinf(recency_days) OR recency_days < 0",
        "recency missing or negative",
        "recency_days must be a whole number of days >= 0",
    ),
    Rule(
        "bad_frequency",
        "frequency IS NULL OR isnan(frequency) OR isinf(frequency) OR frequency < 1",
        "frequency missing or below 1",
        "frequency must be a count of orders >= 1",
    ),
    Rule(
        "bad_monetary",
        f"monetary IS NULL OR isnan(monetary) OR monetary < 0 OR monetary > {MAX_ABS_NUMBER:.0e}",
        f"monetary missing, not a number or negative (or beyond {MAX_ABS_NUMBER:.0e})",
        "monetary must be a number >= 0",
    ),
    Rule(
        "duplicate_customer_id",
        "count(*) OVER (PARTITION BY customer_id) > 1 AND customer_id IS NOT NULL",
        "customer id listed more than once",
        "keep one row per customer",
    ),
)
"""The rules a ready RFM table's rows are judged by, in order."""
SOURCE_COLUMNS = "{source_columns}"
SOURCE_VIEW = "{source}"
