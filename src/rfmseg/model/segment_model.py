"""SegmentModel: transform + K-Means + names, fitted once and stored as JSON to score new customers.

Follows the scikit-learn estimator contract: hyper-parameters are keyword arguments stored unchanged,
fitted state ends in ``_``, ``fit`` returns self, ``predict`` checks the model is fitted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rfmseg.errors import ModelFormatError, ParameterError
from rfmseg.model.kmeans import cluster_means, fit_kmeans, nearest
from rfmseg.model.naming import DEFAULT_VOCABULARY, Vocabulary, name_clusters
from rfmseg.model.rhythm import Rhythm
from rfmseg.model.transform import Transform, check_transform

FORMAT_VERSION = 1
K_MIN, K_MAX = 2, 10
"""the K a run fits, from K_MIN to K_MAX segments (``k``, `--k`); `choose-k` compares K within the same range"""


@dataclass
class Assignment:
    labels: np.ndarray
    names: list[str]
    """the model's segment names, by cluster index"""
    distance: np.ndarray
    margin: np.ndarray
    distance_to: np.ndarray | None = None
    """the distance to one more centroid, when :meth:`SegmentModel.predict` was asked for it (``to``)"""

    @property
    def segments(self) -> list[str]:
        """The segment name of each customer (built on access: millions of list entries otherwise)."""
        return np.asarray(self.names, dtype=object)[self.labels].tolist()


def too_few_distinct(k: int, distinct: int) -> ParameterError:
    """The error of a fit asked for ``k`` segments of data with only ``distinct`` different RFM rows."""
    return ParameterError(
        f"{{k}} {k} needs at least {k} customers with different RFM values; the data has {distinct}; "
        "use a smaller {k}",
        param="k",
    )


