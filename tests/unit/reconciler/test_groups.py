"""Group creation and the wizard's rules, pure (services/reconciler/groups.py, wizard.py; seeds 002–003)."""

from __future__ import annotations

import dataclasses

from services.reconciler import groups, wizard
from shared.reconcile import Directory, DirectoryPerson, KindResult, Unmatched, reconcile
from shared.timetable import Membership, Timetable, derive_courses
from tests.factory import make_school


def school_and_directory() -> tuple[Timetable, Directory]:
    tt = make_school("XS", 3, year=2026).timetable
    persons = [DirectoryPerson(f"t{t.ident}", "teacher", t.last_name, t.first_name) for t in tt.teachers.values()]
    persons += [DirectoryPerson(f"s{s.ident}", "student", s.last_name, s.first_name, s.birth_date)
                for s in tt.students.values()]
    return tt, Directory(tuple(persons))


def everything(tt: Timetable) -> wizard.Selection:
    return wizard.default_selection(tt, derive_courses(tt), None, keep_previous=False)


def test_the_same_export_again_creates_and_deletes_nothing() -> None:
    tt, directory = school_and_directory()
    results = reconcile(tt, directory)
    courses = derive_courses(tt)
    want_g, want_m = groups.desired(tt, results, everything(tt), courses)
    first = groups.diff({}, [], want_g, want_m)
    assert len(first.create_groups) == len(want_g) and len(first.create_members) == len(want_m)
    assert {g.kind for g in want_g.values()} == {"class", "part", "group", "course"}
    again = groups.diff(want_g, want_m.keys(), want_g, want_m)
    assert not (again.create_groups or again.update_groups or again.delete_groups or again.create_members
                or again.delete_members)
    assert [a["success"] for a in again.actions()] == [0, 0, 0, 0]


def test_only_matched_people_become_members_and_teachers_join_the_courses_they_teach() -> None:
    tt, directory = school_and_directory()
    results = reconcile(tt, directory)
    dropped_student = next(iter(tt.students))
    results["students"] = KindResult({k: v for k, v in results["students"].matched.items() if k != dropped_student})
    courses = derive_courses(tt)
    _, members = groups.desired(tt, results, everything(tt), courses)
    assert not any(m.file_ident == dropped_student and m.person_kind == "student" for m in members.values())
    course = next(c for c in courses if c.teachers)
    teachers = {m.person_id for m in members.values() if m.group_key == f"course:{course.key}"}
    assert teachers == {f"t{t}" for t in course.teachers}


def test_a_moved_student_changes_exactly_their_memberships() -> None:
    tt, directory = school_and_directory()
    courses = derive_courses(tt)
    results = reconcile(tt, directory)
    before_g, before_m = groups.desired(tt, results, everything(tt), courses)
    student = next(s for s in tt.students.values() if len(s.classes) == 1)
    other = next(c for c in tt.classes.values() if c.ident != student.classes[0].ident)
    tt.students[student.ident] = dataclasses.replace(
        student, classes=(Membership(other.ident, student.classes[0].start, student.classes[0].end),), parts=())
    after_g, after_m = groups.desired(tt, reconcile(tt, directory), everything(tt), courses)
    d = groups.diff(before_g, before_m.keys(), after_g, after_m)
    assert d.create_members and d.delete_members and not (d.create_groups or d.delete_groups)
    assert {m.file_ident for m in d.create_members} == {student.ident}
    assert {before_m[k].file_ident for k in d.delete_members} == {student.ident}
    assert any(m.group_key == f"class:{other.ident}" for m in d.create_members)


def test_only_the_groups_whose_members_changed_are_diffed_member_by_member() -> None:
    """A re-import reads and diffs the memberships of the groups whose digest changed — and finds exactly
    what a diff of every membership finds."""
    tt, directory = school_and_directory()
    courses = derive_courses(tt)
    before_g, before_m = groups.desired(tt, reconcile(tt, directory), everything(tt), courses)
    assert groups.changed_groups(before_g, before_g) == set()
    student = next(s for s in tt.students.values() if len(s.classes) == 1)
    other = next(c for c in tt.classes.values() if c.ident != student.classes[0].ident)
    tt.students[student.ident] = dataclasses.replace(
        student, classes=(Membership(other.ident, student.classes[0].start, student.classes[0].end),))
    after_g, after_m = groups.desired(tt, reconcile(tt, directory), everything(tt), courses)
    changed = groups.changed_groups(before_g, after_g)
    assert {f"class:{student.classes[0].ident}", f"class:{other.ident}"} <= changed
    touched = {m.group_key for m in (*before_m.values(), *after_m.values()) if m.file_ident == student.ident}
    assert changed <= touched  # a group is diffed only if the moved student is (or was) in it
    partial = groups.diff(before_g, [k for k, m in before_m.items() if m.group_key in changed], after_g,
                          {k: m for k, m in after_m.items() if m.group_key in changed})
    full = groups.diff(before_g, before_m.keys(), after_g, after_m)
    assert (sorted(m.key for m in partial.create_members), partial.delete_members) == (
        sorted(m.key for m in full.create_members), full.delete_members)
    # groups stored before digests existed are diffed in full once
    legacy = {k: dataclasses.replace(g, members_fp=None) for k, g in before_g.items()}
    assert groups.changed_groups(legacy, after_g) == set(after_g)


def test_accepted_overrides_win_over_the_rules_and_refused_people_stay_unmatched() -> None:
    tt, directory = school_and_directory()
    results = reconcile(tt, directory)
    a, b, c = sorted(results["teachers"].matched)[:3]
    results["teachers"] = KindResult({k: v for k, v in results["teachers"].matched.items() if k != a},
                                     dict(results["teachers"].rules), [Unmatched(a, "not_found")])
    decisions = {"teachers": {a: wizard.Decision("override", f"t{a}"), b: wizard.Decision("refuse"),
                              c: wizard.Decision("override", "nobody")}}
    out = wizard.apply_decisions(results, directory, decisions)["teachers"]
    assert out.matched[a] == f"t{a}" and out.rules[a] == "manual"
    assert b not in out.matched and any(u.ident == b and u.reason == "refused" for u in out.unmatched)
    assert out.matched[c] == f"t{c}"  # an override naming no directory person: the rules decide
    # An override onto an entry the rules gave someone else: never two people on one entry.
    stolen = wizard.apply_decisions(results, directory, {"teachers": {a: wizard.Decision("override", f"t{c}")}})
    assert stolen["teachers"].matched[a] == f"t{c}" and c not in stolen["teachers"].matched


def test_automatic_imports_keep_only_selected_courses_and_new_ones_wait() -> None:
    tt, _ = school_and_directory()
    courses = derive_courses(tt)
    stored: dict[str, dict[str, bool]] = {"courses": {c.key: True for c in courses[1:]}}
    stored["courses"][courses[1].key] = False
    kept, waiting = wizard.kept_courses(courses, stored, unknown_wait=True)
    assert waiting == [courses[0]] and courses[1] not in kept and len(kept) == len(courses) - 2
    subject_off = {**stored, "subjects": {courses[2].subject: False}}
    kept, _ = wizard.kept_courses(courses, subject_off, unknown_wait=True)
    assert all(c.subject != courses[2].subject for c in kept)
    manual, none_waiting = wizard.kept_courses(courses, everything(tt), unknown_wait=False)
    assert manual == courses and not none_waiting
    assert wizard.item_state(stored, "courses", courses[0].key) == "new"
    assert wizard.item_state(stored, "courses", courses[1].key) == "deactivated"
    assert wizard.item_state(stored, "courses", courses[2].key) == "known"
