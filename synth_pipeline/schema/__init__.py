"""Metadata (SDV multi-table JSON), the foreign-key graph, detection and validation."""

from synth_pipeline.schema.metadata import Column, Metadata, Relationship, Table

__all__ = ["Column", "Metadata", "Relationship", "Table"]
