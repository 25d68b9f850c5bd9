"""A self-contained HTML report of an evaluation: tables, plots and the protocol stated.

Plots are rendered by matplotlib (headless Agg backend) into PNGs embedded as base64, so
the file opens anywhere, offline, and can be attached to a ticket or a paper review.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from whyrec.evaluation.protocol import (
    AGGREGATE_METRICS,
    LOWER_IS_BETTER,
    METRIC_NAMES,
    EvaluationReport,
)

BAR_METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hr")
"""Accuracy metrics drawn as bars with their confidence intervals."""

SIGNIFICANCE_LEVEL = 0.05


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it into place.

    A crash or an error midway never leaves a truncated report that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide the report from others
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def figure_png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _summary(report: EvaluationReport, key: str) -> list[tuple[float, float, float]]:
    """(mean, low, high) of one metric for every model, NaN where undefined."""
    rows = []
    for result in report.results:
        summary = result.summary[key]
        low, high = summary.ci95
        rows.append(
            (
                summary.mean,
                summary.mean if low is None else low,
                summary.mean if high is None else high,
            )
        )
    return rows


def accuracy_plot(report: EvaluationReport, k: int) -> str:
    """Grouped bars of the accuracy metrics at k, one colour per model, 95% error bars."""
    import matplotlib.pyplot as plt

    names = [r.name for r in report.results]
    figure, axis = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(BAR_METRICS))
    for index, name in enumerate(names):
        stats = [_summary(report, f"{metric}@{k}")[index] for metric in BAR_METRICS]
        means = np.array([s[0] for s in stats])
        errors = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]])
        axis.bar(positions + index * width, means, width, yerr=errors, capsize=3, label=name)
    axis.set_xticks(positions + width * (len(names) - 1) / 2)
    axis.set_xticklabels([f"{metric}@{k}" for metric in BAR_METRICS])
    axis.set_ylabel("mean over test users")
    axis.legend(fontsize=8)
    axis.set_title(f"Accuracy at k={k} (bars: 95% CI)")
    return figure_png(figure)


def popularity_bias_plot(report: EvaluationReport, k: int) -> str:
    """ARP against nDCG: accurate models that are not just popular sit top-left."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4))
    for index, result in enumerate(report.results):
        x = _summary(report, f"arp@{k}")[index]
        y = _summary(report, f"ndcg@{k}")[index]
        axis.errorbar(
            x[0],
            y[0],
            xerr=[[x[0] - x[1]], [x[2] - x[0]]],
            yerr=[[y[0] - y[1]], [y[2] - y[0]]],
            fmt="o",
            capsize=3,
        )
        axis.annotate(result.name, (x[0], y[0]), textcoords="offset points", xytext=(5, 5))
    axis.set_xlabel(f"ARP@{k} (mean training popularity of recommended items)")
    axis.set_ylabel(f"nDCG@{k}")
    axis.set_title("Popularity bias vs accuracy")
    return figure_png(figure)


def long_tail_plot(report: EvaluationReport, k: int) -> str:
    """Share of long-tail items in the lists (APLT) next to the catalog's long-tail share."""
    import matplotlib.pyplot as plt

    names = [r.name for r in report.results]
    stats = _summary(report, f"aplt@{k}")
    means = np.array([s[0] for s in stats])
    errors = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]])
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    axis.bar(names, means, yerr=errors, capsize=3, color="tab:purple")
    items = report.split.get("items", 0)
    head = report.split.get("short_head_items", 0)
    if items:
        axis.axhline(
            1 - head / items, linestyle="--", color="grey", label="long-tail share of catalog"
        )
        axis.legend(fontsize=8)
    axis.set_ylabel(f"APLT@{k}")
    axis.set_title("Long-tail share of recommendations")
    return figure_png(figure)


def _format(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


def _pvalue(value: float | None) -> str:
    return "—" if value is None else f"{value:.2g}"


def metrics_table(report: EvaluationReport, k: int) -> str:
    """Metrics down, models across, mean over its 95% CI; the best of each row in bold."""
    header = "".join(f"<th>{html.escape(r.name)}</th>" for r in report.results)
    rows = []
    for name in METRIC_NAMES:
        key = f"{name}@{k}"
        means = [r.summary[key].mean for r in report.results]
        finite = [v for v in means if v is not None and np.isfinite(v)]
        best = (min if name in LOWER_IS_BETTER else max)(finite) if finite else None
        cells = []
        for result in report.results:
            summary = result.summary[key]
            low, high = summary.ci95
            text = _format(summary.mean)
            if low is not None and high is not None:
                text += f"<br><small>[{_format(low)}, {_format(high)}]</small>"
            if best is not None and summary.mean == best and len(report.results) > 1:
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr><th>{html.escape(key)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{header}</tr>{''.join(rows)}</table>"


def timing_table(report: EvaluationReport) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(r.name)}</th><td>{r.fit_seconds:.2f}</td>"
        f"<td>{r.score_seconds:.2f}</td><td><code>{html.escape(repr(r.model))}</code></td></tr>"
        for r in report.results
    )
    return (
        "<table><tr><th>model</th><th>fit s</th><th>score s</th><th>parameters</th></tr>"
        f"{rows}</table>"
    )


