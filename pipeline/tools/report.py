"""A self-contained HTML report of a dataset, or of two side by side with the Jensen-Shannon divergences.

    microturn report demo-out/dataset --out report.html
    microturn report demo-out/dataset --compare other/dataset --out compare.html

The page has no network resources and no script: tables and inline SVG bar charts only. It shows hours,
conversations, samples, perspectives, shards, languages, sources and licences (from the index), inputs rejected
by stage and kind, with an example reason each (rejected.parquet), interaction label counts, proactive targets
per category (the index's target_counts), and the turn-taking
statistics of manifest.json: floor-transfer offsets, gaps and overlap durations on 200 ms bins (bin b covers
[0.2 b, 0.2 (b+1)) s), and event rates (backchannels, interruptions, overlaps, yields per minute of conversation).

With --compare, each distribution is normalised to shares and both datasets are drawn on the same axes, with the
Jensen-Shannon divergence (base 2, so 0 = same distribution, 1 = disjoint support) of each. Figures are also
written as `data-*` attributes (e.g. `data-metric="hours"`, `data-jsd="gap_bins"`) so tests and scripts can read
them back.
"""

from __future__ import annotations

import html
import json
import math
import posixpath
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.shard import require_format
from schemas.tables import read_index_rows, read_manifest, read_rejected

BIN_S = 0.2
DISTRIBUTIONS = {
    "floor_transfer_offset_bins": "Floor-transfer offsets (s; negative = overlap)",
    "gap_bins": "Gaps at floor transfers (s)",
    "overlap_bins": "Overlap durations (s)",
}
"""Binned distributions of manifest["turn_taking"]: name -> title. Values are seconds on 200 ms bins."""
EVENT_DISTRIBUTION = "event_counts"
COLOURS = ("#3467a8", "#d1812b")


# ---------------------------------------------------------------------------------------------------- reading


