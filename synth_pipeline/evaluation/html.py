"""The human report: one self-contained HTML page with the figures and plots that matter.

Per-FK children-per-parent histograms (real vs synthetic), distributions of the worst
columns, a correlation-difference heat map per table, and, when a baseline ran, a
side-by-side table of our scores and HMA's on the same sub-schema.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

from synth_pipeline.schema.metadata import Metadata
from synth_pipeline.stats import NUMERIC, as_labels, as_numbers, compared_columns

SUMMARY_LABELS = [
    ("column_shapes", "Column Shapes"), ("column_pair_trends", "Column Pair Trends"),
    ("cardinality_similarity_mean", "Cardinality similarity (mean)"),
    ("cardinality_similarity_min", "Cardinality similarity (min)"), ("intertable_trends", "Intertable Trends"),
    ("two_hop_trends", "2-hop trends"), ("detection_logistic_regression_max", "Detection accuracy, logistic regression (max)"),
    ("detection_gradient_boosting_max", "Detection accuracy, gradient boosting (max)"),
    ("fk_violations", "FK violations"), ("pk_duplicates", "PK duplicates"),
    ("key_format_adherence_min", "Key format adherence (min)"), ("copied_rows", "Copied rows"),
    ("verbatim_identity_strings", "Verbatim identity strings"),
    ("constraint_satisfaction_mean", "Constraint satisfaction (mean)"),
    ("fit_seconds", "Fit seconds"), ("sample_seconds", "Sample seconds"),
]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def _cardinality_plots(report: dict) -> str:
    import matplotlib.pyplot as plt

    rels = report["relationships"]
    if not rels:
        return ""
    cols = 3
    rows = int(np.ceil(len(rels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, rel in zip(axes.flat, rels):
        real, syn = rel["real_counts_histogram"], rel["synthetic_counts_histogram"]
        keys = sorted({int(k) for k in (*real, *syn)})
        x = np.arange(len(keys))
        total_r, total_s = max(sum(real.values()), 1), max(sum(syn.values()), 1)
        ax.bar(x - 0.2, [real.get(str(k), 0) / total_r for k in keys], 0.4, label="real")
        ax.bar(x + 0.2, [syn.get(str(k), 0) / total_s for k in keys], 0.4, label="synthetic")
        step = max(1, len(keys) // 10)
        ax.set_xticks(x[::step], [str(k) for k in keys][::step], fontsize=7)
        ax.set_title(f"{rel['child_table_name']}.{rel['child_foreign_key']} ({rel['cardinality_similarity']:.2f})", fontsize=8)
    for ax in list(axes.flat)[len(rels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Children per parent (share of parents), real vs synthetic")
    fig.tight_layout()
    return _png(fig)


def _worst_columns(report, real, synthetic, metadata, k=6) -> str:
    import matplotlib.pyplot as plt

    scored = [(score, t, c) for t, v in report["tables"].items() for c, score in v["column_shapes_by_column"].items()]
    worst = sorted(scored)[:k]
    if not worst:
        return ""
    fig, axes = plt.subplots(1, len(worst), figsize=(3.6 * len(worst), 2.8), squeeze=False)
    for ax, (score, table, col) in zip(axes.flat, worst):
        kind = compared_columns(metadata, table)[col]
        if kind in NUMERIC:
            r, s = as_numbers(real[table][col], kind).dropna(), as_numbers(synthetic[table][col], kind).dropna()
            bins = np.histogram_bin_edges(r, bins=20) if len(r) else 10
            ax.hist(r, bins=bins, alpha=0.5, density=True, label="real")
            ax.hist(s, bins=bins, alpha=0.5, density=True, label="synthetic")
        else:
            r = as_labels(real[table][col]).value_counts(normalize=True)
            s = as_labels(synthetic[table][col]).value_counts(normalize=True).reindex(r.index, fill_value=0)
            top = r.index[:12]
            x = np.arange(len(top))
            ax.bar(x - 0.2, r[top], 0.4, label="real")
            ax.bar(x + 0.2, s[top], 0.4, label="synthetic")
            ax.set_xticks(x, [str(v)[:10] for v in top], rotation=60, fontsize=6)
        ax.set_title(f"{table}.{col} ({score:.2f})", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    return _png(fig)


def _correlation_heatmaps(real, synthetic, metadata) -> str:
    import matplotlib.pyplot as plt

    panels = []
    for table in metadata.topological_order():
        kinds = {c: k for c, k in compared_columns(metadata, table).items() if k in NUMERIC}
        if len(kinds) < 3:
            continue
        r = pd.DataFrame({c: as_numbers(real[table][c], k) for c, k in kinds.items()}).corr()
        s = pd.DataFrame({c: as_numbers(synthetic[table][c], k) for c, k in kinds.items()}).corr()
        panels.append((table, (r - s).abs().fillna(0)))
    if not panels:
        return ""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.4), squeeze=False)
    for ax, (table, diff) in zip(axes.flat, panels):
        image = ax.imshow(diff.to_numpy(), vmin=0, vmax=1, cmap="Reds")
        ax.set_xticks(range(len(diff)), [c[:12] for c in diff.columns], rotation=70, fontsize=6)
        ax.set_yticks(range(len(diff)), [c[:12] for c in diff.columns], fontsize=6)
        ax.set_title(table, fontsize=8)
    fig.colorbar(image, ax=list(axes.flat), shrink=0.7, label="|corr real - corr synthetic|")
    return _png(fig)


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return "—" if value is None else str(value)


def render(report: dict, real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata) -> str:
    import matplotlib

    matplotlib.use("Agg")
    ours = report["synth_pipeline"]
    parts = ["<html><head><meta charset='utf-8'><title>synth_pipeline evaluation</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right} th{background:#eee}"
             "td:first-child{text-align:left}</style></head><body>",
             "<h1>synth_pipeline evaluation</h1>"]
    summary_rows = [[label, ours["summary"].get(key)] for key, label in SUMMARY_LABELS if key in ours["summary"]]
    parts += ["<h2>Summary</h2>", _table(summary_rows, ["metric", "synth_pipeline"])]
    if "comparison" in report:
        comp = report["comparison"]
        parts.append(f"<h2>Against SDV HMA on the sub-schema it accepts</h2><p>Tables: {', '.join(comp['tables'])}. "
                     f"{html.escape(comp['note'])}</p>")
        rows = [[label, comp["synth_pipeline"].get(key), comp["hma"].get(key)] for key, label in SUMMARY_LABELS
                if key in comp["synth_pipeline"] or key in comp["hma"]]
        parts.append(_table(rows, ["metric", "synth_pipeline", "HMA"]))
    table_rows = [[t, v["real_rows"], v["synthetic_rows"], v["column_shapes"], v["column_pair_trends"], v["pk_duplicates"]]
                  for t, v in ours["tables"].items()]
    parts += ["<h2>Tables</h2>", _table(table_rows, ["table", "real rows", "synthetic rows", "column shapes",
                                                     "column pair trends", "PK duplicates"])]
    rel_rows = [[r["relationship"], r["fk_violations"], r["cardinality_similarity"], r.get("intertable_trends"),
                 r["real_children_per_parent"].get("max"), r["synthetic_children_per_parent"].get("max")]
                for r in ours["relationships"]]
    parts += ["<h2>Relationships</h2>", _table(rel_rows, ["relationship", "FK violations", "cardinality",
                                                          "intertable trends", "real max", "synthetic max"])]
    parts += ["<h3>Children per parent</h3>", _cardinality_plots(ours)]
    parts += ["<h3>Worst columns</h3>", _worst_columns(ours, real, synthetic, metadata)]
    parts += ["<h3>Correlation differences</h3>", _correlation_heatmaps(real, synthetic, metadata)]
    parts += ["<h2>2-hop trends</h2>", _table([[h["path"], h["score"]] for h in ours["two_hop"]], ["path", "score"])]
    parts += ["<h2>Detection (0.5 = indistinguishable)</h2>",
              _table([[d["table"], d["logistic_regression"], d["gradient_boosting"], d["rows_per_class"]]
                      for d in ours["detection"]], ["parent + child aggregates", "logistic regression",
                                                    "gradient boosting", "rows per class"])]
    parts += ["<h2>Constraints held by 100% of real rows</h2>",
              _table([[c["table"], c["description"], c["satisfied_share"]] for c in ours["constraints"]],
                     ["table", "constraint", "synthetic rows satisfying"])]
    if ours.get("path_agreements"):
        parts += ["<h2>Links that follow another path (share of rows agreeing)</h2>",
                  _table([[p["table"], p["path"].split(" (")[0], p["real"], p["synthetic"], p["chance"]]
                          for p in ours["path_agreements"]], ["table", "path", "real", "synthetic", "random links"])]
    privacy_rows = [[t, v["privacy"]["copied_rows"], v["privacy"]["verbatim_identity_strings"],
                     v["privacy"]["dcr"].get("synthetic_to_real_median"), v["privacy"]["dcr"].get("holdout_to_real_median")]
                    for t, v in ours["tables"].items() if "privacy" in v]
    parts += ["<h2>Privacy</h2>", _table(privacy_rows, ["table", "copied rows", "verbatim identity strings",
                                                        "DCR synthetic→real (median)", "DCR held-out real→real (median)"])]
    parts.append("</body></html>")
    return "\n".join(parts)
