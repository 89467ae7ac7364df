"""The self-contained HTML report: the explorer's stylesheet and script, plotly.js and the run's view, all
inlined in one file that opens from disk with no server and no internet."""

from __future__ import annotations

import html
import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from rfmseg.errors import InputError

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rfmseg">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
{css}
</style>
</head>
<body>
<div id="app"><noscript>This report needs JavaScript to draw its charts.</noscript></div>
<script type="application/json" id="rfmseg-data">{data}</script>
<script>
{plotly}
</script>
<script>
{script}
</script>
</body>
</html>
"""


def static_file(name: str) -> str:
    """A file of the explorer (``rfmseg/service/static``) as text."""
    return resources.files("rfmseg.service").joinpath("static").joinpath(name).read_text(encoding="utf-8")


@cache
def plotly_js() -> str:
    """plotly.min.js as bundled in the installed ``plotly`` Python package (never a CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def plotly_js_path() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _inline_script(code: str) -> str:
    # "</script" inside inlined code would end the element early
    return code.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>', '&' or line separators left unescaped."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def render_html(view: dict[str, Any]) -> str:
    """The report page for a view built by :func:`rfmseg.report.data.build_view`."""
    run = view.get("run") or {}
    title = f"rfmseg report — run {run.get('run_id')} (as of {run.get('as_of')})"
    return _PAGE.format(
        title=html.escape(title),
        css=static_file("explorer.css"),
        data=embed_json(view),
        plotly=_inline_script(plotly_js()),
        script=_inline_script(static_file("explorer.js")),
    )


def write_html(path: Path, page: str) -> Path:
    """Write ``page`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the report, e.g. -o {path / 'report.html'}")
    if not path.parent.exists():
        raise InputError(f"cannot write the report to {path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    except PermissionError:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write the report to {path}: permission denied; choose another -o") from None
    return path
