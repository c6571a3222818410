"""A picture of a sample being denoised: MASK positions turning into text, step by step."""

from __future__ import annotations

import html
from pathlib import Path

from . import UsageError, atomic_write

MASK_GLYPH = "\u2591"


def _rows(trajectory, tokenizer, mask_id, limit: int = 40):
    """(time, list of (text, state)) for the first sample, thinned to about ``limit`` rows."""
    count = len(trajectory.states)
    keep = range(count) if count <= limit else sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})
    rows = []
    for index in keep:
        tokens = trajectory.states[index][0].tolist()
        previous = trajectory.states[index - 1][0].tolist() if index else tokens
        cells = []
        for token, before in zip(tokens, previous, strict=True):
            if mask_id is not None and token == mask_id:
                cells.append((MASK_GLYPH, "mask"))
            else:
                cells.append((tokenizer.decode([token]), "new" if token != before else "kept"))
        rows.append((trajectory.times[index], cells))
    return rows


def write_trajectory(path: str | Path, trajectory, tokenizer, mask_id, given=None) -> Path:
    path = Path(path)
    rows = _rows(trajectory, tokenizer, mask_id)
    if path.suffix == ".html":
        atomic_write(path, _html(rows, given))
    elif path.suffix == ".png":
        _png(path, rows)
    else:
        raise UsageError(f"--trajectory must name a .html or .png file; got {str(path)!r}")
    return path


def _html(rows, given) -> str:
    lines = []
    for time, cells in rows:
        spans = []
        for position, (text, state) in enumerate(cells):
            kind = "given" if given is not None and bool(given[position]) else state
            shown = html.escape(text).replace("\n", "\u21b5") or "&nbsp;"
            spans.append(f'<span class="{kind}">{shown}</span>')
        lines.append(f'<div class="row"><span class="t">t={time:.3g}</span>{"".join(spans)}</div>')
    style = (
        "body{font-family:monospace;background:#fafafa} .row{white-space:pre;margin:2px 0}"
        " .t{color:#888;display:inline-block;width:7em} .mask{color:#bbb} .new{background:#ffe08a}"
        " .given{color:#1f5fbf;font-weight:bold}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>scorediff denoising trajectory</title>"
        f"<style>{style}</style></head><body><h3>Denoising, from t = 1 (all noise) to t = 0</h3>"
        f"<p>grey: still masked; yellow: changed at this step; blue: given</p>{''.join(lines)}</body></html>\n"
    )


def _png(path: Path, rows) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("a .png trajectory needs matplotlib: pip install 'scorediff[plot]' (or use .html)") from None
    width = max(len(cells) for _, cells in rows)
    figure = plt.figure(figsize=(min(0.13 * width + 1.2, 40), 0.22 * len(rows) + 0.8))
    axes = figure.add_axes([0, 0, 1, 1])
    axes.set_xlim(-8, width)
    axes.set_ylim(len(rows), -1)
    axes.axis("off")
    colours = {"mask": "#bbbbbb", "new": "#c0392b", "kept": "#222222"}
    for row, (time, cells) in enumerate(rows):
        axes.text(-7.5, row, f"t={time:.3g}", fontsize=7, family="monospace", color="#888888", va="center")
        for column, (text, state) in enumerate(cells):
            shown = text.replace("\n", "\u21b5")
            axes.text(column, row, shown, fontsize=7, family="monospace", color=colours[state], va="center")
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
