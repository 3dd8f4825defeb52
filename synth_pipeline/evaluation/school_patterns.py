"""The school database's planted patterns, real vs synthetic (figures for people, never asserted).

    python -m synth_pipeline.evaluation.school_patterns OUT   # OUT holds real.duckdb and synthetic.duckdb
"""
import sys

import duckdb
from scipy.stats import spearmanr


def figures(path):
    con = duckdb.connect(path, read_only=True)
    per = con.execute("""
        SELECT s.student_id, (SELECT count(*) FROM student_courses sc WHERE sc.student_id = s.student_id) AS courses,
               (SELECT coalesce(sum(amount_due), 0) FROM fees f WHERE f.student_id = s.student_id) AS due
        FROM students s""").df()
    rho = spearmanr(per.courses, per.due).statistic
    levels = con.execute("""
        SELECT c.level, avg(100.0 * m.score_obtained / m.max_score) AS pct
        FROM marks m JOIN student_courses sc USING (student_course_id) JOIN courses c ON c.course_id = sc.course_id
        GROUP BY c.level ORDER BY pct""").df()
    gap = levels.pct.max() - levels.pct.min()
    rate = con.execute("""
        SELECT avg(CASE WHEN EXISTS (SELECT 1 FROM course_instructors ci WHERE ci.course_id = sc.course_id
                                     AND ci.teacher_id = m.assessed_by_teacher_id) THEN 1 ELSE 0 END)
        FROM marks m JOIN student_courses sc USING (student_course_id)""").fetchone()[0]
    max_fees = con.execute("SELECT max(n) FROM (SELECT count(*) n FROM fees GROUP BY student_id)").fetchone()[0]
    return {"spearman_courses_due": round(float(rho), 3), "level_gap": round(float(gap), 2), "levels": dict(zip(levels.level, levels.pct.round(1))),
            "assessor_teaches_course": round(rate, 3), "max_fees_per_student": max_fees}

if __name__ == "__main__":
    out = sys.argv[1]
    for name in ("real", "synthetic"):
        print(name, figures(f"{out}/{name}.duckdb"))
