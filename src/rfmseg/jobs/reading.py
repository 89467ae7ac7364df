"""A stored model and how to read new data for it: the model of a run (:func:`load_model`), and the reading
(preset, row policy, features) of the run that trained it (:func:`reading`), which refresh, retrain and
assign read their input with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from rfmseg.engines.base import Engine
from rfmseg.features import DEFAULT_FEATURES, DEFAULT_UNITS, FeatureSet, Units
from rfmseg.io import Policy
from rfmseg.io.intake import Intake
from rfmseg.model import SegmentModel
from rfmseg.presets import Preset, ReadFormats, build_policy, get_preset
from rfmseg.runs import DEFAULT_RUNS_DIR, Run, get_run
from rfmseg.runs.registry import latest_model_run
from rfmseg.timing import Timer


@dataclass(frozen=True)
class ModelRef:
    """A stored model, the run it was read from and its version (the id of the run that trained it)."""

    run: Run
    model: SegmentModel

    @property
    def model_version(self) -> str:
        return str(
            self.model.provenance_.get("model_version") or self.run.manifest.get("model_version") or self.run.run_id
        )


def load_model(ref: str = "latest", runs_dir: str | Path = DEFAULT_RUNS_DIR) -> ModelRef:
    """The model of run ``ref`` (an id, a unique prefix or 'latest', the latest trained model: a question of
    creation, :func:`~rfmseg.runs.registry.latest_model_run`, not of the latest labels); checks the model
    format version."""
    trained = latest_model_run(Path(runs_dir)) if ref == "latest" else None
    run = trained or get_run(ref, Path(runs_dir))  # no trained run: get_run says there are no runs
    model = SegmentModel.load(run.path / "model.json")
    if not hasattr(model, "provenance_"):
        model.provenance_ = {}
    return ModelRef(run, model)


@dataclass(frozen=True)
class Reading:
    """How to read an input so it means what the model was trained on: preset, row policy, features, units."""

    preset: Preset | None
    policy: Policy
    features: FeatureSet
    currency: str
    units: Units

    def load(
        self, engine: Engine, source: Any, columns: dict[str, str] | None, as_of: Any, timer: Timer
    ) -> tuple[Intake, pa.Table]:
        """The prepared input and its RFM table, read by ``engine`` this way."""
        intake = engine.load_rfm(source, columns, as_of, self.policy, timer, self.preset, self.features)
        return intake, intake.rfm

    def describe(self) -> dict[str, Any]:
        return {
            "preset": self.preset.name if self.preset else None,
            "preset_definition": self.preset.to_dict() if self.preset else None,
            "features": self.features.to_dict(),
        }


def reading(
    trained: Run | None = None,
    preset: str | Preset | None = None,
    policy: Policy | None = None,
    bad_rows: str | None = None,
    returns: str | None = None,
    date_format: str | None = None,
    formats: ReadFormats | None = None,
) -> Reading:
    """The reading of the run that trained the model (its preset and features), with the options given
    (``formats``: decimal, encoding, sheet, max_quarantine, as :func:`rfmseg.presets.build_policy` takes them)."""
    params = (trained.manifest.get("params") or {}) if trained else {}
    p = _preset(preset, params)
    features = (
        FeatureSet.from_dict(params["features"]) if params.get("features") else (p.features if p else DEFAULT_FEATURES)
    )
    return Reading(
        p,
        build_policy(p, policy, bad_rows, returns, date_format, **(formats or {})),
        features,
        p.currency if p else "$",
        p.units if p else DEFAULT_UNITS,
    )


def _preset(given: str | Preset | None, params: dict[str, Any]) -> Preset | None:
    """The preset to read with: the one given (a value, or a built-in name), else the full definition the
    trained run recorded (so a project-file preset needs no registration), else the trained run's preset
    by name (runs written before the definition was recorded)."""
    if isinstance(given, Preset):
        return given
    if given:
        return get_preset(given)
    if params.get("preset_definition"):
        return Preset.from_dict(params["preset_definition"])
    return get_preset(params["preset"]) if params.get("preset") else None
