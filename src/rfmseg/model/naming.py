"""Name each cluster from what its centroid shows, relative to the whole customer base.

The rule set is data: a vocabulary of segment names, each with a *prototype* — where a segment of that
name sits on three levels in [0, 1] — and its action and priority. For each centroid we compute its levels:

* recency level  = share of customers whose recency is longer (worse) than the centroid's;
* frequency level = share of customers with fewer orders than the centroid;
* monetary level  = share of customers who spent less than the centroid;

(ties count half, so a mass of one-order customers sits in its middle). Each cluster then gets the name
whose prototype is nearest (weighted squared distance), one name per cluster, chosen for all clusters at
once as an assignment problem (:func:`cheapest_pairs`) so names are unique and the total misfit is
smallest. This works for any K up to the vocabulary's size, is deterministic, and each name carries the
levels that earned it.

A user or a preset replaces the vocabulary (see ``Vocabulary.from_records``) without touching code.

A retrained model carries the previous model's names over where the profile held (:func:`carry_names`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np

from rfmseg.errors import NotFoundError, ParameterError
from rfmseg.model.transform import Transform

DEFAULT_MAX_NAME_SHIFT = 0.5
"""A matched centroid keeps its previous name while it moved less than this fraction of the distance from
its previous position to the nearest other previous centroid (measured in the new model's scaled space)."""
PAIRS_BY_SUBSETS_MAX = 12
"""Up to this many pairs (the smaller side of the cost matrix), :func:`cheapest_pairs` solves the assignment
itself; above it, with SciPy's ``linear_sum_assignment``."""


@dataclass(frozen=True)
class SegmentType:
    name: str
    recency: float
    frequency: float
    monetary: float
    action: str
    priority: int
    """1 = act first (protect Champions first, then the silent high-value, then the rest)"""
    description: str


@dataclass(frozen=True)
class Vocabulary:
    types: tuple[SegmentType, ...]
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    labels: tuple[str, str, str] = ("recency", "frequency", "monetary")
    """what R, F and M mean in this domain (for reasons): e.g. 'days since last login'"""
    entity: str = "customers"
    """who is segmented, in the plural (for reasons): users, leads, students; a preset sets it from its units"""

    @classmethod
    def from_records(
        cls,
        records: list[dict[str, Any]],
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        labels: tuple[str, str, str] = ("recency", "frequency", "monetary"),
        entity: str = "customers",
    ) -> Vocabulary:
        types = []
        for i, rec in enumerate(records):
            try:
                t = SegmentType(
                    name=str(rec["name"]),
                    recency=float(rec["recency"]),
                    frequency=float(rec["frequency"]),
                    monetary=float(rec["monetary"]),
                    action=str(rec.get("action", "")),
                    priority=int(rec.get("priority", 5)),
                    description=str(rec.get("description", "")),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ParameterError(
                    f"segment vocabulary entry {i + 1}: needs name, recency, frequency, monetary (levels 0-1), "
                    f"got {rec!r} ({exc})"
                ) from None
            for level in (t.recency, t.frequency, t.monetary):
                if not 0.0 <= level <= 1.0:
                    raise ParameterError(f"segment vocabulary entry '{t.name}': levels must lie in [0, 1]")
            types.append(t)
        names = [t.name for t in types]
        if len(set(names)) != len(names):
            raise ParameterError("segment vocabulary: names must be unique")
        return cls(tuple(types), weights, labels, entity)

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.types]

    def get(self, name: str) -> SegmentType | None:
        return next((t for t in self.types if t.name == name), None)


DEFAULT_VOCABULARY = Vocabulary.from_records(
    [
        {
            "name": "Champions",
            "recency": 0.95,
            "frequency": 0.95,
            "monetary": 0.95,
            "priority": 1,
            "description": "bought recently, buy often and spend the most",
            "action": "Early access to new products, loyalty programme, VIP support",
        },
        {
            "name": "Loyal Buyers",
            "recency": 0.75,
            "frequency": 0.75,
            "monetary": 0.55,
            "priority": 3,
            "description": "buy regularly and recently, with moderate spend",
            "action": "Volume discounts, subscriptions, cross-sell",
        },
        {
            "name": "Potential Loyalists",
            "recency": 0.85,
            "frequency": 0.45,
            "monetary": 0.4,
            "priority": 4,
            "description": "recent buyers with a few orders who could become regulars",
            "action": "Membership offer, personalised recommendations, second-category nudge",
        },
        {
            "name": "New Customers",
            "recency": 0.95,
            "frequency": 0.1,
            "monetary": 0.15,
            "priority": 4,
            "description": "first orders very recently",
            "action": "Onboarding series, welcome offer on the second order",
        },
        {
            "name": "Can't Lose Them",
            "recency": 0.05,
            "frequency": 0.9,
            "monetary": 0.95,
            "priority": 2,
            "description": "used to buy very often and spend the most, silent for long",
            "action": "Personal outreach from the account team, win-back offer on their favourite products",
        },
        {
            "name": "At-Risk",
            "recency": 0.15,
            "frequency": 0.5,
            "monetary": 0.75,
            "priority": 2,
            "description": "high past spend but long silent",
            "action": "Win-back sequence, personalised incentive, exit survey",
        },
        {
            "name": "Need Attention",
            "recency": 0.5,
            "frequency": 0.5,
            "monetary": 0.5,
            "priority": 4,
            "description": "middling on every count, drifting",
            "action": "Limited-time offer based on past purchases, reactivation reminder",
        },
        {
            "name": "Big Spenders",
            "recency": 0.5,
            "frequency": 0.3,
            "monetary": 0.9,
            "priority": 3,
            "description": "few but large orders",
            "action": "Premium product recommendations, concierge service, bundles",
        },
        {
            "name": "Occasional",
            "recency": 0.45,
            "frequency": 0.15,
            "monetary": 0.15,
            "priority": 5,
            "description": "buy now and then, low spend",
            "action": "First-repeat-purchase incentive, product discovery",
        },
        {
            "name": "Hibernating",
            "recency": 0.2,
            "frequency": 0.25,
            "monetary": 0.25,
            "priority": 5,
            "description": "low spend, few orders, silent for a while",
            "action": "Reactivation campaign with a relevant offer, low cost per contact",
        },
        {
            "name": "Lost",
            "recency": 0.03,
            "frequency": 0.05,
            "monetary": 0.05,
            "priority": 6,
            "description": "one small order long ago",
            "action": "One low-cost reactivation attempt, then suppress from paid channels",
        },
    ]
)


def levels(centroids_raw: np.ndarray, population: np.ndarray) -> np.ndarray:
    """(K, 3) levels in [0, 1] of each centroid within the population (columns R, F, M; R inverted): the
    share of the population below the centroid's value, counting ties as half. Counted with two comparisons
    per centroid instead of sorting the population (a sort of millions of values per feature cost seconds)."""
    out = np.empty_like(centroids_raw, dtype=float)
    n = population.shape[0]
    for j in range(3):
        col = population[:, j]
        for i, c in enumerate(centroids_raw[:, j]):
            below = np.count_nonzero(col < c)
            upto = np.count_nonzero(col <= c)
            share = (below + (upto - below) / 2) / n
            out[i, j] = 1.0 - share if j == 0 else share
    return out


@dataclass(frozen=True)
class Named:
    name: str
    reason: str
    levels: tuple[float, float, float]
    fit: float
    """squared distance to the prototype: 0 is a perfect fit"""


def name_clusters(
    centroids_raw: np.ndarray, population: np.ndarray, vocabulary: Vocabulary = DEFAULT_VOCABULARY
) -> list[Named]:
    """One unique name per centroid (rows of ``centroids_raw`` in R, F, M order)."""
    k = centroids_raw.shape[0]
    if k > len(vocabulary.types):
        raise ParameterError(
            f"{{k}} {k} is more segments than the vocabulary has names ({len(vocabulary.types)}); "
            "use a smaller {k} or add names to the vocabulary",
            param="k",
        )
    lv = levels(centroids_raw, population)
    protos = np.array([[t.recency, t.frequency, t.monetary] for t in vocabulary.types])
    w = np.asarray(vocabulary.weights)
    cost = (((lv[:, None, :] - protos[None, :, :]) ** 2) * w).sum(axis=2)
    out: list[Named | None] = [None] * k
    for r, c in cheapest_pairs(cost):
        t = vocabulary.types[c]
        lvl = (float(lv[r][0]), float(lv[r][1]), float(lv[r][2]))
        out[r] = Named(t.name, reason(t, centroids_raw[r], lv[r], vocabulary), lvl, float(cost[r, c]))
    return [n for n in out if n is not None]


def cheapest_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    """The assignment problem: pairs (row, column) of ``cost``, each row and each column used at most once,
    min(rows, columns) pairs, with the smallest total cost; sorted by row.

    Naming pairs a handful of clusters with a vocabulary's names, and a retrain a handful of new centroids
    with the previous ones, so it is solved here by dynamic programming over the subsets of the smaller side
    (each column in turn given to one row not yet paired, or to none): 11 names x 4 clusters is 700 steps.
    SciPy's ``linear_sum_assignment`` (the Hungarian method) gives the same total and is used above
    :data:`PAIRS_BY_SUBSETS_MAX` pairs; importing it costs a third of a second, more than a whole run of a few
    thousand customers spends naming and writing (tests/test_naming.py compares the two)."""
    cost = np.asarray(cost, dtype=float)
    rows, cols = cost.shape
    if rows > cols:
        return sorted((r, c) for c, r in cheapest_pairs(cost.T))
    if rows > PAIRS_BY_SUBSETS_MAX:
        from scipy.optimize import linear_sum_assignment

        r_idx, c_idx = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(r_idx, c_idx, strict=True)]
    table = cost.tolist()
    states = 1 << rows
    best = [math.inf] * states  # best[paired]: the lowest total with the rows of bit set ``paired`` paired
    best[0] = 0.0
    given: list[list[int]] = []  # per column: the row it went to on the way to each state (-1: to none)
    for c in range(cols):
        after, to = best.copy(), [-1] * states
        for paired, total in enumerate(best):
            if total == math.inf:
                continue
            for r in range(rows):
                bit = 1 << r
                if not paired & bit and total + table[r][c] < after[paired | bit]:
                    after[paired | bit], to[paired | bit] = total + table[r][c], r
        best = after
        given.append(to)
    pairs, paired = [], states - 1
    for c in range(cols - 1, -1, -1):
        r = given[c][paired]
        if r >= 0:
            pairs.append((r, c))
            paired ^= 1 << r
    return sorted(pairs)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and the rows of ``b`` (a few centroids each)."""
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def reason(t: SegmentType, centroid: np.ndarray, lv: np.ndarray, vocabulary: Vocabulary) -> str:
    """Why a cluster with ``centroid`` (at levels ``lv``) is named ``t``: its typical member, in the
    vocabulary's words."""
    r_label, f_label, m_label = vocabulary.labels
    parts = (
        f"{r_label} {centroid[0]:,.0f} days (more recent than {lv[0]:.0%} of {vocabulary.entity})",
        f"{f_label} {centroid[1]:,.1f} (above {lv[1]:.0%})",
        f"{m_label} {centroid[2]:,.0f} (above {lv[2]:.0%})",
    )
    what = f" — {t.description}" if t.description else ""
    return f"typical member: {'; '.join(parts)}{what}"


