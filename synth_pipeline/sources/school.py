"""A seeded simulator of the school-management database (the project's first schema).

Ten tables with the seed document's columns and the patterns that make relational
synthesis hard: a long-tailed fees-per-student count that grows with course load,
course level and teacher leniency driving marks, assessors who mostly teach the course,
grades that follow from weighted marks, fee amounts shifted by enrollment year, canteen
rows with ``amount = quantity * unit price`` dated after enrollment, and nine foreign keys
into ``teachers``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from faker import Faker

METADATA_PATH = Path(__file__).resolve().parents[2] / "data" / "school" / "metadata.json"

DEPARTMENTS = {
    "Mathematics": "MATH", "Science": "SCI", "English": "ENG", "History": "HIST",
    "Computer Science": "CS", "Arts": "ART", "Physical Education": "PE",
}
LEVELS = ["Foundation", "Intermediate", "Advanced", "Honors"]  # easiest -> hardest
COURSE_TOPICS = {
    "MATH": ["Algebra", "Geometry", "Statistics", "Calculus", "Number Theory", "Trigonometry"],
    "SCI": ["Biology", "Chemistry", "Physics", "Earth Science", "Ecology", "Astronomy"],
    "ENG": ["Composition", "Literature", "Rhetoric", "Poetry", "Drama", "Creative Writing"],
    "HIST": ["World History", "Civics", "Economics", "Geography", "Ancient History", "Modern History"],
    "CS": ["Programming", "Data Structures", "Web Design", "Robotics", "Databases", "Networks"],
    "ART": ["Drawing", "Painting", "Music", "Sculpture", "Photography", "Theatre"],
    "PE": ["Fitness", "Team Sports", "Health", "Swimming", "Athletics", "Yoga"],
}
QUALIFICATIONS = ["B.Ed", "M.Ed", "B.Sc", "M.Sc", "M.A", "PhD"]
FEE_BASE = {"tuition": 1200.0, "lab": 200.0, "exam": 120.0, "library": 50.0,
            "sports": 80.0, "transport": 300.0, "activity": 90.0}
MENU = {"Veg Sandwich": 3.5, "Chicken Wrap": 5.0, "Fruit Bowl": 2.75, "Pasta": 4.5,
        "Orange Juice": 1.5, "Milk": 1.0, "Muffin": 1.75, "Rice Bowl": 4.25,
        "Salad": 3.25, "Pizza Slice": 2.5, "Water Bottle": 0.75, "Cookie": 0.5}
ROUTES = {"Route 1 - North Hills": 45.0, "Route 2 - Riverside": 50.0, "Route 3 - Old Town": 40.0,
          "Route 4 - Lakeside": 55.0, "Route 5 - West End": 48.0, "Route 6 - Airport Road": 60.0}
GAMES = {"Football": ["Goalkeeper", "Defender", "Midfielder", "Forward"],
         "Basketball": ["Point Guard", "Shooting Guard", "Forward", "Center"],
         "Cricket": ["Batter", "Bowler", "All-rounder", "Wicket-keeper"],
         "Volleyball": ["Setter", "Libero", "Outside Hitter", "Middle Blocker"],
         "Chess": ["Board 1", "Board 2", "Board 3"], "Athletics": ["Sprinter", "Jumper", "Thrower"],
         "Swimming": ["Freestyle", "Backstroke", "Butterfly"], "Badminton": ["Singles", "Doubles"]}
ASSESSMENTS = {"quiz": (10, 1.0), "assignment": (20, 2.0), "project": (50, 2.5),
               "midterm": (50, 3.0), "final": (100, 4.0)}
TODAY = pd.Timestamp("2025-06-30")


def simulate_school(students: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Return the ten school tables for ``students`` students; same seed, same tables."""
    if students < 20:
        raise ValueError("the school simulator needs at least 20 students")
    sim = _Simulator(students, seed)
    return sim.run()


