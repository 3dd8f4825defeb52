"""The run's own report.json: row counts, key checks and children-per-parent similarity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth_pipeline.evaluation.structure import (cardinality_counts, cardinality_similarity, count_summary,
                                                 fk_violations, pk_duplicates)
from synth_pipeline.schema.metadata import Metadata


def build_run_report(metadata: Metadata, real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame],
                     cardinality_threshold: float) -> dict:
    tables, relationships = {}, []
    for name in metadata.topological_order():
        table = metadata.table(name)
        tables[name] = {"real_rows": len(real[name]), "synthetic_rows": len(synthetic[name]),
                        "pk_duplicates": pk_duplicates(synthetic[name], table.primary_key),
                        "alternate_key_duplicates": {k: int(synthetic[name][k].dropna().duplicated().sum())
                                                     for k in table.alternate_keys}}
    for rel in metadata.relationships:
        parent_syn, child_syn = synthetic[rel.parent_table_name], synthetic[rel.child_table_name]
        real_counts = cardinality_counts(real[rel.parent_table_name], real[rel.child_table_name], rel)
        syn_counts = cardinality_counts(parent_syn, child_syn, rel)
        similarity = cardinality_similarity(real_counts, syn_counts)
        relationships.append({
            "relationship": rel.label, **rel.to_dict(),
            "fk_violations": fk_violations(child_syn, parent_syn, rel),
            "cardinality_similarity": round(similarity, 4),
            "cardinality_check_passed": bool(similarity >= cardinality_threshold),
            "real_children_per_parent": count_summary(real_counts),
            "synthetic_children_per_parent": count_summary(syn_counts),
        })
    sims = [r["cardinality_similarity"] for r in relationships]
    return {
        "tables": tables,
        "relationships": relationships,
        "totals": {
            "real_rows": int(sum(t["real_rows"] for t in tables.values())),
            "synthetic_rows": int(sum(t["synthetic_rows"] for t in tables.values())),
            "fk_violations": int(sum(r["fk_violations"] for r in relationships)),
            "pk_duplicates": int(sum(t["pk_duplicates"] for t in tables.values())),
            "alternate_key_duplicates": int(sum(sum(t["alternate_key_duplicates"].values()) for t in tables.values())),
            "mean_cardinality_similarity": round(float(np.mean(sims)), 4) if sims else 1.0,
            "min_cardinality_similarity": round(float(np.min(sims)), 4) if sims else 1.0,
        },
    }
