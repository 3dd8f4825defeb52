"""SDV-compatible multi-table metadata and the foreign-key graph it defines.

The JSON is SDV's multi-table format (``tables.*.columns.*.sdtype``, ``primary_key``,
``alternate_keys``, ``relationships[*]``) with two optional extensions:

* ``primary_key`` may be a list of columns (a composite key, e.g. a pure link table);
* ``primary_parent`` names the foreign-key column whose parent a row belongs to
  (``marks.student_course_id``); without it the first declared foreign key is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from synth_pipeline.errors import SchemaError

MODELLED_SDTYPES = frozenset({"numerical", "categorical", "boolean", "datetime"})
ID_SDTYPE = "id"
LOOKUP_MAX_ROWS = 30  # a table this small whose every row holds its own label lists categories


@dataclass(frozen=True)
class Column:
    name: str
    sdtype: str
    datetime_format: str | None = None
    regex_format: str | None = None
    computer_representation: str | None = None
    pii: bool = False

    @property
    def is_identity_text(self) -> bool:
        """Names, emails, phones, addresses...: generated, never learned as categories."""
        return self.sdtype not in MODELLED_SDTYPES and self.sdtype != ID_SDTYPE

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sdtype": self.sdtype}
        if self.datetime_format:
            out["datetime_format"] = self.datetime_format
        if self.regex_format:
            out["regex_format"] = self.regex_format
        if self.computer_representation:
            out["computer_representation"] = self.computer_representation
        if self.pii:
            out["pii"] = True
        return out


@dataclass(frozen=True)
class Relationship:
    parent_table_name: str
    parent_primary_key: str
    child_table_name: str
    child_foreign_key: str

    @property
    def is_self_reference(self) -> bool:
        return self.parent_table_name == self.child_table_name

    @property
    def label(self) -> str:
        return f"{self.child_table_name}.{self.child_foreign_key} -> {self.parent_table_name}.{self.parent_primary_key}"

    def to_dict(self) -> dict[str, str]:
        return {
            "parent_table_name": self.parent_table_name,
            "parent_primary_key": self.parent_primary_key,
            "child_table_name": self.child_table_name,
            "child_foreign_key": self.child_foreign_key,
        }


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()
    alternate_keys: tuple[str, ...] = ()
    primary_parent: str | None = None

    @property
    def single_primary_key(self) -> str | None:
        return self.primary_key[0] if len(self.primary_key) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"columns": {n: c.to_dict() for n, c in self.columns.items()}}
        if self.primary_key:
            out["primary_key"] = self.primary_key[0] if len(self.primary_key) == 1 else list(self.primary_key)
        if self.alternate_keys:
            out["alternate_keys"] = list(self.alternate_keys)
        if self.primary_parent:
            out["primary_parent"] = self.primary_parent
        return out


@dataclass(frozen=True)
class Metadata:
    tables: dict[str, Table]
    relationships: tuple[Relationship, ...] = field(default_factory=tuple)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Metadata":
        if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
            raise SchemaError("metadata: expected an object with a 'tables' mapping (SDV multi-table format)")
        tables = {name: _table_from_dict(name, spec) for name, spec in raw["tables"].items()}
        rels = tuple(_relationship_from_dict(i, r) for i, r in enumerate(raw.get("relationships", [])))
        metadata = cls(tables=tables, relationships=rels)
        metadata.validate()
        return metadata

    @classmethod
    def load(cls, path: str | Path) -> "Metadata":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SchemaError(f"metadata file {path}: cannot be read ({exc.strerror or exc})") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"metadata file {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if isinstance(raw, list):
            raise SchemaError(f"metadata file {path}: expected an object, got a list")
        duplicates = _duplicate_table_names(text)
        if duplicates:
            raise SchemaError(f"metadata file {path}: duplicate table name(s) {sorted(set(duplicates))}")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "METADATA_SPEC_VERSION": "V1",
            "tables": {n: t.to_dict() for n, t in self.tables.items()},
            "relationships": [r.to_dict() for r in self.relationships],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        for table in self.tables.values():
            for key in (*table.primary_key, *table.alternate_keys):
                if key not in table.columns:
                    raise SchemaError(f"table '{table.name}': key column '{key}' is not among its columns")
            if not table.primary_key:
                raise SchemaError(f"table '{table.name}': no primary key declared")
        for rel in self.relationships:
            for tname in (rel.parent_table_name, rel.child_table_name):
                if tname not in self.tables:
                    raise SchemaError(f"relationship {rel.label}: unknown table '{tname}'")
            parent = self.tables[rel.parent_table_name]
            child = self.tables[rel.child_table_name]
            if rel.parent_primary_key not in parent.columns:
                raise SchemaError(f"relationship {rel.label}: unknown column '{rel.parent_table_name}.{rel.parent_primary_key}'")
            if rel.child_foreign_key not in child.columns:
                raise SchemaError(f"relationship {rel.label}: unknown column '{rel.child_table_name}.{rel.child_foreign_key}'")
            if parent.primary_key != (rel.parent_primary_key,):
                raise SchemaError(
                    f"relationship {rel.label}: '{rel.parent_table_name}.{rel.parent_primary_key}' is not the primary key of '{rel.parent_table_name}'"
                )
        for table in self.tables.values():
            if table.primary_parent and table.primary_parent not in {r.child_foreign_key for r in self.foreign_keys(table.name)}:
                raise SchemaError(f"table '{table.name}': primary_parent '{table.primary_parent}' is not one of its foreign keys")
        self.topological_order()  # raises on cycles

    # ------------------------------------------------------------------ graph
    def foreign_keys(self, table: str) -> list[Relationship]:
        """Relationships in which ``table`` is the child (self-references included)."""
        return [r for r in self.relationships if r.child_table_name == table]

    def child_relationships(self, table: str) -> list[Relationship]:
        """Relationships in which ``table`` is the parent (self-references included)."""
        return [r for r in self.relationships if r.parent_table_name == table]

    def parents(self, table: str) -> list[str]:
        return _unique(r.parent_table_name for r in self.foreign_keys(table) if not r.is_self_reference)

    def children(self, table: str) -> list[str]:
        return _unique(r.child_table_name for r in self.child_relationships(table) if not r.is_self_reference)

    def roots(self) -> list[str]:
        return [t for t in self.topological_order() if not self.parents(t)]

    @cached_property
    def _order(self) -> tuple[str, ...]:
        remaining = {t: set(self.parents(t)) for t in self.tables}
        order: list[str] = []
        while remaining:
            ready = sorted(t for t, ps in remaining.items() if not ps)
            if not ready:
                cycle = " -> ".join(_find_cycle(remaining))
                raise SchemaError(f"foreign keys form a cycle that cannot be ordered: {cycle}")
            for t in ready:
                order.append(t)
                del remaining[t]
            for ps in remaining.values():
                ps.difference_update(ready)
        return tuple(order)

    def topological_order(self) -> list[str]:
        """Tables with every parent before its children (ties broken by name)."""
        return list(self._order)

    def subtree(self, table: str) -> list[str]:
        """``table`` and every table below it, in topological order."""
        self._require(table)
        below = {table}
        for t in self.topological_order():
            if any(p in below for p in self.parents(t)):
                below.add(t)
        return [t for t in self.topological_order() if t in below]

    def primary_relationship(self, table: str) -> Relationship | None:
        """The FK whose parent a row belongs to; its children counts decide the row count."""
        candidates = [r for r in self.foreign_keys(table) if not r.is_self_reference]
        if not candidates:
            return None
        declared = self.tables[table].primary_parent
        if declared:
            return next(r for r in candidates if r.child_foreign_key == declared)
        return candidates[0]

    def second_relationships(self, table: str) -> list[Relationship]:
        """Every FK of ``table`` other than its primary one (self-references included)."""
        primary = self.primary_relationship(table)
        return [r for r in self.foreign_keys(table) if r != primary]

    def key_columns(self, table: str) -> set[str]:
        t = self.tables[table]
        return set(t.primary_key) | {r.child_foreign_key for r in self.foreign_keys(table)}

    def _require(self, table: str) -> Table:
        if table not in self.tables:
            raise SchemaError(f"unknown table '{table}' (known: {', '.join(sorted(self.tables))})")
        return self.tables[table]

    def table(self, name: str) -> Table:
        return self._require(name)

    def restrict(self, tables: Iterable[str]) -> "Metadata":
        """The sub-schema on ``tables`` (relationships between them only)."""
        keep = set(tables)
        return Metadata(
            tables={n: t for n, t in self.tables.items() if n in keep},
            relationships=tuple(r for r in self.relationships if r.parent_table_name in keep and r.child_table_name in keep),
        )


# --------------------------------------------------------------------- helpers
def _table_from_dict(name: str, spec: Any) -> Table:
    if not isinstance(spec, dict) or not isinstance(spec.get("columns"), dict) or not spec["columns"]:
        raise SchemaError(f"table '{name}': expected a 'columns' mapping with at least one column")
    columns = {}
    for cname, cspec in spec["columns"].items():
        if not isinstance(cspec, dict) or "sdtype" not in cspec:
            raise SchemaError(f"table '{name}': column '{cname}' has no sdtype")
        columns[cname] = Column(
            name=cname,
            sdtype=str(cspec["sdtype"]),
            datetime_format=cspec.get("datetime_format"),
            regex_format=cspec.get("regex_format"),
            computer_representation=cspec.get("computer_representation"),
            pii=bool(cspec.get("pii", False)),
        )
    pk = spec.get("primary_key")
    primary_key: tuple[str, ...] = () if pk is None else (pk,) if isinstance(pk, str) else tuple(pk)
    alternate = tuple(k for k in spec.get("alternate_keys", []) if isinstance(k, str))
    return Table(name=name, columns=columns, primary_key=primary_key, alternate_keys=alternate,
                 primary_parent=spec.get("primary_parent"))


def _relationship_from_dict(i: int, raw: Any) -> Relationship:
    keys = ("parent_table_name", "parent_primary_key", "child_table_name", "child_foreign_key")
    if not isinstance(raw, dict) or any(k not in raw for k in keys):
        raise SchemaError(f"relationship #{i}: needs {', '.join(keys)}")
    return Relationship(**{k: str(raw[k]) for k in keys})


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _find_cycle(remaining: dict[str, set[str]]) -> list[str]:
    start = sorted(remaining)[0]
    path, node = [start], start
    while True:
        node = sorted(remaining[node])[0]
        if node in path:
            return path[path.index(node):] + [node]
        path.append(node)


def _duplicate_table_names(text: str) -> list[str]:
    """Table names written twice under 'tables' (json.loads silently keeps the last)."""
    dups: list[str] = []

    def hook(pairs):
        names = [k for k, _ in pairs]
        if pairs and all(isinstance(v, dict) and "columns" in v for _, v in pairs):
            dups.extend(k for i, k in enumerate(names) if k in names[:i])
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return dups
