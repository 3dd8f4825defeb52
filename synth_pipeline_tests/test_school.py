"""The simulator must contain every pattern that makes relational synthesis hard."""

import numpy as np
import pandas as pd
import pytest

from synth_pipeline.sources.school import simulate_school


def _per_parent(parent: pd.DataFrame, pk: str, child: pd.DataFrame, fk: str) -> pd.Series:
    return parent[pk].map(child[fk].value_counts()).fillna(0).astype(int)


def test_tables_and_columns_match_the_metadata(school_tables, school_metadata):
    assert set(school_tables) == set(school_metadata.tables)
    for name, table in school_metadata.tables.items():
        assert list(school_tables[name].columns) == list(table.columns), name


def test_fees_per_student_follow_the_seed_figures(school_tables):
    fees = _per_parent(school_tables["students"], "student_id", school_tables["fees"], "student_id")
    present = fees[fees > 0]
    assert 4.5 <= present.mean() <= 5.6
    assert 1.8 <= present.std() <= 2.6
    assert present.min() == 1
    assert 12 <= present.max() <= 15
    assert 0.003 <= (fees == 0).mean() <= 0.02


def test_course_load_drives_fees(school_tables):
    s = school_tables["students"]
    courses = _per_parent(s, "student_id", school_tables["student_courses"], "student_id")
    fee_rows = _per_parent(s, "student_id", school_tables["fees"], "student_id")
    due = s.student_id.map(school_tables["fees"].groupby("student_id").amount_due.sum()).fillna(0)
    assert courses.corr(due, method="spearman") >= 0.4
    assert courses.corr(fee_rows, method="spearman") >= 0.4


def test_enrollment_year_shifts_fee_amounts(school_tables):
    fees = school_tables["fees"].merge(school_tables["students"][["student_id", "enrollment_date"]], on="student_id")
    tuition = fees[fees.fee_type == "tuition"]
    by_year = tuition.groupby(tuition.enrollment_date.dt.year).amount_due.mean()
    assert by_year.iloc[-1] > by_year.iloc[0] * 1.1


def test_harder_levels_give_lower_marks_and_teachers_differ(school_tables):
    m = school_tables["marks"].merge(school_tables["student_courses"], on="student_course_id") \
        .merge(school_tables["courses"], on="course_id")
    pct = 100 * m.score_obtained / m.max_score
    by_level = pct.groupby(m.level).mean()
    assert by_level["Foundation"] - by_level["Honors"] >= 10
    by_teacher = pct.groupby(m.assessed_by_teacher_id).mean()
    assert by_teacher.max() - by_teacher.min() >= 8


def test_assessors_mostly_teach_the_course(school_tables):
    m = school_tables["marks"].merge(school_tables["student_courses"][["student_course_id", "course_id"]])
    pairs = set(map(tuple, school_tables["course_instructors"][["course_id", "teacher_id"]].to_numpy()))
    rate = np.mean([(c, t) in pairs for c, t in zip(m.course_id, m.assessed_by_teacher_id)])
    assert 0.93 <= rate <= 0.97
    courses = school_tables["courses"]
    lead_pairs = list(zip(courses.course_id, courses.lead_teacher_id))
    assert all(p in pairs for p in lead_pairs)


def test_grades_follow_weighted_marks_and_determine_points(school_tables):
    m, sc = school_tables["marks"], school_tables["student_courses"]
    weighted = (m.score_obtained / m.max_score * m.weightage_percent).groupby(m.student_course_id).sum() \
        / m.weightage_percent.groupby(m.student_course_id).sum() * 100
    pct = sc.student_course_id.map(weighted)
    expected = np.select([pct >= 90, pct >= 80, pct >= 70, pct >= 60], ["A", "B", "C", "D"], "F")
    assert (sc.grade_letter.to_numpy() == expected).all()
    assert sc.groupby("grade_letter").grade_points.nunique().max() == 1


def test_fee_amounts_status_and_payment_dates_are_consistent(school_tables):
    f = school_tables["fees"]
    assert (f.amount_paid <= f.amount_due).all()
    assert (f.payment_date.isna() == (f.amount_paid == 0)).all()
    assert (f.status[f.amount_paid == 0] == "unpaid").all()
    assert (f.status[f.amount_paid == f.amount_due] == "paid").all()
    partial = (f.amount_paid > 0) & (f.amount_paid < f.amount_due)
    assert (f.status[partial] == "partial").all()


def test_canteen_is_long_tailed_after_enrollment_and_priced(school_tables):
    c, s = school_tables["canteen_transactions"], school_tables["students"]
    per_student = _per_parent(s, "student_id", c, "student_id")
    assert per_student.max() >= 4 * per_student.mean()
    joined = c.merge(s[["student_id", "enrollment_date"]], on="student_id")
    assert (joined.transaction_date >= joined.enrollment_date).all()
    unit = c.amount / c.quantity
    assert c.groupby("item_description").apply(lambda g: (g.amount / g.quantity).round(2).nunique()).max() == 1
    assert (unit > 0).all()
    assert c.authorized_by_teacher_id.isna().mean() > 0.5  # a nullable FK


def test_transport_and_games(school_tables):
    s, t, g, teachers = (school_tables[k] for k in ("students", "transport_assignments", "games_participation", "teachers"))
    per_student = _per_parent(s, "student_id", t, "student_id")
    assert per_student.min() == 0 and per_student.max() == 2
    assert (t.valid_from < t.valid_to).all()
    assert t.groupby("route_name").monthly_fee.nunique().max() == 1
    sports = set(teachers.teacher_id[teachers.department == "Physical Education"])
    assert g.coach_teacher_id.isin(sports).all()
    assert _per_parent(s, "student_id", g, "student_id").max() >= 4


def test_values_look_real(school_tables):
    s, t, c = school_tables["students"], school_tables["teachers"], school_tables["courses"]
    assert s.enrollment_number.str.fullmatch(r"ENR-\d{4}-\d{5}").all()
    assert (s.enrollment_number.str[4:8].astype(int) == s.enrollment_date.dt.year).all()
    assert t.employee_code.str.fullmatch(r"EMP-\d{4}").all()
    assert c.course_code.str.fullmatch(r"[A-Z]{2,4}-\d{3}").all()
    assert s.phone.str.fullmatch(r"\(\d{3}\) \d{3}-\d{4}").all()
    first_last = (s.first_name + "." + s.last_name).str.lower().str.replace(r"[^a-z.]", "", regex=True)
    assert (s.email.str.split("@").str[0].str.rstrip("0123456789") == first_last).mean() > 0.95
    assert s.email.is_unique and t.email.is_unique


def test_scaling_and_seeding():
    small, again = simulate_school(200, seed=5), simulate_school(200, seed=5)
    for name in small:
        pd.testing.assert_frame_equal(small[name], again[name])
    big = simulate_school(400, seed=5)
    for name in ("students", "fees", "marks", "teachers", "courses"):
        assert 1.6 <= len(big[name]) / len(small[name]) <= 2.4, name
    with pytest.raises(ValueError):
        simulate_school(5)
