"""Render the report's results dictionary to one self-contained-folder HTML page."""

from __future__ import annotations

import json

from jinja2 import Environment, PackageLoader, select_autoescape

_ENV = Environment(
    loader=PackageLoader("myopia.report", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_ENV.filters["fmt"] = _fmt
_ENV.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=str)


def render_report(results: dict) -> str:
    return _ENV.get_template("index.html").render(r=results)
