"""The registry of the shipped sample data sets: preset name -> (file name, generator).

This module imports the preset modules, which import :mod:`rfmseg.presets.samples` for the drawing helpers;
nothing imports it back. Rebuild the files shipped in ``rfmseg/presets/data/`` (a test checks they are
byte-identical to what the generators give)::

    python -m rfmseg.presets.generators
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rfmseg.presets import crm, ecommerce, education, saas
from rfmseg.presets.samples import Sample, data_path


def generators() -> dict[str, tuple[str, Callable[[], Sample]]]:
    """preset name -> (file name, generator) of every shipped sample."""
    return {m.NAME: (m.SAMPLE, m.generate) for m in (ecommerce, saas, crm, education)}


def write_all(folder: Path | None = None) -> list[Path]:
    written = []
    for file_name, generate in generators().values():
        path = (folder / file_name) if folder else data_path(file_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generate().csv_text(), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - the maintainers' command
    for p in write_all():
        print(p)
