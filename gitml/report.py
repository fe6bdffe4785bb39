"""Comparison reports: runs side by side, for people and for pull requests.

``gitml compare`` and the CI templates use it; so does ``gitml registry check`` for its
current-versus-candidate tables (one table builder, :func:`markdown_table`).

>>> with Operations(".") as client:
...     report = compare_runs(client, ["lr-0.05", "lr-1.0"])
...     text = to_markdown(report)

A report holds the selected runs (the first is the baseline unless another is named),
their params (a changed value is marked) and metrics (each value with its delta to the
baseline, the best value of each metric marked: the lowest for names that say loss,
error and the like, the highest otherwise). Charts of the metric histories are PNG
files drawn with matplotlib when it is installed (:func:`write_charts`).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gitml.errors import InvalidInputError

if TYPE_CHECKING:
    from gitml.ops import Operations

MAX_RUNS = 50  # columns a report can show and a reader can follow
CELL_MAX = 80
MAX_CHARTS = 12
_LOWER_IS_BETTER = re.compile(r"loss|err|rmse|mse|mae|mape|perplexity|latency|time|duration|cost|regret", re.I)
_PLAIN = re.compile(r"(?:[A-Za-z0-9 /…-]|(?<=[0-9])\.(?=[0-9]))+")  # inert as Markdown text, on GitHub and GitLab
_ISSUE_REF = re.compile(r"\bgh-[0-9]", re.I)  # GitHub links GH-123 to an issue
# control characters and the bidirectional overrides that make text read other than it is
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass
class RunColumn:
    run_id: str
    run_name: str
    status: str
    commit: str  # the source commit ("" when none)
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass
class MetricRow:
    key: str
    values: list[float | None]
    deltas: list[float | None]  # to the baseline's value
    best: int | None  # index of the best run
    lower_is_better: bool


@dataclass
class ParamRow:
    key: str
    values: list[str | None]
    changed: list[bool]  # differs from the baseline's value


@dataclass
class Comparison:
    runs: list[RunColumn]
    baseline: int
    params: list[ParamRow] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)


def lower_is_better(key: str) -> bool:
    """Whether a smaller ``key`` is better, from its name (loss, error, rmse, time...)."""
    return bool(_LOWER_IS_BETTER.search(key))


def latest_runs_of(client: Operations, rev: str, *, experiment_ids: list[str] | None = None) -> list[dict]:
    """Search rows of the runs made from the newest commit of ``rev``'s history that has
    runs ([] when none has). Raises NotFoundError when ``rev`` names nothing."""
    rows = client.search_rows(experiment_ids)
    by_commit: dict[str, list[dict]] = {}
    for row in rows:
        by_commit.setdefault(row["tags"].get("mlflow.source.git.commit", ""), []).append(row)
    for commit in client.branch_commits(rev):
        if commit in by_commit:
            return sorted(by_commit[commit], key=lambda r: r["start_time"] or 0)
    return []


def compare_runs(
    client: Operations,
    runs: list[str] | tuple[str, ...] = (),
    *,
    baseline: str | None = None,
    filter_string: str = "",
    branches: list[str] | tuple[str, ...] = (),
    experiment_ids: list[str] | None = None,
    max_results: int = 20,
) -> Comparison:
    """Compare runs: ``runs`` named as ``gitml show`` takes them (id, prefix, name), then
    the latest runs of each of ``branches``, or (with neither) the ``max_results`` newest
    runs matching ``filter_string``, which also narrows the branches' runs. The baseline is
    ``baseline`` (added first when not selected) or the first run.
    Raises RunNotFoundError, NotFoundError (a branch), FilterSyntaxError, InvalidInputError
    (nothing to compare, or over ``MAX_RUNS`` runs)."""
    rows: list[dict] = []
    wanted = [client.resolve_run(spec) for spec in runs]
    if wanted:
        found = {r["run_id"]: r for r in client.search_rows(experiment_ids, filter_string)} if filter_string else None
        for run_id in wanted:
            if found is None or run_id in found:
                rows.append(_row(client, run_id) if found is None else found[run_id])
    for rev in branches:
        selected = latest_runs_of(client, rev, experiment_ids=experiment_ids)
        if filter_string:
            keep = {r["run_id"] for r in client.search_rows(experiment_ids, filter_string)}
            selected = [r for r in selected if r["run_id"] in keep]
        rows.extend(selected)
    if not runs and not branches:
        rows = list(reversed(client.search_rows(experiment_ids, filter_string, max_results=max_results)))
    if baseline is not None:
        base_id = client.resolve_run(baseline)
        rows = [_row(client, base_id)] + rows
    unique: dict[str, dict] = {}
    for row in rows:
        unique.setdefault(row["run_id"], row)
    if not unique:
        raise InvalidInputError("no runs to compare: name runs, or check --filter and --branch")
    if len(unique) > MAX_RUNS:
        raise InvalidInputError(f"{len(unique)} runs selected; a report compares at most {MAX_RUNS} (narrow --filter)")
    return build(list(unique.values()))


def _row(client: Operations, run_id: str) -> dict:
    run = client.get_run(run_id)
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
    }


def build(rows: list[dict], baseline: int = 0) -> Comparison:
    """A Comparison of search rows (dicts as ``Client.search_rows`` gives them)."""
    columns = [
        RunColumn(
            r["run_id"],
            r["run_name"] or "",
            r["status"],
            r["tags"].get("mlflow.source.git.commit", ""),
            {k: str(v) for k, v in r["params"].items()},
            dict(r["metrics"]),
        )
        for r in rows
    ]
    report = Comparison(columns, baseline)
    base = columns[baseline]
    for key in sorted({k for c in columns for k in c.params}):
        values = [c.params.get(key) for c in columns]
        report.params.append(ParamRow(key, values, [v != base.params.get(key) for v in values]))
    for key in sorted({k for c in columns for k in c.metrics}):
        numbers = [_number(c.metrics.get(key)) for c in columns]
        ref = numbers[baseline]
        deltas = [
            v - ref if v is not None and ref is not None and i != baseline else None for i, v in enumerate(numbers)
        ]
        lower = lower_is_better(key)
        finite = [(v, i) for i, v in enumerate(numbers) if v is not None and math.isfinite(v)]
        best = (min(finite) if lower else max(finite, key=lambda p: (p[0], -p[1])))[1] if len(finite) > 1 else None
        report.metrics.append(MetricRow(key, numbers, deltas, best, lower))
    return report


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# -- rendering -------------------------------------------------------------------
def md_text(value: object, *, limit: int | None = CELL_MAX, table: bool = True) -> str:
    """``value`` as inert Markdown: a number as it reads; text of letters, digits, spaces,
    ``-``, ``/`` and dots between digits as it is (nothing there can start a link, an
    emphasis or a mention, but ``GH-1``); any other text as a code span, inside which GitHub and GitLab
    make no link, image, autolink (``https://…``, ``www.``), @mention or HTML. One line,
    at most ``limit`` characters; ``table``: a ``|`` is escaped (a table cell ends there
    even inside code). Values from runs and tags (names, params, taggers, messages) go
    through here: a pull request cannot make the report link, ping or show anything."""
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6g}" if isinstance(value, float) else str(value)
    text = _UNPRINTABLE.sub("\ufffd", " ".join(str(value).split()))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text if not text or _PLAIN.fullmatch(text) and not _ISSUE_REF.search(text) else md_code(text, table=table)


def md_code(text: str, *, table: bool = True) -> str:
    """``text`` (one line) as a Markdown code span: a fence longer than any run of
    backticks inside, spaces around a backtick at an end (CommonMark strips them)."""
    text = _UNPRINTABLE.sub("\ufffd", " ".join(text.split()))
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    if table:
        text = text.replace("|", "\\|")
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; cells are used as given (escape them with :func:`md_text`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _delta(value: float | None) -> str:
    return "" if value is None or value == 0 or not math.isfinite(value) else f" ({value:+.4g})"


def _headers(report: Comparison) -> list[str]:
    out = []
    for i, c in enumerate(report.runs):
        label = f"{md_text(c.run_name)} {md_code(c.run_id[:8])}"
        out.append(label + (" (baseline)" if i == report.baseline else ""))
    return out


def to_markdown(report: Comparison, charts: dict[str, str] | None = None, *, title: str = "gitml compare") -> str:
    """The report as Markdown: metrics (delta to the baseline, best in bold with ★),
    params (changed values in bold), then the charts (``{metric: image file}``)."""
    out = [f"## {md_text(title)}\n\n", f"{len(report.runs)} run(s); deltas are to the baseline"]
    out.append("; ★ marks the best value of each metric.\n\n" if report.metrics else ".\n\n")
    headers = _headers(report)
    if report.metrics:
        rows = []
        for m in report.metrics:
            cells = []
            for i, v in enumerate(m.values):
                cell = md_text(v) + _delta(m.deltas[i])
                cells.append(f"**{cell}** ★" if i == m.best else cell)
            rows.append([md_text(m.key) + (" ↓" if m.lower_is_better else "")] + cells)
        out.append(markdown_table(["metric"] + headers, rows) + "\n")
    if report.params:
        rows = [
            [md_text(p.key)]
            + [f"**{md_text(v)}**" if ch else md_text(v) for v, ch in zip(p.values, p.changed, strict=False)]
            for p in report.params
        ]
        out.append(markdown_table(["param"] + headers, rows) + "\n")
    commits = [md_text(c.commit[:12]) if c.commit else "–" for c in report.runs]
    out.append(
        markdown_table(
            ["run"] + headers, [["source commit"] + commits, ["status"] + [md_text(c.status) for c in report.runs]]
        )
    )
    for key, path in (charts or {}).items():
        out.append(f"\n![{md_text(key)}]({path.replace(' ', '%20').replace(')', '%29')})\n")
    return "".join(out)


def to_html(report: Comparison, charts: dict[str, str] | None = None, *, title: str = "gitml compare") -> str:
    """The report as one self-contained HTML page (every value escaped)."""
    e = html.escape
    head = "".join(
        f"<th>{e(c.run_name)}<br><code>{e(c.run_id[:8])}</code>{' (baseline)' if i == report.baseline else ''}</th>"
        for i, c in enumerate(report.runs)
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
        "body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px}"
        ".best{font-weight:bold;background:#e6ffed}.changed{font-weight:bold}</style></head><body>",
        f"<h2>{e(title)}</h2>",
    ]
    if report.metrics:
        parts.append(f"<table><tr><th>metric</th>{head}</tr>")
        for m in report.metrics:
            cells = "".join(
                f"<td{' class=best' if i == m.best else ''}>{e(_plain(v))}{e(_delta(m.deltas[i]))}</td>"
                for i, v in enumerate(m.values)
            )
            parts.append(f"<tr><td>{e(m.key)}{' ↓' if m.lower_is_better else ''}</td>{cells}</tr>")
        parts.append("</table>")
    if report.params:
        parts.append(f"<table><tr><th>param</th>{head}</tr>")
        for p in report.params:
            cells = "".join(
                f"<td{' class=changed' if ch else ''}>{e(_plain(v))}</td>"
                for v, ch in zip(p.values, p.changed, strict=False)
            )
            parts.append(f"<tr><td>{e(p.key)}</td>{cells}</tr>")
        parts.append("</table>")
    for key, path in (charts or {}).items():
        parts.append(
            f"<figure><img src='{e(path, quote=True)}' alt='{e(key, quote=True)}'>"
            f"<figcaption>{e(key)}</figcaption></figure>"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


def _plain(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def to_json(report: Comparison) -> str:
    """The report as JSON (NaN and infinities as null)."""

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    data = {
        "baseline": report.runs[report.baseline].run_id,
        "runs": [vars(c) | {"metrics": {k: clean(v) for k, v in c.metrics.items()}} for c in report.runs],
        "metrics": [
            {
                "key": m.key,
                "values": [clean(v) for v in m.values],
                "deltas": [clean(v) for v in m.deltas],
                "best": report.runs[m.best].run_id if m.best is not None else None,
                "lower_is_better": m.lower_is_better,
            }
            for m in report.metrics
        ],
        "params": [{"key": p.key, "values": p.values, "changed": p.changed} for p in report.params],
    }
    return json.dumps(data, indent=2) + "\n"


def write_charts(client: Operations, report: Comparison, folder: str, stem: str) -> dict[str, str]:
    """Draw each metric with a history (more than one point in some run), one line per run,
    as ``folder/<stem>-<metric>.png``; returns ``{metric: file name}``. Returns {} when
    matplotlib is not installed: the tables say it all, the charts help."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    out: dict[str, str] = {}
    for m in report.metrics:
        if len(out) >= MAX_CHARTS:
            break
        histories = [
            (c, client.get_metric_history(c.run_id, m.key)) if m.key in c.metrics else (c, []) for c in report.runs
        ]
        if not any(len(h) > 1 for _, h in histories):
            continue
        figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
        for c, history in histories:
            if history:
                axes.plot(
                    [p.step for p in history], [p.value for p in history], label=f"{c.run_name} {c.run_id[:8]}"[:40]
                )
        axes.set_title(m.key[:60])
        axes.set_xlabel("step")
        axes.legend(fontsize="small")
        figure.tight_layout()
        name = f"{stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', m.key)[:80]}.png"
        figure.savefig(os.path.join(folder, name))
        plt.close(figure)
        out[m.key] = name
    return out


def render(report: Comparison, fmt: str, charts: dict[str, str] | None = None) -> str:
    """``fmt``: markdown, html or json."""
    if fmt == "markdown":
        return to_markdown(report, charts)
    if fmt == "html":
        return to_html(report, charts)
    if fmt == "json":
        return to_json(report)
    raise InvalidInputError(f"report format {fmt!r} is not markdown, html or json")


__all__ = [
    "Comparison",
    "MetricRow",
    "ParamRow",
    "RunColumn",
    "build",
    "compare_runs",
    "latest_runs_of",
    "lower_is_better",
    "markdown_table",
    "md_code",
    "md_text",
    "render",
    "to_html",
    "to_json",
    "to_markdown",
    "write_charts",
]
