"""The HTML report: the explorer's stylesheet and script, plotly.js and the run's view in one page that opens
from disk with no server and no internet.

plotly.js (4.8 MB) is most of a page. A report written into a run folder loads it from one copy shared by the
runs of its registry (:data:`ASSETS`, a folder the run listing skips), so a run folder's report stays small;
a report written for sharing (``rfmseg report RUN -o FILE``) and the one the API serves carry it inline
(:func:`inline_assets`), and stand alone."""

from __future__ import annotations

import html
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from rfmseg.errors import InputError
from rfmseg.io.outputs import put_in_place, staging_folder
from rfmseg.runs.registry import ASSETS_DIR

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
{plotly}
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


JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
"""how rfmseg writes JSON with orjson, a report's embedded data and the API's bodies alike (5-10x the standard
library's speed; non-finite floats as null; text as UTF-8 rather than as \\u escapes: the page declares UTF-8)"""


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>', '&' or line separators left unescaped."""
    text = orjson.dumps(data, option=JSON_OPTIONS).decode()
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


ASSETS = ASSETS_DIR
"""the folder of a run registry holding what its runs' reports share (plotly.js)"""


def plotly_asset_name() -> str:
    """The shared copy's file name, versioned: a registry keeps each version its reports were written with."""
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


def shared_plotly(runs_dir: Path) -> str:
    """Put plotly.js in ``runs_dir``'s :data:`ASSETS` once (atomically) and give its address as seen from a
    run folder of that registry."""
    name = plotly_asset_name()
    folder = Path(runs_dir) / ASSETS
    target = folder / name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        try:
            tmp.write_text(plotly_js(), encoding="utf-8")
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial copy
            raise
    return f"../{ASSETS}/{name}"


def _plotly_tag(src: str | None) -> str:
    if src is None:
        return f"<script>\n{_inline_script(plotly_js())}\n</script>"
    return f'<script src="{html.escape(src)}"></script>'


def render_html(view: dict[str, Any], plotly_src: str | None = None) -> str:
    """The report page for a view built by :func:`rfmseg.report.data.build_view`: plotly.js inline, or
    loaded from ``plotly_src`` (a relative address, :func:`shared_plotly`)."""
    run = view.get("run") or {}
    title = f"rfmseg report — run {run.get('run_id')} (as of {run.get('as_of')})"
    return _PAGE.format(
        title=html.escape(title),
        css=static_file("explorer.css"),
        data=embed_json(view),
        plotly=_plotly_tag(plotly_src),
        script=_inline_script(static_file("warnings.js") + "\n" + static_file("explorer.js")),
    )


def inline_assets(page: str) -> str:
    """A report page that loads the shared plotly.js, made to stand alone (plotly.js inline); any other page
    as it is."""
    tag = _plotly_tag(f"../{ASSETS}/{plotly_asset_name()}")
    return page.replace(tag, _plotly_tag(None), 1) if tag in page else page


def check_output(path: Path) -> Path:
    """``path`` as a report's output, or the one-line error that says why it cannot be (checked before the
    report is computed)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the report, e.g. -o {path / 'report.html'}")
    if not path.parent.exists():
        raise InputError(f"cannot write the report to {path}: the folder {path.parent} does not exist")
    return path


def write_html(path: Path, page: str) -> Path:
    """Write ``page`` to ``path`` atomically (a temporary file renamed into place); ``-`` (standard output), a
    named pipe or a device is written into instead (:func:`rfmseg.io.outputs.put_in_place`)."""
    path = check_output(path)
    tmp = staging_folder(path) / f".{path.name}.{os.getpid()}.tmp"
    try:
        tmp.write_text(page, encoding="utf-8")
        put_in_place(tmp, path)
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise InputError(f"cannot write the report to {path}: permission denied; choose another -o") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no partial copy beside the report
    return path