class _Simulator:
    def __init__(self, students: int, seed: int):
        self.n_students = students
        self.rng = np.random.default_rng(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.scale = students / 1000

    # ------------------------------------------------------------------ utils
    def uuids(self, n: int) -> list[str]:
        raw = self.rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        return [str(uuid.UUID(bytes=bytes(r), version=4)) for r in raw]

    def phones(self, n: int) -> list[str]:
        a = self.rng.integers(201, 990, n)
        b = self.rng.integers(200, 999, n)
        c = self.rng.integers(0, 10000, n)
        return [f"({x}) {y}-{z:04d}" for x, y, z in zip(a, b, c)]

    def emails(self, first: list[str], last: list[str], domain: str) -> list[str]:
        seen: dict[str, int] = {}
        out = []
        for f, l in zip(first, last):
            base = f"{f}.{l}".lower().replace("'", "").replace(" ", "")
            k = seen.get(base, 0)
            seen[base] = k + 1
            out.append(f"{base}{k if k else ''}@{domain}")
        return out

    def days(self, n, low, high):
        return pd.to_timedelta(self.rng.integers(low, high, n), unit="D")

    def run(self) -> dict[str, pd.DataFrame]:
        teachers = self.teachers()
        courses, instructors = self.courses(teachers)
        students = self.students(teachers)
        student_courses, marks = self.enrollments(students, courses, instructors, teachers)
        return {
            "teachers": teachers.drop(columns=["x_leniency"]),
            "courses": courses,
            "course_instructors": instructors,
            "students": students.drop(columns=["x_ability"]),
            "student_courses": student_courses,
            "marks": marks,
            "fees": self.fees(students, student_courses, teachers),
            "canteen_transactions": self.canteen(students, teachers),
            "transport_assignments": self.transport(students, teachers),
            "games_participation": self.games(students, teachers),
        }

    # --------------------------------------------------------------- teachers
    def teachers(self) -> pd.DataFrame:
        rng, n = self.rng, max(14, round(60 * self.scale))
        depts = list(DEPARTMENTS)
        dept = np.array(depts)[np.arange(n) % len(depts)]
        rng.shuffle(dept)
        first = [self.fake.first_name() for _ in range(n)]
        last = [self.fake.last_name() for _ in range(n)]
        experience = np.clip(rng.gamma(2.2, 5.0, n).round(), 0, 40).astype(int)
        hire = TODAY - pd.to_timedelta(experience * 365 + rng.integers(0, 300, n), unit="D")
        qual_p = np.where(experience[:, None] > 12, [.1, .25, .1, .25, .15, .15], [.3, .15, .25, .15, .1, .05])
        qual = [rng.choice(QUALIFICATIONS, p=p / p.sum()) for p in qual_p]
        return pd.DataFrame({
            "teacher_id": self.uuids(n),
            "employee_code": [f"EMP-{i:04d}" for i in rng.permutation(np.arange(1, n + 1) * 3 + 10)],
            "first_name": first, "last_name": last,
            "qualification": qual, "experience_years": experience, "department": dept,
            "phone": self.phones(n), "email": self.emails(first, last, "school.edu"),
            "hire_date": hire.normalize(),
            "status": rng.choice(["active", "on_leave", "retired"], n, p=[.88, .08, .04]),
            "x_leniency": rng.normal(0, 5, n),
        })

    # ---------------------------------------------------------------- courses
    def courses(self, teachers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng, n = self.rng, max(10, round(40 * self.scale))
        depts = list(DEPARTMENTS)
        rows, instructor_rows, used = [], [], set()
        for i in range(n):
            dept = depts[i % len(depts)]
            prefix = DEPARTMENTS[dept]
            level = int(rng.choice(4, p=[.3, .3, .25, .15]))
            number = 100 * (level + 1) + int(rng.integers(1, 60))
            while (prefix, number) in used:
                number += 1
            used.add((prefix, number))
            topic = rng.choice(COURSE_TOPICS[prefix])
            pool = teachers.index[teachers.department == dept].to_numpy()
            k = min(len(pool), int(rng.choice([1, 2, 3], p=[.35, .45, .2])))
            chosen = rng.choice(pool, k, replace=False)
            cid = self.uuids(1)[0]
            year = int(rng.choice([2022, 2023, 2024]))
            for j, t in enumerate(chosen):
                instructor_rows.append({
                    "course_instructor_id": None, "course_id": cid, "teacher_id": teachers.teacher_id[t],
                    "academic_year": f"{year}-{year + 1}", "term": rng.choice(["Fall", "Spring"]),
                    "role": "lead" if j == 0 else rng.choice(["co-instructor", "assistant"], p=[.4, .6]),
                })
            rows.append({
                "course_id": cid, "course_code": f"{prefix}-{number}",
                "name": f"{topic} {['I', 'II', 'III', 'IV'][level]}",
                "description": f"{LEVELS[level]} course in {topic.lower()} offered by the {dept} department.",
                "credits": int(rng.choice([2, 3, 4, 5], p=[.2, .4, .3, .1])) + (level >= 2),
                "level": LEVELS[level], "department": dept,
                "is_active": bool(rng.random() < .9),
                "lead_teacher_id": teachers.teacher_id[chosen[0]],
            })
        instructors = pd.DataFrame(instructor_rows)
        instructors["course_instructor_id"] = self.uuids(len(instructors))
        return pd.DataFrame(rows), instructors

    # --------------------------------------------------------------- students
    def students(self, teachers: pd.DataFrame) -> pd.DataFrame:
        rng, n, fake = self.rng, self.n_students, self.fake
        enroll = pd.Timestamp("2019-08-15") + self.days(n, 0, 5 * 365)
        years = enroll.year.to_numpy()
        seq = rng.permutation(n) + 1
        age = rng.integers(5, 17, n)
        dob = enroll - pd.to_timedelta(age * 365 + rng.integers(0, 365, n), unit="D")
        gender = rng.choice(["Female", "Male", "Non-binary"], n, p=[.49, .49, .02])
        first = [fake.first_name_female() if g == "Female" else fake.first_name_male() for g in gender]
        last = [fake.last_name() for _ in range(n)]
        guardian_last = np.where(rng.random(n) < .8, last, [fake.last_name() for _ in range(n)])
        guardian = [f"{fake.first_name()} {gl}" for gl in guardian_last]
        states = rng.choice(["CA", "OR", "WA", "NV", "AZ"], n, p=[.5, .15, .15, .1, .1])
        homeroom_pool = teachers.teacher_id[teachers.status != "retired"].to_numpy()
        weights = rng.gamma(3.0, 1.0, len(homeroom_pool))
        status = np.where(years <= 2020, rng.choice(["graduated", "active", "transferred"], n, p=[.6, .3, .1]),
                          rng.choice(["active", "transferred", "withdrawn"], n, p=[.9, .06, .04]))
        return pd.DataFrame({
            "student_id": self.uuids(n),
            "enrollment_number": [f"ENR-{y}-{s:05d}" for y, s in zip(years, seq)],
            "first_name": first, "last_name": last,
            "date_of_birth": dob.normalize(), "gender": gender,
            "address_line1": [fake.street_address() for _ in range(n)],
            "address_line2": [fake.secondary_address() if r < .3 else None for r in rng.random(n)],
            "city": [fake.city() for _ in range(n)], "state": states,
            "postal_code": [fake.postcode() for _ in range(n)],
            "phone": self.phones(n), "email": self.emails(first, last, "students.school.edu"),
            "guardian_name": guardian, "guardian_contact": self.phones(n),
            "enrollment_date": enroll.normalize(), "status": status,
            "homeroom_teacher_id": rng.choice(homeroom_pool, n, p=weights / weights.sum()),
            "x_ability": rng.normal(0, 1, n),
        })

    # ------------------------------------------------- enrollments and marks
    def enrollments(self, students, courses, instructors, teachers):
        rng = self.rng
        n_courses = np.clip(rng.negative_binomial(6, 6 / 10, len(students)) + 1, 1, len(courses))
        level_idx = courses.level.map({l: i for i, l in enumerate(LEVELS)}).to_numpy()
        popularity = rng.gamma(2.0, 1.0, len(courses)) * np.where(level_idx <= 1, 1.5, 1.0)
        sc_rows = []
        for s, k in zip(students.itertuples(), n_courses):
            chosen = rng.choice(len(courses), k, replace=False, p=popularity / popularity.sum())
            start = s.enrollment_date.year
            for c in chosen:
                year = int(min(start + rng.integers(0, 3), 2024))
                sc_rows.append((s.student_id, c, year, rng.choice(["Fall", "Spring"]), s.x_ability))
        sc = pd.DataFrame(sc_rows, columns=["student_id", "x_course", "x_year", "term", "x_ability"])
        sc["student_course_id"] = self.uuids(len(sc))
        sc["course_id"] = courses.course_id.to_numpy()[sc.x_course]
        sc["academic_year"] = [f"{y}-{y + 1}" for y in sc.x_year]
        sc["enrollment_status"] = np.where(sc.x_year >= 2024, rng.choice(["in_progress", "completed"], len(sc), p=[.7, .3]),
                                           rng.choice(["completed", "withdrawn"], len(sc), p=[.96, .04]))

        marks = self._marks(sc, courses, level_idx, instructors, teachers)
        weighted = (marks.score_obtained / marks.max_score * marks.weightage_percent).groupby(marks.student_course_id).sum() \
            / marks.weightage_percent.groupby(marks.student_course_id).sum()
        pct = 100 * sc.student_course_id.map(weighted).to_numpy()
        letters = np.select([pct >= 90, pct >= 80, pct >= 70, pct >= 60], ["A", "B", "C", "D"], "F")
        sc["grade_letter"] = letters
        sc["grade_points"] = pd.Series(letters).map({"A": 4.0, "B": 3.0, "C": 2.0, "D": 1.0, "F": 0.0}).to_numpy()
        sc = sc[["student_course_id", "student_id", "course_id", "academic_year", "term", "enrollment_status",
                  "grade_letter", "grade_points"]]
        return sc, marks

    def _marks(self, sc, courses, level_idx, instructors, teachers):
        rng = self.rng
        by_course = instructors.groupby("course_id").teacher_id.apply(list).to_dict()
        lenient = dict(zip(teachers.teacher_id, teachers.x_leniency))
        all_teachers = teachers.teacher_id.to_numpy()
        rows = []
        types = list(ASSESSMENTS)
        for r in sc.itertuples():
            cid = courses.course_id.iat[r.x_course]
            k = int(rng.choice([3, 4, 5, 6], p=[.2, .4, .3, .1]))
            kinds = sorted(rng.choice(types, k, replace=True), key=types.index)
            weights = np.array([ASSESSMENTS[t][1] for t in kinds])
            weights = np.round(100 * weights / weights.sum(), 1)
            term_start = pd.Timestamp(f"{r.x_year}-{'09' if r.term == 'Fall' else '02'}-01")
            for t, w in zip(kinds, weights):
                staff = by_course[cid]
                assessor = rng.choice(staff) if rng.random() < .95 else rng.choice(all_teachers)
                pct = 85 - 7 * level_idx[r.x_course] + 7 * r.x_ability + lenient[assessor] + rng.normal(0, 7)
                max_score = ASSESSMENTS[t][0]
                rows.append((r.student_course_id, assessor, t, max_score,
                             round(float(np.clip(pct, 0, 100)) / 100 * max_score, 1), float(w),
                             term_start + pd.Timedelta(days=int(rng.integers(7, 120)))))
        marks = pd.DataFrame(rows, columns=["student_course_id", "assessed_by_teacher_id", "assessment_type",
                                            "max_score", "score_obtained", "weightage_percent", "assessment_date"])
        marks.insert(0, "mark_id", self.uuids(len(marks)))
        return marks

    # ------------------------------------------------------------------- fees
    def fees(self, students, student_courses, teachers):
        rng, n = self.rng, len(students)
        courses_per = student_courses.groupby("student_id").size().reindex(students.student_id, fill_value=0).to_numpy()
        count = np.round(0.6 * courses_per + rng.binomial(10, 0.19, n)).astype(int)
        heavy = rng.random(n) < .025
        count[heavy] += rng.integers(4, 9, heavy.sum())
        count = np.clip(count, 1, 15)
        count[rng.random(n) < .01] = 0
        owner = np.repeat(np.arange(n), count)
        m = len(owner)
        kinds = np.array(list(FEE_BASE))
        first = np.zeros(m, dtype=bool)
        first[np.r_[0, np.cumsum(count)[:-1]][count > 0]] = True
        fee_type = np.where(first, "tuition", rng.choice(kinds, m, p=[.3, .15, .15, .1, .1, .1, .1]))
        year = students.enrollment_date.dt.year.to_numpy()[owner]
        due = np.array([FEE_BASE[t] for t in fee_type]) * (1 + 0.06 * (year - 2019)) * rng.lognormal(0, .12, m)
        due = np.round(due, 2)
        state = rng.choice(["paid", "partial", "unpaid"], m, p=[.7, .15, .15])
        paid = np.where(state == "paid", due, np.where(state == "partial", np.round(due * rng.uniform(.2, .9, m), 2), 0.0))
        due_date = students.enrollment_date.to_numpy()[owner] + self.days(m, 10, 4 * 365).to_numpy()
        payment = pd.Series(due_date + self.days(m, -20, 45).to_numpy()).where(paid > 0)
        approvers = teachers.teacher_id[teachers.department.isin(["Mathematics", "English", "History"])].to_numpy()
        return pd.DataFrame({
            "fee_id": self.uuids(m), "student_id": students.student_id.to_numpy()[owner],
            "fee_type": fee_type, "amount_due": due, "amount_paid": paid,
            "due_date": pd.to_datetime(due_date), "payment_date": payment,
            "payment_mode": pd.Series(rng.choice(["cash", "card", "bank_transfer", "online"], m, p=[.2, .3, .2, .3])).where(paid > 0),
            "status": state, "approved_by_teacher_id": rng.choice(approvers, m),
        })

    # ---------------------------------------------------------------- canteen
    def canteen(self, students, teachers):
        rng, n = self.rng, len(students)
        count = rng.negative_binomial(1.1, 1.1 / (1.1 + 8), n)
        owner = np.repeat(np.arange(n), count)
        m = len(owner)
        enroll = students.enrollment_date.to_numpy()[owner]
        span = (TODAY.to_numpy() - enroll) / np.timedelta64(1, "D")
        date = enroll + pd.to_timedelta((rng.random(m) * span).astype(int), unit="D").to_numpy()
        items = np.array(list(MENU))
        item = rng.choice(items, m)
        qty = rng.choice([1, 2, 3, 4], m, p=[.65, .22, .09, .04])
        amount = np.round(qty * np.array([MENU[i] for i in item]), 2)
        authorizer = pd.Series(rng.choice(teachers.teacher_id.to_numpy(), m)).where(rng.random(m) < .25)
        return pd.DataFrame({
            "transaction_id": self.uuids(m), "student_id": students.student_id.to_numpy()[owner],
            "transaction_date": pd.to_datetime(date), "item_description": item, "quantity": qty,
            "amount": amount, "payment_method": rng.choice(["cash", "card", "wallet"], m, p=[.4, .35, .25]),
            "authorized_by_teacher_id": authorizer,
        })

    # -------------------------------------------------------------- transport
    def transport(self, students, teachers):
        rng, n, fake = self.rng, len(students), self.fake
        count = rng.choice([0, 1, 2], n, p=[.55, .35, .10])
        owner = np.repeat(np.arange(n), count)
        m = len(owner)
        route = rng.choice(list(ROUTES), m)
        start = students.enrollment_date.to_numpy()[owner] + self.days(m, 0, 700).to_numpy()
        letters = rng.integers(0, 26, size=(m, 2))
        plates = [f"SCH-{chr(65 + a)}{chr(65 + b)}-{i:04d}" for (a, b), i in zip(letters, rng.permutation(m) + 100)]
        incharge = teachers.teacher_id.sample(6, random_state=int(rng.integers(1 << 31))).to_numpy()
        return pd.DataFrame({
            "transport_id": self.uuids(m), "student_id": students.student_id.to_numpy()[owner],
            "route_name": route, "pickup_point": [f"{fake.street_name()} Stop" for _ in range(m)],
            "dropoff_point": rng.choice(["Main Campus", "East Campus", "Sports Complex"], m, p=[.7, .2, .1]),
            "vehicle_number": plates, "driver_name": [fake.name() for _ in range(m)],
            "driver_contact": self.phones(m), "valid_from": pd.to_datetime(start),
            "valid_to": pd.to_datetime(start + self.days(m, 90, 366).to_numpy()),
            "monthly_fee": [ROUTES[r] for r in route],
            "route_incharge_teacher_id": incharge[[list(ROUTES).index(r) for r in route]],
        })

    # ------------------------------------------------------------------ games
    def games(self, students, teachers):
        rng, n = self.rng, len(students)
        count = np.minimum(rng.poisson(1.1, n), 6)
        owner = np.repeat(np.arange(n), count)
        m = len(owner)
        game = rng.choice(list(GAMES), m)
        coaches = teachers.teacher_id[teachers.department == "Physical Education"].to_numpy()
        level = rng.choice(["School", "District", "State", "National"], m, p=[.5, .3, .15, .05])
        return pd.DataFrame({
            "games_participation_id": self.uuids(m), "student_id": students.student_id.to_numpy()[owner],
            "game_name": game, "team_name": [f"{g} {rng.choice(['Juniors', 'Seniors', 'Varsity'])}" for g in game],
            "level": level, "position_played": [rng.choice(GAMES[g]) for g in game],
            "achievement": pd.Series(rng.choice(["Winner", "Runner-up", "Participant", "Best Player"], m,
                                                p=[.15, .2, .55, .1])).where(rng.random(m) < .8),
            "season_year": rng.integers(2019, 2026, m),
            "coach_teacher_id": rng.choice(coaches, m),
            "manager_teacher_id": rng.choice(teachers.teacher_id.to_numpy(), m),
        })