class SegmentModel:
    provenance_: Mapping[str, Any]
    """where the model came from (run id, as-of, data hash...): set by the job that fits or loads it"""
    rhythm_: Rhythm | None
    """each customer's rhythm model (p_alive, expected orders and value), when the run fitted one"""
    rhythm_status_: Mapping[str, Any]
    """why there is no rhythm model (``status`` off or not_applicable, and the ``reason``), when there is none"""

    def __init__(
        self,
        k: int = 4,
        transform: str = "minmax",
        n_init: int = 10,
        random_state: int = 42,
        vocabulary: Vocabulary = DEFAULT_VOCABULARY,
        sample_size: int | None = None,
    ) -> None:
        self.k = k
        self.transform = transform
        self.n_init = n_init
        self.random_state = random_state
        self.vocabulary = vocabulary
        self.sample_size = sample_size
        """points the K-Means restarts run on above kmeans.SCALE_THRESHOLD customers (None: the default)"""
        self.rhythm_ = None
        self.rhythm_status_ = {"status": "off"}

    # ----------------------------------------------------------------------------------------- fitting
    def check_params(self, n_customers: int) -> None:
        """Refuse hyper-parameters no fit on ``n_customers`` customers can honour (any engine checks them)."""
        check_transform(self.transform)
        if not isinstance(self.k, int) or self.k < 2:
            raise ParameterError(f"{{k}} {self.k} should be a whole number >= 2", param="k")
        if self.k > n_customers:
            raise ParameterError(
                f"{{k}} {self.k} is larger than the number of customers ({n_customers}); use a smaller {{k}}", param="k"
            )
        if self.n_init < 1:
            raise ParameterError(f"{{n_init}} {self.n_init} should be >= 1", param="n_init")
        if self.sample_size is not None and (not isinstance(self.sample_size, int) or self.sample_size < self.k):
            raise ParameterError(
                f"{{sample_size}} {self.sample_size} should be a whole number >= {{k}} ({self.k}); "
                "omit {sample_size} for the default",
                param=("sample_size", "k"),
            )

    def fit(self, rfm: np.ndarray) -> SegmentModel:
        """Fit on an (n, 3) array of recency_days, frequency, monetary."""
        self.fit_predict(rfm)
        return self

    def fit_predict(self, rfm: np.ndarray) -> Assignment:
        """Fit, and return the training customers' assignment (what :meth:`predict` gives for them, without
        scoring them again: the fit's last pass over the customers computed it)."""
        x = np.asarray(rfm, dtype=float)
        self.check_params(x.shape[0])
        distinct = distinct_rows(x, self.k)
        if distinct < self.k:
            raise too_few_distinct(self.k, distinct)
        self.transform_ = Transform.fit(self.transform, x)
        z = self.transform_.apply(x)
        km = fit_kmeans(z, self.k, self.n_init, self.random_state, sample_size=self.sample_size)
        self.fit_info_ = km.describe()
        if km.distance is None or km.margin is None:  # the exact path: labels as predict() computes them
            labels, distance, margin = nearest(z, km.centers)
        else:
            labels, distance, margin = km.labels, km.distance, km.margin
        self.set_clusters(km.centers, x, km.inertia, km.n_iter, labels=labels)
        return Assignment(labels, list(self.names_), distance, margin)

    def set_clusters(
        self,
        centers_scaled: np.ndarray,
        x: np.ndarray,
        inertia: float,
        n_iter: int,
        z: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        """Centres, names and metrics from centres fitted on ``x`` (here or by another engine's K-Means);
        ``z`` (``x`` transformed) and ``labels`` (each customer's nearest centre) when already at hand."""
        self.centroids_scaled_ = np.asarray(centers_scaled, float)
        if labels is None:
            z = self.transform_.apply(x) if z is None else z
            labels, _, _ = nearest(z, self.centroids_scaled_)
        # centroids in original units: the mean RFM of each cluster's members (what a user can read),
        # which for min-max equals the inverse transform of the centre
        self.centroids_raw_ = cluster_means(x, labels, self.k)
        named = name_clusters(self.centroids_raw_, x, self.vocabulary)
        self.levels_ = [list(n.levels) for n in named]
        self.set_names([n.name for n in named], [n.reason for n in named])
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.n_customers_ = int(x.shape[0])

    def set_names(self, names: list[str], reasons: list[str]) -> None:
        """The clusters' names and the reasons for them, by cluster index: the one place they are set (from
        the naming rules by :meth:`set_clusters`, or carried over by :func:`rfmseg.model.naming.carry_names`)."""
        if len(names) != self.k or len(reasons) != self.k:
            raise ParameterError(f"a model of k={self.k} needs {self.k} names and reasons, got {names}")
        self.names_ = list(names)
        self.reasons_ = list(reasons)

    def _check_fitted(self) -> None:
        if not hasattr(self, "centroids_scaled_"):
            raise ParameterError("this SegmentModel is not fitted yet; call fit() or load a stored model")

    # ----------------------------------------------------------------------------------------- scoring
    def predict(self, rfm: np.ndarray, to: str | None = None) -> Assignment:
        """Each customer's nearest segment, the distance to it and the margin to the second nearest; with
        ``to`` (a segment name), also each customer's distance to that segment's centroid."""
        self._check_fitted()
        z = self.transform_.apply(np.asarray(rfm, dtype=float))
        labels, dist, margin = nearest(z, self.centroids_scaled_)
        extra = None
        if to is not None:
            extra = np.sqrt(((z - self.centroids_scaled_[self.names_.index(to)]) ** 2).sum(axis=1))
        return Assignment(labels, list(self.names_), dist, margin, extra)

    def distances(self, rfm: np.ndarray) -> np.ndarray:
        """(n, K) distance of each customer to each centroid, in scaled units."""
        self._check_fitted()
        z = self.transform_.apply(np.asarray(rfm, dtype=float))
        return np.sqrt(((z[:, None, :] - self.centroids_scaled_[None, :, :]) ** 2).sum(axis=2))

    # ----------------------------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "params": {
                "k": self.k,
                "transform": self.transform,
                "n_init": self.n_init,
                "random_state": self.random_state,
                "sample_size": self.sample_size,
            },
            "fit": dict(getattr(self, "fit_info_", {})),
            "transform": self.transform_.to_dict(),
            "features": ["recency_days", "frequency", "monetary"],
            "centroids_scaled": self.centroids_scaled_.tolist(),
            "centroids_raw": self.centroids_raw_.tolist(),
            "names": self.names_,
            "reasons": self.reasons_,
            "levels": self.levels_,
            "inertia": self.inertia_,
            "n_iter": self.n_iter_,
            "n_customers": self.n_customers_,
            "vocabulary": {
                "types": self.vocabulary.to_records(),
                "weights": list(self.vocabulary.weights),
                "labels": list(self.vocabulary.labels),
            },
            # who trained it, on what data, with which package versions (set by the run that writes it)
            "provenance": dict(getattr(self, "provenance_", {})),
            # the rhythm model's parameters (a refresh scores with them), or why there is none
            "rhythm": self.rhythm_.to_dict() if self.rhythm_ is not None else dict(self.rhythm_status_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "model") -> SegmentModel:
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFormatError(
                f"{source}: model format version {version} cannot be read by this rfmseg (reads version "
                f"{FORMAT_VERSION}); train a new model without it (`rfmseg retrain FILE --no-carry-names`, or "
                "`rfmseg run FILE`) or install the rfmseg that wrote it"
            )
        try:
            p = d["params"]
            voc = d["vocabulary"]
            model = cls(
                k=int(p["k"]),
                transform=p["transform"],
                n_init=int(p["n_init"]),
                random_state=int(p["random_state"]),
                sample_size=None if p.get("sample_size") is None else int(p["sample_size"]),
                vocabulary=Vocabulary.from_records(voc["types"], tuple(voc["weights"]), tuple(voc["labels"])),
            )
            model.transform_ = Transform.from_dict(d["transform"])
            model.centroids_scaled_ = np.asarray(d["centroids_scaled"], float)
            model.centroids_raw_ = np.asarray(d["centroids_raw"], float)
            model.names_ = list(d["names"])
            model.reasons_ = list(d["reasons"])
            model.levels_ = [list(x) for x in d["levels"]]
            model.inertia_ = float(d["inertia"])
            model.n_iter_ = int(d["n_iter"])
            model.n_customers_ = int(d["n_customers"])
            model.fit_info_ = dict(d.get("fit") or {})
            model.provenance_ = dict(d.get("provenance") or {})
            rhythm = d.get("rhythm") or {"status": "off", "reason": "the model was trained before the rhythm models"}
            if rhythm.get("status") == "fitted":
                model.rhythm_ = Rhythm.from_dict(rhythm)
            else:
                model.rhythm_status_ = dict(rhythm)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: damaged model file ({exc!r} missing or wrong); retrain it") from None
        return model

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SegmentModel:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelFormatError(f"{path}: no model file; give a run id that has model.json") from None
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"{path}: not valid JSON ({exc.msg}); retrain the model") from None
        return cls.from_dict(d, str(path))


def distinct_rows(x: np.ndarray, at_least: int, head: int = 10_000) -> int:
    """Distinct rows of ``x``, or a count >= ``at_least`` found in its first ``head`` rows (enough to know
    K-Means can find ``at_least`` clusters without sorting millions of rows)."""
    found = np.unique(x[:head], axis=0).shape[0]
    if found >= at_least or x.shape[0] <= head:
        return found
    return np.unique(x, axis=0).shape[0]
