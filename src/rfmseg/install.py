"""How to install what is missing, said the way that works for this installation.

Every message that tells the user to install something (an extra such as ``serve`` or ``postgres``) takes its
command from :func:`install_command`: for an editable checkout (``pip install -e .``, what ``make demo`` and
``make test`` do) the checkout's own pip and folder, ``.venv/bin/pip install -e '.[serve]'``; for an installed
package ``pip install 'rfmseg[serve]'``. Which one is read from the package's install record (PEP 610's
``direct_url.json``: ``dir_info.editable``).
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

DISTRIBUTION = "rfmseg"


def editable_checkout(dist: metadata.Distribution | None = None) -> Path | None:
    """The checkout rfmseg is installed from in editable mode, or None (a regular install, or not installed)."""
    try:
        dist = dist or metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not (record.get("dir_info") or {}).get("editable"):
        return None
    url = urlsplit(str(record.get("url", "")))
    return Path(url2pathname(unquote(url.path))) if url.scheme == "file" else None


def typed_path(path: Path) -> str:
    """``path`` as short as it can be typed from the working folder: relative below it, else absolute."""
    absolute, here = path.absolute(), Path.cwd()
    if here == Path(here.anchor):  # from the root folder a relative path reads like a typo
        return str(absolute)
    try:
        relative = absolute.relative_to(here)
    except ValueError:
        return str(absolute)
    return str(relative) if relative.parts else "."


def install_command(extra: str | None = None, dist: metadata.Distribution | None = None) -> str:
    """The command that installs rfmseg with ``extra`` (None: rfmseg and its dependencies) here."""
    checkout = editable_checkout(dist)
    if checkout is None:
        return f"pip install 'rfmseg[{extra}]'" if extra else "pip install rfmseg"
    pip = Path(sys.executable).with_name("pip")
    installer = typed_path(pip) if pip.exists() else f"{typed_path(Path(sys.executable))} -m pip"
    target = typed_path(checkout)
    return f"{installer} install -e '{target}[{extra}]'" if extra else f"{installer} install -e '{target}'"