def summarise(dataset: str) -> dict[str, Any]:
    """Every figure of the report for one dataset (plain JSON-able data)."""
    manifest = read_manifest(dataset)
    require_format(manifest, dataset)
    rows = read_index_rows(dataset, missing_ok=True)
    rejected = read_rejected(dataset, missing_ok=True).to_pylist()
    counts = manifest["counts"]
    # conversation hours per source/licence/language: each conversation once (its first perspective's windows)
    first_persp: dict[str, str] = {}
    for r in rows:
        first_persp[r["conversation_id"]] = min(
            first_persp.get(r["conversation_id"], r["perspective"]), r["perspective"]
        )
    groups: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"conversations": set(), "samples": 0, "hours": 0.0}
    )
    for r in rows:
        g = groups[(r["source"], r["licence"], r["language"])]
        g["conversations"].add(r["conversation_id"])
        g["samples"] += 1
        if r["perspective"] == first_persp[r["conversation_id"]]:
            g["hours"] += r["duration_s"] / 3600.0
    sources = [
        {
            "source": s,
            "licence": lic,
            "language": lang,
            "conversations": len(g["conversations"]),
            "samples": g["samples"],
            "hours": g["hours"],
        }
        for (s, lic, lang), g in sorted(groups.items())
    ]
    by_kind = Counter((r["stage"], r.get("kind") or "unknown") for r in rejected)  # no kind: written before kinds
    example = {}
    for r in sorted(rejected, key=lambda r: r["input"]):
        example.setdefault((r["stage"], r.get("kind") or "unknown"), r["reason"])
    tt = manifest.get("turn_taking", {})
    return {
        "dataset": dataset,
        "hours": float(manifest["hours"]),
        "sample_hours": float(manifest.get("sample_hours", 0.0)),
        "inputs": counts["inputs"],
        "conversations": counts["conversations_written"],
        "samples": counts["samples"],
        "perspectives": counts.get("perspectives", len({(r["conversation_id"], r["perspective"]) for r in rows})),
        "shards": counts["shards"],
        "rejected": counts["rejected"],
        "sources": sources,
        "rejected_by_kind": [
            {"stage": st, "kind": kind, "count": n, "example": example[(st, kind)]}
            for (st, kind), n in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "label_counts": dict(manifest.get("label_counts", {})),
        "targets": _target_summary(rows),
        "distributions": {name: {int(b): int(n) for b, n in tt.get(name, {}).items()} for name in DISTRIBUTIONS},
        "event_counts": {k: int(v) for k, v in tt.get("event_counts", {}).items()},
        "events_per_minute": {k: float(v) for k, v in tt.get("events_per_minute", {}).items()},
        "label_config": manifest.get("config", {}).get("labels", {}),
        "code_version": manifest.get("code_version", ""),
        "config_hash": manifest.get("config_hash", ""),
    }


def _target_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Proactive targets per category: samples and conversations whose windows hold one, and targets over samples
    (from the index's target_counts; a target crossing windows counts in each)."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"samples": 0, "conversations": set(), "targets": 0})
    for r in rows:
        for c, n in dict(r.get("target_counts") or {}).items():
            out[c]["samples"] += 1
            out[c]["conversations"].add(r["conversation_id"])
            out[c]["targets"] += n
    return {c: {**v, "conversations": len(v["conversations"])} for c, v in sorted(out.items())}


# ---------------------------------------------------------------------------------------------------- maths


def jensen_shannon(p: Mapping[Any, float], q: Mapping[Any, float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms given as {bin: count}; they are normalised
    here. NaN when either is empty."""
    sp, sq = sum(p.values()), sum(q.values())
    if sp <= 0 or sq <= 0:
        return math.nan
    out = 0.0
    for k in set(p) | set(q):
        a, b = p.get(k, 0) / sp, q.get(k, 0) / sq
        m = (a + b) / 2
        if a > 0:
            out += 0.5 * a * math.log2(a / m)
        if b > 0:
            out += 0.5 * b * math.log2(b / m)
    return max(0.0, min(1.0, out))


def divergences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, float]:
    """JSD of each binned distribution and of the event-type distribution between two summaries."""
    out = {name: jensen_shannon(a["distributions"][name], b["distributions"][name]) for name in DISTRIBUTIONS}
    out[EVENT_DISTRIBUTION] = jensen_shannon(a["event_counts"], b["event_counts"])
    return out


# ---------------------------------------------------------------------------------------------------- rendering


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def format_value(x: float, digits: int = 4) -> str:
    """`x` with `digits` decimals; NaN as n/a."""
    return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:.{digits}f}"


def svg_bars(
    series: Sequence[tuple[str, Mapping[Any, float]]],
    categories: Sequence[Any],
    labels: Sequence[str],
    *,
    title: str,
    y_label: str,
    name: str,
    width: int = 560,
    height: int = 240,
) -> str:
    """A grouped bar chart as inline SVG: one group per category, one bar per series.

    Args:
        series: (legend, {category: value}) per dataset.
        categories: the x categories in order; labels: their tick labels.
        name: the distribution's id, written to data-dist on the <svg> and data-bin/data-value on each bar.
    """
    left, right, top, bottom = 48, 10, 28, 44
    pw, ph = width - left - right, height - top - bottom
    vmax = max([v for _, s in series for v in s.values()] + [0]) or 1.0
    n, k = max(len(categories), 1), max(len(series), 1)
    slot = pw / n
    bar = max(1.0, slot * 0.8 / k)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" data-dist="{_e(name)}">',
        f"<title>{_e(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{_e(title)}</text>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#444"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + ph * (1 - frac)
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_e(_tick(vmax * frac))}</text>'
        )
    parts.append(
        f'<text x="12" y="{top + ph / 2:.1f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2:.1f})">{_e(y_label)}</text>'
    )
    step = max(1, math.ceil(n / 16))
    for i, (cat, lab) in enumerate(zip(categories, labels, strict=True)):
        x0 = left + i * slot + slot * 0.1
        for j, (legend, s) in enumerate(series):
            v = float(s.get(cat, 0))
            h = ph * v / vmax
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + ph - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[j % len(COLOURS)]}" data-series="{j}" data-bin="{_e(cat)}" '
                f'data-value="{v:.6g}"><title>{_e(legend)}: {_e(lab)}: {v:.6g}</title></rect>'
            )
        if i % step == 0:
            parts.append(
                f'<text x="{left + (i + 0.5) * slot:.1f}" y="{top + ph + 14}" font-size="10" '
                f'text-anchor="middle">{_e(lab)}</text>'
            )
    if len(series) > 1:
        for j, (legend, _) in enumerate(series):
            x = left + pw - 180 * (len(series) - j)
            parts.append(
                f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{COLOURS[j % 2]}"/>'
                f'<text x="{x + 14}" y="{height - 5}" font-size="10">{_e(legend[:28])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _tick(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.2f}"


def _bins(dists: Sequence[Mapping[int, int]]) -> list[int]:
    keys = [b for d in dists for b in d]
    return list(range(min(keys), max(keys) + 1)) if keys else []


def _bin_label(b: int) -> str:
    return f"{b * BIN_S:.1f}"


def _shares(d: Mapping[Any, float]) -> dict[Any, float]:
    total = sum(d.values())
    return {k: v / total for k, v in d.items()} if total else {}


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _metric(name: str, value: Any, shown: str, side: int) -> str:
    return f'<td data-metric="{_e(name)}" data-side="{side}" data-value="{_e(value)}">{_e(shown)}</td>'


def _overview(summaries: Sequence[Mapping[str, Any]]) -> str:
    fields = [
        ("hours", "conversation hours", format_value),
        ("sample_hours", "sample hours (all perspectives)", format_value),
        ("inputs", "inputs", str),
        ("conversations", "conversations written", str),
        ("rejected", "inputs rejected", str),
        ("samples", "samples", str),
        ("perspectives", "perspectives", str),
        ("shards", "shards", str),
    ]
    rows = []
    for key, label, fmt in fields:
        rows.append([label] + [_metric(key, s[key], fmt(s[key]), i) for i, s in enumerate(summaries)])
    return _table(["", *[f"dataset {i + 1}" for i in range(len(summaries))]], rows, "overview")


def _section_tables(s: Mapping[str, Any], side: int) -> str:
    src_rows = [
        [
            r["source"],
            r["licence"],
            r["language"],
            _metric("source_conversations", r["conversations"], str(r["conversations"]), side),
            str(r["samples"]),
            format_value(r["hours"]),
        ]
        for r in s["sources"]
    ]
    parts = [
        "<h3>Sources and licences</h3>",
        _table(["source", "licence", "language", "conversations", "samples", "hours"], src_rows),
    ]
    parts.append("<h3>Rejected inputs by stage and kind</h3>")
    if s["rejected_by_kind"]:
        parts.append(
            _table(
                ["stage", "kind", "inputs", "example reason"],
                [
                    [
                        r["stage"],
                        r["kind"],
                        _metric(f"rejected:{r['stage']}:{r['kind']}", r["count"], str(r["count"]), side),
                        r["example"],
                    ]
                    for r in s["rejected_by_kind"]
                ],
            )
        )
    else:
        parts.append(f'<p data-metric="rejected_none" data-side="{side}">none: every input was written</p>')
    parts.append("<h3>Interaction labels (micro-turns)</h3>")
    parts.append(
        _table(
            ["label", "micro-turns"],
            [[k, _metric(f"label:{k}", v, str(v), side)] for k, v in sorted(s["label_counts"].items())],
        )
    )
    if s.get("targets"):
        parts.append("<h3>Proactive targets by category</h3>")
        parts.append(
            _table(
                ["category", "conversations", "samples", "targets (over samples)"],
                [
                    [
                        c,
                        str(v["conversations"]),
                        str(v["samples"]),
                        _metric(f"targets:{c}", v["targets"], str(v["targets"]), side),
                    ]
                    for c, v in s["targets"].items()
                ],
            )
        )
    parts.append("<h3>Turn-taking events</h3>")
    events = sorted(set(s["event_counts"]) | set(s["events_per_minute"]))
    parts.append(
        _table(
            ["event", "count", "per minute"],
            [
                [
                    e,
                    _metric(f"events:{e}", s["event_counts"].get(e, 0), str(s["event_counts"].get(e, 0)), side),
                    _metric(
                        f"rate:{e}",
                        s["events_per_minute"].get(e, 0.0),
                        format_value(s["events_per_minute"].get(e, 0.0)),
                        side,
                    ),
                ]
                for e in events
            ],
        )
    )
    return "".join(parts)


def _charts(summaries: Sequence[Mapping[str, Any]], jsd: Mapping[str, float] | None) -> str:
    compare = len(summaries) > 1
    legends = [
        f"{i + 1}: {posixpath.basename(s['dataset'].rstrip('/')) or s['dataset']}" for i, s in enumerate(summaries)
    ]
    parts = []
    for name, title in DISTRIBUTIONS.items():
        dists = [s["distributions"][name] for s in summaries]
        cats = _bins(dists)
        series = [(lg, _shares(d) if compare else d) for lg, d in zip(legends, dists, strict=True)]
        parts.append('<div class="chart">')
        if compare and jsd is not None:
            parts.append(
                f'<p class="jsd">Jensen-Shannon divergence: <b data-jsd="{name}" '
                f'data-value="{jsd[name]:.6f}">{format_value(jsd[name])}</b></p>'
            )
        if cats:
            parts.append(
                svg_bars(
                    series,
                    cats,
                    [_bin_label(b) for b in cats],
                    title=title,
                    name=name,
                    y_label="share" if compare else "count",
                )
            )
            parts.append('<p class="axis">x: bin start in seconds (200 ms bins)</p>')
        else:
            parts.append(f"<p>{_e(title)}: no values</p>")
        parts.append("</div>")
    events = sorted({e for s in summaries for e in s["event_counts"]})
    parts.append('<div class="chart">')
    if compare and jsd is not None:
        parts.append(
            f'<p class="jsd">Jensen-Shannon divergence of event types: <b data-jsd="{EVENT_DISTRIBUTION}" '
            f'data-value="{jsd[EVENT_DISTRIBUTION]:.6f}">{format_value(jsd[EVENT_DISTRIBUTION])}</b></p>'
        )
    if events:
        parts.append(
            svg_bars(
                [(lg, s["events_per_minute"]) for lg, s in zip(legends, summaries, strict=True)],
                events,
                events,
                title="Turn-taking events per minute of conversation",
                name="events_per_minute",
                y_label="per minute",
            )
        )
    else:
        parts.append("<p>no turn-taking events</p>")
    parts.append("</div>")
    return "".join(parts)


CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1240px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f0f0f0; }
.cols { display: flex; gap: 24px; align-items: flex-start; }
.cols > div { flex: 1; min-width: 0; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { border: 1px solid #e0e0e0; padding: 6px; }
.jsd { margin: 2px 0; font-size: 13px; }
.axis { margin: 0; font-size: 11px; color: #666; }
code { font-size: 12px; }
"""


def render(summaries: Sequence[Mapping[str, Any]]) -> str:
    """The report page for one summary, or two compared."""
    if not 1 <= len(summaries) <= 2:
        raise ValueError(f"render takes one or two dataset summaries, got {len(summaries)}")
    jsd = divergences(summaries[0], summaries[1]) if len(summaries) == 2 else None
    title = "microturn dataset report" + (" (comparison)" if jsd else "")
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
    ]
    for i, s in enumerate(summaries):
        parts.append(
            f"<p>dataset {i + 1}: <code>{_e(s['dataset'])}</code> (code {_e(s['code_version'])}, "
            f"config {_e(s['config_hash'][:12])}, label thresholds "
            f"<code>{_e(json.dumps(s['label_config'], sort_keys=True))}</code>)</p>"
        )
    parts.append("<h2>Overview</h2>" + _overview(summaries))
    if jsd:
        parts.append(
            "<h2>Divergences</h2>"
            + _table(
                ["distribution", "Jensen-Shannon divergence (base 2)"],
                [[name, f'<td data-jsd-table="{_e(name)}">{_e(format_value(v))}</td>'] for name, v in jsd.items()],
            )
        )
    parts.append("<h2>Turn-taking distributions</h2>")
    parts.append(f'<div class="charts">{_charts(summaries, jsd)}</div>')
    parts.append('<h2>Contents</h2><div class="cols">')
    for i, s in enumerate(summaries):
        parts.append(f"<div><h3>dataset {i + 1}</h3>{_section_tables(s, i)}</div>")
    parts.append("</div></body></html>\n")
    return "".join(parts)


def write_report(dataset: str, out: str, *, compare: str | None = None) -> dict[str, Any]:
    """Write the report of `dataset` (and `compare`) to `out`; return the summaries and divergences."""
    summaries = [summarise(dataset)] + ([summarise(compare)] if compare else [])
    with open(out, "w", encoding="utf-8") as f:
        f.write(render(summaries))
    return {"summaries": summaries, "jsd": divergences(*summaries) if compare else None}