def significance_table(report: EvaluationReport, metric: str) -> str:
    rows = []
    for test in report.significance:
        if test["metric"] != metric:
            continue
        t_p, w_p = test["t_pvalue"], test["wilcoxon_pvalue"]
        significant = t_p is not None and w_p is not None and max(t_p, w_p) < SIGNIFICANCE_LEVEL
        rows.append(
            f"<tr><td>{html.escape(test['model_a'])} vs {html.escape(test['model_b'])}</td>"
            f"<td>{test['mean_difference']:+.4f}</td><td>{_pvalue(t_p)}</td>"
            f"<td>{_pvalue(w_p)}</td><td>{'yes' if significant else 'no'}</td></tr>"
        )
    if not rows:
        return "<p>Only one model: nothing to compare.</p>"
    return (
        "<table><tr><th>pair</th><th>mean a − b</th><th>paired t p</th><th>Wilcoxon p</th>"
        f"<th>both p &lt; {SIGNIFICANCE_LEVEL}</th></tr>{''.join(rows)}</table>"
        "<p><small>Uncorrected p-values: with many pairs, apply Holm or Bonferroni before "
        "claiming a difference. Every metric's tests are in the JSON.</small></p>"
    )


def _plain(value: object) -> str:
    """{"a": 1, "b": None} → "a=1, b=none"; other values as text."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={'none' if v is None else v}" for k, v in value.items()) or "none"
    return str(value)


def protocol_section(report: EvaluationReport) -> str:
    split = report.split
    facts = {
        "dataset": report.dataset,
        "split": f"{split.get('method')} ({_plain(split.get('params', {}))})",
        "filtering": _plain(split.get("filtering") or {}),
        "train / test interactions": (
            f"{split.get('train_interactions', 0):,} / {split.get('test_interactions', 0):,}"
        ),
        "test users": f"{split.get('test_users', 0):,}",
        "catalog items": (
            f"{split.get('items', 0):,} ({split.get('short_head_items', 0):,} short head)"
        ),
        "test rows dropped": _plain(split.get("dropped") or {}),
        "seed": report.seed,
    }
    facts.update(split.get("protocol", {}))
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_plain(v))}</td></tr>"
        for k, v in facts.items()
    )
    return f"<table class='facts'>{rows}</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 4px 6px; text-align: right; vertical-align: top; }
table.facts th, table.facts td { text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; margin: 0.5em 1em 0.5em 0; }
small { color: #666; }
"""


def explanation_plot(report: EvaluationReport) -> str:
    """PN and PS of cited vs random evidence per model, and the deletion curves."""
    import matplotlib.pyplot as plt

    assert report.explanations
    names = list(report.explanations)
    k = report.ks[0]
    figure, (bars, curves) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(names))
    width = 0.2
    for offset, (key, label) in enumerate(
        [
            (f"pn@{k}", "PN cited"),
            (f"pn@{k}_random", "PN random"),
            (f"ps@{k}", "PS cited"),
            (f"ps@{k}_random", "PS random"),
        ]
    ):
        values = [report.explanations[n][key] or 0.0 for n in names]
        bars.bar(x + (offset - 1.5) * width, values, width, label=label)
    bars.set_xticks(x, names)
    bars.set_ylim(0, 1)
    bars.set_title(f"necessity and sufficiency at k={k}")
    bars.legend(fontsize=7)
    for name in names:
        curve = report.explanations[name]["deletion_curve"]
        removed = [p["removed"] for p in curve]
        cited = [p[f"in_top{k}"] for p in curve]
        if any(v is None for v in cited):
            continue  # no cited evidence (e.g. popularity): nothing to delete
        (line,) = curves.plot(removed, cited, marker="o", label=f"{name} cited")
        random_curve = [p[f"in_top{k}_random"] for p in curve]
        curves.plot(
            removed, random_curve, linestyle="--", color=line.get_color(), label=f"{name} random"
        )
    curves.set_xlabel("history items removed")
    curves.set_ylabel(f"share still in top-{k}")
    curves.set_title("deletion curve")
    curves.legend(fontsize=7)
    figure.tight_layout()
    return figure_png(figure)


