"""The doctor's report folder: ``report.html`` (one self-contained page) and ``findings.json``.

The page needs nothing but the folder: CSS is inline, there is no script and no external
resource, and figures are the PNGs already in the folder, referenced by relative path (so the
folder can be moved or zipped). Top to bottom: the overall verdict, a table of every finding
(status badge, check, summary, advice; each row links to its section), one section per finding
with its measured values and figures, and the resolved recipe. All text is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from trainlab.diagnosis.findings import Finding, worst

__all__ = ["write_report", "render_html", "html_page", "PAGE_CSS"]

PAGE_CSS = """
:root { --ok: #1a7f37; --warn: #9a6700; --fail: #cf222e; --line: #d0d7de; --muted: #57606a; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1f2328; background: #f6f8fa; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff;
       min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 17px; margin: 0 0 6px; display: flex; gap: 10px; align-items: center; }
.verdict { font-size: 16px; color: var(--muted); margin: 0 0 20px; }
.badge { display: inline-block; min-width: 48px; padding: 2px 8px; border-radius: 12px;
         font-weight: 700; font-size: 12px; text-transform: uppercase; text-align: center;
         color: #fff; letter-spacing: .03em; }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); }
.badge.fail { background: var(--fail); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 8px 10px;
         border-bottom: 1px solid var(--line); }
th { background: #f6f8fa; font-size: 13px; color: var(--muted); text-transform: uppercase; }
tr.warn td:first-child { border-left: 4px solid var(--warn); }
tr.fail td:first-child { border-left: 4px solid var(--fail); }
tr.ok td:first-child { border-left: 4px solid var(--ok); }
td.check { white-space: nowrap; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
           font-size: 13px; }
td.check a { color: inherit; }
td.advice { color: #0b4f9c; min-width: 240px; }
section.finding { margin: 18px 0 26px; padding: 14px 16px; border: 1px solid var(--line);
                  border-radius: 8px; border-left-width: 6px; }
section.finding.ok { border-left-color: var(--ok); }
section.finding.warn { border-left-color: var(--warn); background: #fffdf3; }
section.finding.fail { border-left-color: var(--fail); background: #fff8f7; }
p.cause, p.fix { margin: 4px 0; font-size: 13px; }
p.summary { margin: 4px 0; } p.advice { margin: 4px 0; color: #0b4f9c; font-weight: 600; }
details { margin-top: 6px; color: var(--muted); font-size: 13px; }
details pre { font-size: 12px; }
figure { margin: 12px 0 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
             border-radius: 4px; background: #fff; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 2px; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 12px;
      overflow-x: auto; font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; }
.missing { color: var(--fail); font-style: italic; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(status)}</span>'


def render_html(
    findings: list[Finding], title: str, recipe_yaml: str | None = None, folder: Path | None = None
) -> str:
    """The page as a string. With ``folder``, figures not found in it are named as missing
    instead of shown as broken images."""
    overall = worst(findings)
    counts = Counter(f.status for f in findings)
    tally = ", ".join(f"{counts[s]} {s}" for s in ("fail", "warn", "ok") if counts[s])
    rows, sections = [], []
    for i, f in enumerate(findings, 1):
        anchor = f"finding-{i}"
        rows.append(
            f'<tr class="{_e(f.status)}"><td>{_badge(f.status)}</td>'
            f'<td class="check"><a href="#{anchor}">{_e(f.check)}</a></td>'
            f'<td>{_e(f.summary)}</td><td class="advice">{_e(f.advice)}</td></tr>'
        )
        parts = [
            f'<section class="finding {_e(f.status)}" id="{anchor}">',
            f"<h3>{_badge(f.status)} {_e(f.check)}</h3>",
            f'<p class="summary">{_e(f.summary)}</p>',
        ]
        if f.advice:
            parts.append(f'<p class="advice">What to do: {_e(f.advice)}</p>')
        if f.cause:
            parts.append(f'<p class="cause">Cause: <code>{_e(f.cause)}</code></p>')
        if f.fix:
            fix = " ".join(f.fix)
            parts.append(f'<p class="fix">Fix (recipe overrides): <code>{_e(fix)}</code></p>')
        if f.values:
            values = json.dumps(f.values, indent=2, default=str, allow_nan=True)
            parts.append(
                f"<details><summary>measured values</summary><pre>{_e(values)}</pre></details>"
            )
        for fig in f.figures:
            if folder is not None and not (folder / fig).is_file():
                parts.append(f'<p class="missing">figure {_e(fig)} was not written</p>')
                continue
            parts.append(
                f'<figure><img src="{_e(quote(fig))}" alt="{_e(f.check)}: {_e(fig)}">'
                f"<figcaption>{_e(fig)}</figcaption></figure>"
            )
        parts.append("</section>")
        sections.append("\n".join(parts))
    recipe = f"<h2>Recipe (resolved)</h2>\n<pre>{_e(recipe_yaml)}</pre>" if recipe_yaml else ""
    table = (
        "<table><thead><tr><th>status</th><th>check</th><th>what was measured</th>"
        "<th>what to do</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
        if findings
        else "<p>No checks were run.</p>"
    )
    body = f"""<p class="verdict">Overall: {_badge(overall)} &nbsp;{_e(tally or "no findings")}</p>
<h2>Summary</h2>
{table}
<h2>Findings</h2>
{chr(10).join(sections)}
{recipe}"""
    return html_page(title, body)


def html_page(title: str, body: str, css: str = "", script: str = "") -> str:
    """A whole self-contained page: the shared style (plus ``css``), ``title`` as its heading,
    ``body`` (already escaped HTML), and an inline ``script``: nothing is loaded from outside."""
    js = f"\n<script>{script}</script>" if script else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{PAGE_CSS}{css}</style>
</head>
<body>
<main>
<h1>{_e(title)}</h1>
{body}
</main>{js}
</body>
</html>
"""


def write_report(
    findings: list[Finding], out_dir: str | Path, title: str, recipe_yaml: str | None = None
) -> Path:
    """Write ``report.html`` and ``findings.json`` into ``out_dir``; returns the page's path.

    Figures named by the findings must already be PNGs in ``out_dir`` (relative paths).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "report.html"
    page.write_text(render_html(findings, title, recipe_yaml, out), encoding="utf-8")
    data = {
        "title": title,
        "status": worst(findings),
        "findings": [f.to_json() for f in findings],
    }
    (out / "findings.json").write_text(
        json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8"
    )
    return page
