"""SDV-compatible multi-table metadata and the foreign-key graph it defines.

The JSON is SDV's multi-table format (``tables.*.columns.*.sdtype``, ``primary_key``,
``alternate_keys``, ``relationships[*]``) with these optional extensions (documented in
``docs/metadata.md``):

* ``primary_key`` may be a list of columns (a composite key: a link table's two foreign
  keys, an order line's ``(order_id, line_no)``), or left out (a key-less event table);
* ``child_foreign_key`` / ``parent_primary_key`` may be equal-length lists (a composite
  foreign key), and may name an alternate (unique) key of the parent instead of its
  primary key;
* ``"deferred": true`` on a relationship: the edge that breaks a foreign-key cycle; it is
  linked after both tables exist (found by itself when a cycle has no deferred edge);
* ``primary_parent`` names the foreign-key column whose parent a row belongs to
  (``marks.student_course_id``); without it the first declared foreign key is used;
* sdtype ``binary``: a column of binary values, not modelled and published as NULL;
* ``"empty": true`` on a table: the source table has no rows (published empty).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

from synth_pipeline.errors import SchemaError

log = logging.getLogger(__name__)

MODELLED_SDTYPES = frozenset({"numerical", "categorical", "boolean", "datetime"})
ID_SDTYPE = "id"
BINARY_SDTYPE = "binary"  # not modelled: published as NULL
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
        return self.sdtype not in MODELLED_SDTYPES and self.sdtype not in (ID_SDTYPE, BINARY_SDTYPE)

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
    """A foreign key: ``child_columns`` of the child refer to ``parent_columns`` of the parent
    (one column each, or equal-length lists for a composite key)."""

    parent_table_name: str
    parent_columns: tuple[str, ...]
    child_table_name: str
    child_columns: tuple[str, ...]
    deferred: bool = False  # breaks a cycle: linked after both tables are generated

    def __post_init__(self):
        for name in ("parent_columns", "child_columns"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    @property
    def is_composite(self) -> bool:
        return len(self.child_columns) > 1

    @property
    def child_foreign_key(self) -> str:
        """The child's column (single-column keys; a composite key's columns joined by '+')."""
        return "+".join(self.child_columns)

    @property
    def parent_primary_key(self) -> str:
        return "+".join(self.parent_columns)

    @property
    def is_self_reference(self) -> bool:
        return self.parent_table_name == self.child_table_name

    @property
    def label(self) -> str:
        return f"{self.child_table_name}.{_names(self.child_columns)} -> {self.parent_table_name}.{_names(self.parent_columns)}"

    def to_dict(self) -> dict[str, Any]:
        def plain(cols):
            return cols[0] if len(cols) == 1 else list(cols)

        out: dict[str, Any] = {
            "parent_table_name": self.parent_table_name,
            "parent_primary_key": plain(self.parent_columns),
            "child_table_name": self.child_table_name,
            "child_foreign_key": plain(self.child_columns),
        }
        if self.deferred:
            out["deferred"] = True
        return out


def _names(cols: tuple[str, ...]) -> str:
    return cols[0] if len(cols) == 1 else "(" + ", ".join(cols) + ")"


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()
    alternate_keys: tuple[str, ...] = ()
    primary_parent: str | None = None
    empty: bool = False  # the source table has no rows

    @property
    def single_primary_key(self) -> str | None:
        return self.primary_key[0] if len(self.primary_key) == 1 else None

    def is_unique_key(self, columns: tuple[str, ...]) -> bool:
        """Whether ``columns`` are this table's primary key or one of its alternate keys."""
        return tuple(columns) == self.primary_key or (len(columns) == 1 and columns[0] in self.alternate_keys)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"columns": {n: c.to_dict() for n, c in self.columns.items()}}
        if self.primary_key:
            out["primary_key"] = self.primary_key[0] if len(self.primary_key) == 1 else list(self.primary_key)
        if self.alternate_keys:
            out["alternate_keys"] = list(self.alternate_keys)
        if self.primary_parent:
            out["primary_parent"] = self.primary_parent
        if self.empty:
            out["empty"] = True
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
            if len(set(table.primary_key)) != len(table.primary_key):
                raise SchemaError(f"table '{table.name}': primary key names a column twice")
        for rel in self.relationships:
            for tname in (rel.parent_table_name, rel.child_table_name):
                if tname not in self.tables:
                    raise SchemaError(f"relationship {rel.label}: unknown table '{tname}'")
            parent = self.tables[rel.parent_table_name]
            child = self.tables[rel.child_table_name]
            if len(rel.parent_columns) != len(rel.child_columns) or not rel.child_columns:
                raise SchemaError(f"relationship {rel.label}: child_foreign_key and parent_primary_key must name "
                                  "the same number of columns")
            for tname, table, cols in ((rel.parent_table_name, parent, rel.parent_columns),
                                       (rel.child_table_name, child, rel.child_columns)):
                for col in cols:
                    if col not in table.columns:
                        raise SchemaError(f"relationship {rel.label}: unknown column '{tname}.{col}'")
            if not parent.is_unique_key(rel.parent_columns):
                raise SchemaError(
                    f"relationship {rel.label}: '{rel.parent_table_name}.{_names(rel.parent_columns)}' is neither the "
                    f"primary key of '{rel.parent_table_name}' nor one of its alternate_keys"
                )
        for table in self.tables.values():
            if table.primary_parent and table.primary_parent not in {r.child_foreign_key for r in self.foreign_keys(table.name)}:
                raise SchemaError(f"table '{table.name}': primary_parent '{table.primary_parent}' is not one of its foreign keys")
        self.topological_order()  # cycles left without a deferred edge get one here

    # ------------------------------------------------------------------ graph
    def foreign_keys(self, table: str) -> list[Relationship]:
        """Relationships in which ``table`` is the child (self-references included)."""
        return [r for r in self.ordered_relationships if r.child_table_name == table]

    def child_relationships(self, table: str) -> list[Relationship]:
        """Relationships in which ``table`` is the parent (self-references included)."""
        return [r for r in self.ordered_relationships if r.parent_table_name == table]

    @cached_property
    def ordered_relationships(self) -> tuple[Relationship, ...]:
        """Every relationship but the deferred ones (those that break a cycle): the graph
        tables are generated along."""
        return tuple(r for r in self.relationships if not r.deferred)

    @property
    def deferred(self) -> tuple[Relationship, ...]:
        return tuple(r for r in self.relationships if r.deferred)

    def break_cycles(self, loss: "Callable[[Relationship], tuple] | None" = None) -> "Metadata":
        """This metadata with one edge of each foreign-key cycle marked ``deferred`` (kept when
        already marked). The edge is the one with the smallest ``loss`` (default: a child's
        second foreign key before its primary one, then the smaller child table by name)."""
        loss = loss or (lambda r: (self.primary_relationship(r.child_table_name) == r, r.child_table_name,
                                   r.child_foreign_key))
        current = self
        while True:
            remaining = current._remaining_after_order()
            if not remaining:
                return current
            cycle = _find_cycle(remaining)
            edges = [r for r in current.ordered_relationships if not r.is_self_reference
                     and any(r.child_table_name == a and r.parent_table_name == b for a, b in zip(cycle, cycle[1:]))]
            chosen = min(edges, key=loss)
            log.info("foreign keys form a cycle (%s): %s is linked after both tables exist", " -> ".join(cycle),
                     chosen.label)
            rels = tuple(replace(r, deferred=True) if r == chosen else r for r in current.relationships)
            current = Metadata(tables=current.tables, relationships=rels)

    def parents(self, table: str) -> list[str]:
        return _unique(r.parent_table_name for r in self.foreign_keys(table) if not r.is_self_reference)

    def children(self, table: str) -> list[str]:
        return _unique(r.child_table_name for r in self.child_relationships(table) if not r.is_self_reference)

    def roots(self) -> list[str]:
        return [t for t in self.topological_order() if not self.parents(t)]

    def _remaining_after_order(self) -> dict[str, set[str]]:
        """Ordering by parents first: the tables left unordered (empty unless there is a cycle)."""
        remaining = {t: set(self.parents(t)) for t in self.tables}
        while remaining:
            ready = sorted(t for t, ps in remaining.items() if not ps)
            if not ready:
                return remaining
            for t in ready:
                del remaining[t]
            for ps in remaining.values():
                ps.difference_update(ready)
        return remaining

    @cached_property
    def _order(self) -> tuple[str, ...]:
        graph = self if not self._remaining_after_order() else self.break_cycles()
        remaining = {t: set(graph.parents(t)) for t in self.tables}
        order: list[str] = []
        while remaining:
            ready = sorted(t for t, ps in remaining.items() if not ps)
            for t in ready:
                order.append(t)
                del remaining[t]
            for ps in remaining.values():
                ps.difference_update(ready)
        return tuple(order)

    def topological_order(self) -> list[str]:
        """Tables with every parent before its children (ties broken by name; a cycle's
        deferred edge does not count)."""
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
        return set(t.primary_key) | {c for r in self.relationships if r.child_table_name == table
                                     for c in r.child_columns}

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

    def without_missing_primary_parents(self) -> "Metadata":
        """Each table's ``primary_parent`` kept only where it names one of its foreign keys."""
        tables = {n: t if not t.primary_parent or t.primary_parent in {r.child_foreign_key for r in self.foreign_keys(n)}
                  else replace(t, primary_parent=None) for n, t in self.tables.items()}
        return Metadata(tables=tables, relationships=self.relationships)

    @property
    def has_cycles(self) -> bool:
        return bool(self._remaining_after_order())


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
    if pk is not None and not isinstance(pk, str) and not (
            isinstance(pk, list) and all(isinstance(k, str) for k in pk)):
        raise SchemaError(f"table '{name}': primary_key must be a column name or a list of column names")
    primary_key: tuple[str, ...] = () if pk is None else (pk,) if isinstance(pk, str) else tuple(pk)
    alternate = tuple(k for k in spec.get("alternate_keys", []) if isinstance(k, str))
    return Table(name=name, columns=columns, primary_key=primary_key, alternate_keys=alternate,
                 primary_parent=spec.get("primary_parent"), empty=bool(spec.get("empty", False)))


def _relationship_from_dict(i: int, raw: Any) -> Relationship:
    keys = ("parent_table_name", "parent_primary_key", "child_table_name", "child_foreign_key")
    if not isinstance(raw, dict) or any(k not in raw for k in keys):
        raise SchemaError(f"relationship #{i}: needs {', '.join(keys)}")

    def columns(key: str) -> tuple[str, ...]:
        value = raw[key]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        if isinstance(value, str):
            return (value,)
        raise SchemaError(f"relationship #{i}: {key} must be a column name or a list of column names")

    return Relationship(parent_table_name=str(raw["parent_table_name"]), parent_columns=columns("parent_primary_key"),
                        child_table_name=str(raw["child_table_name"]), child_columns=columns("child_foreign_key"),
                        deferred=bool(raw.get("deferred", False)))


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


COMMON_TOKENS = {"first_name", "last_name", "city", "state", "country", "secondary_address", "street_name", "text"}