def explanation_table(report: EvaluationReport) -> str:
    assert report.explanations
    k = report.ks[0]
    keys = [
        f"pn@{k}",
        f"pn@{k}_random",
        f"ps@{k}",
        f"ps@{k}_random",
        f"fns@{k}",
        f"fns@{k}_random",
        f"mep@{k}",
        f"mep@{k}_random",
    ]
    head = "".join(f"<th>{html.escape(key)}</th>" for key in keys)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_format(values[key])}</td>" for key in keys)
        + "</tr>"
        for name, values in report.explanations.items()
    )
    return f"<table><tr><th>model</th>{head}</tr>{rows}</table>"


def rare_items_plot(report: EvaluationReport) -> str:
    """Recall of rare held-out items at every k, one bar group per model, 95% CI."""
    import matplotlib.pyplot as plt

    rare = report.rare_items
    assert rare and rare["models"]
    names = list(rare["models"])
    figure, axis = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(report.ks))
    for index, name in enumerate(names):
        cells = [rare["models"][name]["metrics"][f"recall@{k}"] for k in report.ks]
        means = np.array([c["mean"] for c in cells])
        lows = np.array([c["mean"] if c["ci95"][0] is None else c["ci95"][0] for c in cells])
        highs = np.array([c["mean"] if c["ci95"][1] is None else c["ci95"][1] for c in cells])
        errors = np.array([means - lows, highs - means]).clip(min=0)
        axis.bar(positions + index * width, means, width, yerr=errors, capsize=3, label=name)
    axis.set_xticks(positions + width * (len(names) - 1) / 2)
    axis.set_xticklabels([f"recall@{k}" for k in report.ks])
    axis.set_ylabel("mean over users in the slice")
    axis.legend(fontsize=8)
    axis.set_title(f"Rare held-out items (< {rare['below']} training interactions)")
    return figure_png(figure)


def rare_items_table(report: EvaluationReport) -> str:
    rare = report.rare_items
    assert rare and rare["models"]
    keys = list(next(iter(rare["models"].values()))["metrics"])
    head = "".join(f"<th>{html.escape(key)}</th>" for key in keys)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_format(values['metrics'][key]['mean'])}</td>" for key in keys)
        + "</tr>"
        for name, values in rare["models"].items()
    )
    return f"<table><tr><th>model</th>{head}</tr>{rows}</table>"


def render_html(report: EvaluationReport) -> str:
    """The whole report as one HTML string."""
    import matplotlib

    matplotlib.use("Agg")
    k_main = report.ks[0]
    sections = [
        f"<h1>whyrec evaluation: {html.escape(report.dataset)}</h1>",
        "<h2>Protocol</h2>",
        protocol_section(report),
        "<h2>Plots</h2>",
        f"<img alt='accuracy' src='data:image/png;base64,{accuracy_plot(report, k_main)}'>",
        f"<img alt='popularity bias' src='data:image/png;base64,"
        f"{popularity_bias_plot(report, k_main)}'>",
        f"<img alt='long tail' src='data:image/png;base64,{long_tail_plot(report, k_main)}'>",
    ]
    for k in report.ks:
        sections.append(f"<h2>Metrics at k={k}</h2>")
        sections.append(metrics_table(report, k))
    aggregate = ", ".join(AGGREGATE_METRICS)
    sections.append(
        "<p><small>Per-user metrics: mean and Student-t 95% interval. "
        f"{aggregate}: value on all users and bootstrap 95% interval. "
        f"Lower is better for {', '.join(sorted(LOWER_IS_BETTER))}.</small></p>"
    )
    sections.append("<h2>Timing</h2>")
    sections.append(timing_table(report))
    sections.append(f"<h2>Paired significance on nDCG@{k_main}</h2>")
    sections.append(significance_table(report, f"ndcg@{k_main}"))
    rare = report.rare_items
    if rare and rare["models"]:
        sections.append("<h2>Rare items</h2>")
        sections.append(
            f"<p>{rare['test_users']:,} test users hold {rare['test_interactions']:,} items "
            f"with fewer than {rare['below']} training interactions; "
            f"{html.escape(rare['definition'])}.</p>"
        )
        sections.append(
            f"<img alt='rare items' src='data:image/png;base64,{rare_items_plot(report)}'>"
        )
        sections.append(rare_items_table(report))
    if report.explanations:
        sections.append("<h2>Explanation faithfulness</h2>")
        sections.append(
            f"<img alt='explanations' src='data:image/png;base64,{explanation_plot(report)}'>"
        )
        sections.append(explanation_table(report))
        sections.append(
            "<p><small>PN: share of explained items that leave the top-k when the cited history "
            "items are removed; PS: share that stay when only they are kept (CountER). Random: "
            "the same number of random history items. MEP: Abdollahi &amp; Nasraoui, "
            "neighbourhood and threshold in the JSON settings.</small></p>"
        )
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>whyrec evaluation: {html.escape(report.dataset)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def write_html(report: EvaluationReport, path: Path) -> None:
    write_atomic(path, render_html(report))
