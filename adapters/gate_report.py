"""Gate bundle reports: JSON for machines, Markdown and a self-contained HTML page for people.

The HTML page embeds its plot (per-call score deltas against human QA, matplotlib, PNG as a
data URI) and its styles, so it can be attached to a ticket or mailed as one file. Reports are
written under ``<data_dir>/gates/bundles/<bundle_id>/``; the JSON's hash goes into the
``GateEvaluated`` event.
"""

import base64
import hashlib
import html
import io
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
from relctl.domain.gates import GateBundle, GateMetric, Measure


def _fmt(value: float | None, metric: GateMetric | None = None) -> str:
    if value is None:
        return "n/a"
    if metric is not None and metric.is_rate:
        return f"{value * 100:.2f} %"
    if metric is GateMetric.COST_PER_EVAL:
        return f"${value:.5f}"
    return f"{value:.4g}"


def _measure(measure: Measure, metric: GateMetric) -> str:
    text = f"{_fmt(measure.value, metric)} (n={measure.samples}"
    if measure.ci_low is not None and measure.ci_high is not None:
        text += f", 95 % CI {_fmt(measure.ci_low, metric)} to {_fmt(measure.ci_high, metric)}"
    return text + ")"


def _rows(bundle: GateBundle) -> dict[str, list[list[str]]]:
    gates = [[r.gate.name, str(r.gate.gate_class), f"{r.gate.metric} {r.gate.comparator} "
              f"{r.gate.threshold:g}", _measure(r.measure, r.gate.metric), str(r.outcome)]
             for r in bundle.results]
    compare = [[str(m), _fmt(bundle.baseline[m].value, m), _fmt(bundle.candidate[m].value, m),
                _fmt(bundle.deltas[m], m)] for m in GateMetric]
    segments = [[f"{s.kind}={s.segment}", str(s.calls),
                 _fmt(s.candidate[GateMetric.ABS_SCORE_DELTA_HUMAN].value),
                 _fmt(s.candidate[GateMetric.CATEGORY_AGREEMENT].value,
                      GateMetric.CATEGORY_AGREEMENT),
                 _fmt(s.candidate[GateMetric.CRITICAL_FALSE_NEGATIVE_RATE].value,
                      GateMetric.CRITICAL_FALSE_NEGATIVE_RATE),
                 _fmt(s.candidate[GateMetric.SCHEMA_INVALID_RATE].value,
                      GateMetric.SCHEMA_INVALID_RATE)]
                for s in bundle.segments]
    regressions = [[r.call_id, "; ".join(r.reasons),
                    (r.baseline.raw_output or r.baseline.error or "")[:400],
                    (r.candidate.raw_output or r.candidate.error or "")[:400]]
                   for r in bundle.regressions]
    return {"gates": gates, "compare": compare, "segments": segments, "regressions": regressions}


HEADERS = {
    "gates": ["gate", "class", "passes if", "candidate", "outcome"],
    "compare": ["metric", "baseline", "candidate", "delta"],
    "segments": ["segment", "calls", "abs score delta", "category agreement",
                 "critical FN rate", "schema invalid"],
    "regressions": ["call", "why", "baseline output", "candidate output"],
}
TITLES = {"gates": "Gates", "compare": "Candidate against baseline",
          "segments": "By segment (candidate)", "regressions": "Top regressions"}


def _summary(bundle: GateBundle) -> list[str]:
    g = bundle.golden_set
    return [
        f"Release `{bundle.release_id}` against baseline `{bundle.baseline_release_id}` "
        f"(task `{bundle.task_id}`), golden set `{g.name}` v{g.version} `{g.content_hash}`, "
        f"evaluated {bundle.evaluated_at.isoformat()}, bundle `{bundle.bundle_id}`.",
        f"Repairs: {bundle.repairs or 'none'}. Injection phrasings flagged in "
        f"{len(bundle.injection_flagged_calls)} call(s). Model identity mismatches: "
        f"{bundle.model_mismatches or 'none'}.",
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(bundle: GateBundle) -> str:
    out = [f"# Gate report: {bundle.release_id}", "", *_summary(bundle), ""]
    for key, rows in _rows(bundle).items():
        out += [f"## {TITLES[key]}", "", "| " + " | ".join(HEADERS[key]) + " |",
                "|" + "---|" * len(HEADERS[key])]
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def score_delta_plot(bundle: GateBundle) -> bytes:
    ids = list(bundle.score_deltas)
    values = [bundle.score_deltas[i] for i in ids]
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    ax.bar(range(len(values)), values, width=1.0,
           color=["#c0392b" if abs(v) > 5 else "#2e86c1" for v in values])
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("golden-set call")
    ax.set_ylabel("model - human total score")
    ax.set_title("Per-call score delta against human QA (candidate)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def to_html(bundle: GateBundle) -> str:
    png = base64.b64encode(score_delta_plot(bundle)).decode("ascii")
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>Gate report {html.escape(bundle.release_id)}</title><style>",
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}",
             "table{border-collapse:collapse;margin-bottom:1.5em}",
             "td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;font-size:.9em}",
             "td.Failed{background:#f5b7b1}td.Passed{background:#d5f5e3}",
             "td.Inconclusive{background:#fcf3cf}pre{white-space:pre-wrap;margin:0}",
             "</style></head><body>",
             f"<h1>Gate report: {html.escape(bundle.release_id)}</h1>"]
    parts += [f"<p>{html.escape(line.replace('`', ''))}</p>" for line in _summary(bundle)]
    parts.append(f"<img alt='per-call score deltas' src='data:image/png;base64,{png}'>")
    for key, rows in _rows(bundle).items():
        parts.append(f"<h2>{TITLES[key]}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS[key]) + "</tr>")
        for row in rows:
            cells = []
            for index, cell in enumerate(row):
                css = f" class='{cell}'" if key == "gates" and index == 4 else ""
                body = (f"<pre>{html.escape(cell)}</pre>" if key == "regressions" and index >= 2
                        else html.escape(cell))
                cells.append(f"<td{css}>{body}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(bundle: GateBundle, data_dir: Path) -> tuple[Path, str]:
    """Write bundle.json, report.md and report.html; return (JSON path, its sha256)."""
    folder = Path(data_dir) / "gates" / "bundles" / bundle.bundle_id
    folder.mkdir(parents=True, exist_ok=True)
    payload = bundle.model_dump_json(indent=2)
    (folder / "bundle.json").write_text(payload, "utf-8")
    (folder / "report.md").write_text(to_markdown(bundle), "utf-8")
    (folder / "report.html").write_text(to_html(bundle), "utf-8")
    digest = "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()
    return folder / "bundle.json", digest
