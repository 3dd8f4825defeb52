"""Metadata loading, validation errors and the FK graph."""

import json

import pytest

from synth_pipeline.errors import SchemaError
from synth_pipeline.schema.metadata import Metadata


def _meta(tables, relationships=()):
    return {"tables": tables, "relationships": list(relationships)}


def _table(pk="id", *cols):
    columns = {pk: {"sdtype": "id"}} if pk else {}
    columns.update({c: {"sdtype": "id"} if c.endswith("_id") else {"sdtype": "categorical"} for c in cols})
    out = {"columns": columns or {"x": {"sdtype": "categorical"}}}
    if pk:
        out["primary_key"] = pk
    return out


def _rel(parent, child, fk, pk="id"):
    return {"parent_table_name": parent, "parent_primary_key": pk, "child_table_name": child, "child_foreign_key": fk}


def test_school_graph(school_metadata):
    order = school_metadata.topological_order()
    for rel in school_metadata.relationships:
        assert order.index(rel.parent_table_name) < order.index(rel.child_table_name)
    assert school_metadata.roots() == ["teachers"]
    assert set(school_metadata.parents("marks")) == {"student_courses", "teachers"}
    assert set(school_metadata.children("students")) == {
        "student_courses", "fees", "canteen_transactions", "transport_assignments", "games_participation"}
    assert set(school_metadata.subtree("student_courses")) == {"student_courses", "marks"}
    assert sum(r.parent_table_name == "teachers" for r in school_metadata.relationships) == 9
    assert school_metadata.primary_relationship("marks").child_foreign_key == "student_course_id"


def test_self_reference_is_allowed_and_not_a_parent():
    md = Metadata.from_dict(_meta({"emp": _table("id", "boss_id")}, [_rel("emp", "emp", "boss_id")]))
    assert md.parents("emp") == [] and md.topological_order() == ["emp"]
    assert md.second_relationships("emp")[0].is_self_reference


@pytest.mark.parametrize("raw, message", [
    (_meta({"a": _table()}, [_rel("b", "a", "x")]), "unknown table 'b'"),
    (_meta({"a": _table(), "b": _table("id", "a_id")}, [_rel("a", "b", "nope")]), "unknown column 'b.nope'"),
    (_meta({"a": _table("id", "code"), "b": _table("id", "a_code")}, [_rel("a", "b", "a_code", pk="code")]),
     "'a.code' is neither the primary key of 'a' nor one of its alternate_keys"),
    ({"tables": []}, "expected an object with a 'tables' mapping"),
    (_meta({"a": {"columns": {"id": {}}, "primary_key": "id"}}), "table 'a': column 'id' has no sdtype"),
    (_meta({"a": {"columns": {"id": {"sdtype": "id"}}, "primary_key": "pk"}}), "table 'a': key column 'pk'"),
])
def test_schema_errors_are_one_line_and_name_the_problem(raw, message):
    with pytest.raises(SchemaError) as info:
        Metadata.from_dict(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_key_less_tables_composite_foreign_keys_and_cycles_are_accepted():
    md = Metadata.from_dict({
        "tables": {"a": {"primary_key": ["x", "y"], "columns": {"x": {"sdtype": "id"}, "y": {"sdtype": "id"},
                                                                "b_id": {"sdtype": "id"}}},
                   "b": {"primary_key": "id", "columns": {"id": {"sdtype": "id"}, "ax": {"sdtype": "id"},
                                                          "ay": {"sdtype": "id"}}},
                   "log": {"columns": {"ax": {"sdtype": "id"}, "ay": {"sdtype": "id"}}}},
        "relationships": [
            {"parent_table_name": "a", "parent_primary_key": ["x", "y"], "child_table_name": "log",
             "child_foreign_key": ["ax", "ay"]},
            {"parent_table_name": "a", "parent_primary_key": ["x", "y"], "child_table_name": "b",
             "child_foreign_key": ["ax", "ay"]},
            {"parent_table_name": "b", "parent_primary_key": "id", "child_table_name": "a",
             "child_foreign_key": "b_id"}]})
    assert md.table("log").primary_key == ()
    assert md.relationships[0].label == "log.(ax, ay) -> a.(x, y)"
    assert md.has_cycles  # as written; the order breaks it at one edge
    broken = md.break_cycles()
    assert len(broken.deferred) == 1 and not broken.has_cycles
    assert md.topological_order().index("a") < md.topological_order().index("log")
    with pytest.raises(SchemaError, match="the same number of columns"):
        Metadata.from_dict({"tables": md.to_dict()["tables"], "relationships": [
            {"parent_table_name": "a", "parent_primary_key": ["x", "y"], "child_table_name": "log",
             "child_foreign_key": "ax"}]})


def test_duplicate_table_names_in_a_file(tmp_path):
    path = tmp_path / "m.json"
    one = json.dumps(_table())
    path.write_text('{"tables": {"a": %s, "a": %s}, "relationships": []}' % (one, one))
    with pytest.raises(SchemaError, match=r"duplicate table name\(s\) \['a'\]"):
        Metadata.load(path)


def test_unreadable_metadata_file(tmp_path):
    with pytest.raises(SchemaError, match="cannot be read"):
        Metadata.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        Metadata.load(bad)


def test_round_trip(school_metadata, tmp_path):
    school_metadata.save(tmp_path / "m.json")
    again = Metadata.load(tmp_path / "m.json")
    assert again.to_dict() == school_metadata.to_dict()