@dataclass
class NameDecision:
    cluster: int
    name: str
    data_driven_name: str
    previous_name: str | None
    distance: float | None
    limit: float | None
    decision: Literal["kept", "renamed", "new"]
    why: str


class NamedModel(Protocol):
    """What :func:`carry_names` reads of a fitted model (a :class:`~rfmseg.model.segment_model.SegmentModel`)
    and the one thing it changes (its names and reasons)."""

    @property
    def k(self) -> int: ...
    @property
    def transform_(self) -> Transform: ...
    @property
    def centroids_raw_(self) -> np.ndarray: ...
    @property
    def names_(self) -> Sequence[str]: ...
    @property
    def reasons_(self) -> Sequence[str]: ...
    @property
    def levels_(self) -> Sequence[Sequence[float]]: ...
    @property
    def vocabulary(self) -> Vocabulary: ...

    def set_names(self, names: list[str], reasons: list[str]) -> None: ...


def carry_names(
    previous: NamedModel,
    new: NamedModel,
    population: np.ndarray,
    max_shift: float = DEFAULT_MAX_NAME_SHIFT,
    previous_version: str | None = None,
) -> dict[str, Any]:
    """Give ``new`` (freshly fitted, named by the rules) the names of ``previous`` where the profile held.

    Centroids are compared in the *new* model's scaled space: both models' centroids in original units
    (the mean RFM of their members: days, orders, money — comparable across models) go through the new
    transform, the one fitted on today's customers and used by K-Means to tell clusters apart. New and
    previous centroids are paired with the smallest total distance (:func:`cheapest_pairs`). A pair keeps the
    previous name when the new centroid lies within ``max_shift`` × (distance from the previous centroid
    to its nearest other previous centroid): at 0.5 the centroid has not crossed half way towards another
    segment, so it is still that segment. Otherwise — or when K grew and a centroid has no partner — the
    cluster keeps the name the rules give it from its data, chosen among the names not carried over.
    Sets the names and reasons of ``new`` (:meth:`SegmentModel.set_names`); returns the report stored in the
    summary and the manifest.
    """
    if not max_shift >= 0:  # NaN too: no shift compares with it
        raise ParameterError(
            f"{{max_name_shift}} {max_shift} should be a number >= 0 (0 never carries a name over)",
            param="max_name_shift",
        )
    data_driven = list(new.names_)
    zn = new.transform_.apply(new.centroids_raw_)
    zp = new.transform_.apply(previous.centroids_raw_)
    cost = _distances(zn, zp)
    spacing = _distances(zp, zp)
    np.fill_diagonal(spacing, np.inf)
    nearest_other = spacing.min(axis=1) if zp.shape[0] > 1 else np.full(zp.shape[0], np.inf)
    pair = dict(cheapest_pairs(cost))
    carried = {i: j for i, j in pair.items() if cost[i, j] <= max_shift * nearest_other[j]}
    names: list[str | None] = [None] * new.k
    for i, j in carried.items():
        names[i] = previous.names_[j]
    rest = [i for i in range(new.k) if i not in carried]
    if rest:
        taken = {previous.names_[j] for j in carried.values()}
        voc = replace(new.vocabulary, types=tuple(t for t in new.vocabulary.types if t.name not in taken))
        if len(voc.types) < len(rest):  # vocabulary changed since the previous model: name from scratch
            voc = new.vocabulary
        for i, n in zip(rest, name_clusters(new.centroids_raw_[rest], population, voc), strict=True):
            names[i] = n.name
    final = [str(n) for n in names]
    reasons = []
    for i, name in enumerate(final):
        t = new.vocabulary.get(name)
        reasons.append(
            reason(t, new.centroids_raw_[i], np.asarray(new.levels_[i]), new.vocabulary) if t else new.reasons_[i]
        )
    new.set_names(final, reasons)

    decisions: list[NameDecision] = []
    for i in range(new.k):
        cr = new.centroids_raw_[i]
        if i not in pair:
            decisions.append(
                NameDecision(
                    i,
                    final[i],
                    data_driven[i],
                    None,
                    None,
                    None,
                    "new",
                    f"new segment '{final[i]}': no previous centroid to match (K went from {previous.k} to {new.k})",
                )
            )
            continue
        j = pair[i]
        d, limit = float(cost[i, j]), float(max_shift * nearest_other[j])
        old = previous.names_[j]
        pr = previous.centroids_raw_[j]
        moved = (
            f"recency {pr[0]:,.0f}→{cr[0]:,.0f} days, frequency {pr[1]:,.1f}→{cr[1]:,.1f}, "
            f"monetary {pr[2]:,.0f}→{cr[2]:,.0f}"
        )
        lim = "no limit" if not np.isfinite(limit) else f"limit {limit:.3f}"
        if i in carried:
            note = "" if data_driven[i] == old else f"; the naming rules alone would say '{data_driven[i]}'"
            why = f"'{old}' kept: centroid moved {d:.3f} ({lim}): {moved}{note}"
            decisions.append(NameDecision(i, final[i], data_driven[i], old, d, limit, "kept", why))
        elif final[i] == old:
            why = f"'{old}' kept by the naming rules although the centroid moved {d:.3f} ({lim}): {moved}"
            decisions.append(NameDecision(i, final[i], data_driven[i], old, d, limit, "kept", why))
        else:
            why = f"'{old}' → '{final[i]}': the profile changed, centroid moved {d:.3f} > {lim}: {moved}"
            decisions.append(NameDecision(i, final[i], data_driven[i], old, d, limit, "renamed", why))
    retired = [n for n in previous.names_ if n not in final]
    changes = [x.why for x in decisions if x.decision != "kept"]
    changes += [f"segment '{n}' retired: no centroid of the new model carries it" for n in retired]
    return {
        "previous_model": previous_version,
        "rule": (
            f"minimum-cost matching of centroids in the new model's scaled space; a match keeps its name within "
            f"{max_shift} × the distance to the nearest other previous centroid"
        ),
        "max_name_shift": max_shift,
        "segments": [asdict(x) for x in decisions],
        "retired": retired,
        "changes": changes,
        # a carried name the naming rules disagree with: kept (the centroid stayed within the limit), said aloud
        "warnings": [
            f"'{x.name}' carried over from model {previous_version or 'the previous model'} although the naming "
            f"rules alone would call this profile '{x.data_driven_name}' (centroid moved {x.distance:.3f}, limit "
            f"{x.limit:.3f}); it is renamed once it moves past the limit"
            for x in decisions
            if x.decision == "kept" and x.data_driven_name != x.name and x.distance is not None and x.limit is not None
        ],
    }


def slug(name: str) -> str:
    """'Loyal Buyers' -> 'loyal-buyers', "Can't Lose Them" -> 'can-t-lose-them'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def match_segment(name: str, valid: Sequence[str], where: str = "the latest run") -> str:
    """The segment of ``valid`` called ``name``: exactly, else in any case or as a slug (``loyal-buyers``). The one
    rule for a segment asked for by name (the questions, watch, export); an unknown name is a
    :class:`NotFoundError` listing the segments of ``where`` (a caller adds which parameter to fix with
    :meth:`~rfmseg.errors.RfmsegError.with_hint`)."""
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"give a segment name; segments in {where}: {', '.join(valid)}")
    for v in valid:
        if v == name:
            return v
    for v in valid:
        if v.lower() == name.strip().lower() or slug(v) == slug(name):
            return v
    raise NotFoundError(f"unknown segment '{name}'; segments in {where}: {', '.join(valid)}")
