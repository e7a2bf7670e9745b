"""The self-contained HTML page: figures embedded as base64 PNG, no external files.

Every string that reaches the page passes through :func:`esc`
(:func:`html.escape`, quotes included): config values, run names and tags come
from users and must never become markup.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from depthlab.report.figures import Drawn
from depthlab.report.text import Overview

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 0 auto; padding: 1em 1.5em 3em; max-width: 1140px; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.92em; color: #333; max-width: 60em; margin-top: 0.4em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
td { font-variant-numeric: tabular-nums; }
ul.defs { font-size: 0.9em; color: #444; }
li.finding { max-width: 60em; margin-bottom: 0.3em; }
.table-wrap { overflow-x: auto; }
details summary { cursor: pointer; margin: 0.6em 0; }
"""


def esc(text: object) -> str:
    """``str(text)`` escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


@dataclass
class Page:
    """Everything the page shows, as plain text and tables."""

    title: str
    meta: Sequence[str]
    overview: Overview
    figures: Sequence[Drawn]
    findings: Sequence[str]
    config_findings: Sequence[str]
    definitions: Sequence[str]
    config_table: pd.DataFrame
    runs_table: pd.DataFrame
    training_table: pd.DataFrame | None = None
    """Training sweeps: the best depth of every config (may be None)."""


def table(frame: pd.DataFrame) -> str:
    """An HTML table (:meth:`pandas.DataFrame.to_html`, every cell escaped)."""
    body = frame.to_html(
        index=False, escape=True, border=0, na_rep="-", float_format="{:.4g}".format
    )
    return f'<div class="table-wrap">{body}</div>'


def figure(drawn: Drawn) -> str:
    """An embedded figure with its heading and caption."""
    assert drawn.png is not None
    data = base64.b64encode(drawn.png).decode("ascii")
    return (
        f'<section id="{esc(drawn.name)}"><h2>{esc(drawn.title)}</h2><figure>'
        f'<img src="data:image/png;base64,{data}" alt="{esc(drawn.title)}">'
        f"<figcaption>{esc(drawn.caption)}</figcaption></figure></section>"
    )


def render(page: Page) -> str:
    """The whole page as one HTML string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(page.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(page.title)}</h1>",
        "".join(f'<div class="meta">{esc(m)}</div>' for m in page.meta),
        "<h2>The sweep</h2><ul>",
        "".join(f"<li>{esc(line)}</li>" for line in page.overview.lines),
        "</ul>",
    ]
    if len(page.overview.failed):
        parts += [
            "<p>Runs that did not finish (not plotted):</p>",
            table(page.overview.failed.rename(columns={"run_name": "run"})),
        ]
    if page.findings:
        parts += [
            '<section id="findings"><h2>Findings</h2><ul>',
            "".join(f'<li class="finding">{esc(p)}</li>' for p in page.findings),
            "</ul></section>",
        ]
    drawn = [f for f in page.figures if f.png is not None]
    left_out = [f for f in page.figures if f.png is None]
    if drawn:
        parts.append(
            "<p>Figures: "
            + ", ".join(f'<a href="#{esc(f.name)}">{esc(f.title)}</a>' for f in drawn)
            + ".</p>"
        )
    if left_out:
        parts.append('<section id="left-out"><h2>Figures left out</h2><ul>')
        parts += [f"<li><b>{esc(f.title)}</b>: {esc(f.reason)}</li>" for f in left_out]
        parts.append("</ul></section>")
    parts += [figure(f) for f in drawn]
    if len(page.config_table):
        parts += [
            '<section id="configs"><h2>Per-config summary: measurement and theory</h2>',
            table(page.config_table),
            '<ul class="defs">',
            "".join(f"<li>{esc(d)}</li>" for d in page.definitions),
            "</ul><ul>",
            "".join(f'<li class="finding">{esc(p)}</li>' for p in page.config_findings),
            "</ul></section>",
        ]
    if page.training_table is not None and len(page.training_table):
        parts += [
            '<section id="optimal-depth"><h2>Optimal depth</h2>',
            "<p>Best depth of every config (mean over seeds) and the depths "
            "indistinguishable from it (Welch's t-test at 5%).</p>",
            table(page.training_table),
            "</section>",
        ]
    if len(page.runs_table):
        parts += [
            '<section id="runs"><h2>Runs</h2><details>',
            f"<summary>All {len(page.runs_table)} child runs</summary>",
            table(page.runs_table),
            "</details></section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
