"""Pictures of uqf outputs: ``--plot`` (PNG, SVG or PDF) and ``--html`` reports.

Plotting is the optional ``plot`` extra (matplotlib). It is imported only when a picture is asked
for, and drawn off-screen with the Agg canvas through matplotlib's object API (no pyplot, no global
state, no display). Commands call :func:`check_plot_output` before any heavy work, so a missing
extra or an existing file is reported before a long run, not after it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from uqf_cli.core.errors import OptionError
from uqf_cli.files import atomic_path, check_output, to_json

EXTRA_HINT = "pip install 'uqf-cli[plot]'"
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
# Keys each format accepts for embedded text; dates are dropped so that reruns give identical files.
_METADATA = {"png": ("Description", {}), "svg": ("Description", {"Date": None}),
             "pdf": ("Subject", {"CreationDate": None})}


def require_matplotlib(option: str = "--plot") -> None:
    """Fail with one line naming the extra to install when matplotlib is missing."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise OptionError(option, f"needs matplotlib, the optional 'plot' extra: {EXTRA_HINT}") from None


def check_plot_output(path: str | Path, force: bool, option: str = "--plot") -> Path:
    """Check early that a picture can be drawn and written at ``path`` (format from its suffix)."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise OptionError(option, f"{p}: use a .png, .svg or .pdf file name")
    require_matplotlib(option)
    return check_output(p, force)


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas, laid out automatically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path, provenance: dict[str, Any], force: bool = False) -> Path:
    """Write ``fig`` atomically; the provenance record goes into the file's metadata."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower(), "png")
    key, fixed = _METADATA[fmt]
    with atomic_path(p, force) as tmp:
        fig.savefig(tmp, format=fmt, metadata={key: to_json(provenance), **fixed})
    return p


def figure_bytes(fig: Any, fmt: str = "png", dpi: float | None = None) -> bytes:
    """The figure encoded in memory (for inlining into an HTML report); ``dpi`` overrides the figure's."""
    import io as _io

    buf = _io.BytesIO()
    fig.savefig(buf, format=fmt, metadata=_METADATA[fmt][1] or None, dpi=dpi or "figure")
    return buf.getvalue()
