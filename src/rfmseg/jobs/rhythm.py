"""Each customer's rhythm in a run: whether a run fits the rhythm model (p_alive, expected orders and value;
:mod:`rfmseg.model.rhythm`, docs/rhythm.md), and the fit itself.

The models are opt-in (``rhythm=True``, ``rfmseg run --rhythm``): the fit needs the optional ``clv`` extra
(pymc-marketing) and takes seconds (docs/rhythm.md, "Sample and cost"). A preset says whether they apply
(:attr:`rfmseg.presets.Preset.rhythm`); asked for where they do not apply, or without the extra, the run
stops at once with one line saying why (the install command for the extra). A retrain refits when the model
it follows had one (unless told otherwise); a refresh scores with the parameters of its model and never fits.

What the run decided is recorded in model.json (``rhythm``: the fitted parameters, or ``status`` off or
not_applicable and the ``reason``) and in the manifest (the same without the parameters).
"""

from __future__ import annotations

import importlib.util
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rfmseg.errors import ParameterError
from rfmseg.install import install_command
from rfmseg.model import SegmentModel
from rfmseg.model.rhythm import DEFAULT_MODEL, SAMPLE_SIZE, MissingExtra, fit_rhythm

if TYPE_CHECKING:
    from rfmseg.presets import Preset

OFF_REASON = "not asked for (rhythm=True fits it; it needs the clv extra)"


def rhythm_model(preset: Preset | None, wanted: bool | None) -> tuple[str | None, dict[str, Any]]:
    """The repeat-order model a run fits (None: none) and, when none, the status recorded instead.

    ``wanted``: True asks for it (refused in one line where the preset says it does not apply or the clv
    extra is missing), False or None (the default: opt-in) leaves it off."""
    model = preset.rhythm if preset is not None else DEFAULT_MODEL
    if model is None:
        assert preset is not None
        reason = f"preset '{preset.name}': {preset.rhythm_note or 'an order is not a repeatable purchase'}"
        if wanted:
            raise ParameterError(
                f"{{rhythm}}: the rhythm models do not apply to {reason}; run without {{rhythm}}", param="rhythm"
            )
        return None, {"status": "not_applicable", "reason": reason}
    if not wanted:
        return None, {"status": "off", "reason": OFF_REASON}
    if importlib.util.find_spec("pymc_marketing") is None:
        raise MissingExtra(f"{{rhythm}} needs the clv extra (pymc-marketing): {install_command('clv')}", param="rhythm")
    return model, {}


def fit_model_rhythm(
    segment_model: SegmentModel,
    rhythm: tuple[str | None, dict[str, Any]],
    rfm: pa.Table,
    as_of: date | None,
    random_state: int,
) -> dict[str, Any]:
    """Fit the rhythm model chosen by :func:`rhythm_model` on a seeded sample of at most 50,000 customers of
    ``rfm`` into ``segment_model`` (or record why there is none); returns what the manifest records."""
    name, status = rhythm
    if name is None:
        segment_model.rhythm_, segment_model.rhythm_status_ = None, status
        return dict(status)
    if as_of is None or "first_order_date" not in rfm.column_names:
        raise ParameterError(
            "{rhythm} needs each customer's order dates: give transactions, not a ready RFM table", param="rhythm"
        )
    fitted = fit_rhythm(rfm, as_of, name, SAMPLE_SIZE, random_state)
    segment_model.rhythm_ = fitted
    return {"status": "fitted", "model": fitted.model, "fit": fitted.fit}


def rhythm_status(segment_model: SegmentModel) -> dict[str, Any]:
    """What a run scored with ``segment_model`` records of its rhythm model (a refresh: the parameters of the
    run that trained the model, never refitted)."""
    fitted = segment_model.rhythm_
    if fitted is None:
        return dict(segment_model.rhythm_status_)
    return {"status": "fitted", "model": fitted.model, "params": fitted.params, "spend": fitted.spend}
