#!/usr/bin/env python3
"""The referee's own rules (tools/reference/reference.py): what counts as agreement, what a known-difference
rule may excuse, and how the kernel's health is judged. No kernel or VM needed."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "reference"))
import reference as ref  # noqa: E402

RULES_TEXT = """# comment
Rule: r1
Program: prog
Steps: x y
Reason: the two sides differ on x and y
  for a documented reason
"""


def rules(text=RULES_TEXT):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        return ref.load_known(f.name)
    finally:
        os.unlink(f.name)


L = ["step a: ret=0 errno=0", "step x: ret=-1 errno=EINVAL", "step y: ret=-1 errno=ENOENT", "step b: ret=0 errno=0"]
U = ["step a: ret=0 errno=0", "step x: ret=0 errno=0", "step y: ret=0 errno=0", "step b: ret=0 errno=0"]


class Compare(unittest.TestCase):
    def test_identical_agree(self):
        v = ref.compare_program("p", L, L, 0, 0, [])
        self.assertEqual((v.verdict, v.compared), ("agree", 4))

    def test_crash_after_the_last_step_is_a_failure(self):
        for rc in (139, -11, 124, 143, -1):
            self.assertEqual(ref.compare_program("p", L, L, 0, rc, []).verdict, "DIFFER", rc)
            self.assertEqual(ref.compare_program("p", L, L, rc, 0, []).verdict, "DIFFER", rc)

    def test_exit_status_compared(self):
        self.assertEqual(ref.compare_program("p", L, L, 1, 0, []).verdict, "DIFFER")
        self.assertEqual(ref.compare_program("p", L, L, 1, 1, []).verdict, "agree")

    def test_rule_excuses_only_its_steps_and_counts(self):
        rs = rules()
        v = ref.compare_program("prog", L, U, 0, 0, rs)
        self.assertEqual(v.verdict, "agree*")
        self.assertEqual(v.excused, {rs[0]: 2})
        self.assertEqual(v.compared, 4)
        # The same lines in another program are not excused.
        self.assertEqual(ref.compare_program("other", L, U, 0, 0, rs).verdict, "DIFFER")
        # A difference outside the named steps is not excused.
        U2 = U[:3] + ["step b: ret=-1 errno=EIO"]
        self.assertEqual(ref.compare_program("prog", L, U2, 0, 0, rs).verdict, "DIFFER")

    def test_rule_step_missing_on_one_side_is_a_failure(self):
        rs = rules()
        self.assertEqual(ref.compare_program("prog", L, [U[0], U[3]], 0, 0, rs).verdict, "DIFFER")
        self.assertEqual(ref.compare_program("prog", [], U, 0, 0, rs).verdict, "DIFFER")
        # Nothing at all on either side is never an agreement.
        self.assertEqual(ref.compare_program("p", [], [], 0, 0, []).verdict, "DIFFER")

    def test_differing_names_at_one_position_are_not_excused(self):
        rs = rules()
        swapped = [U[0], U[2], U[1], U[3]]
        self.assertEqual(ref.compare_program("prog", L, swapped, 0, 0, rs).verdict, "DIFFER")

    def test_exit_status_excused_only_through_fail_lines_of_excused_steps(self):
        rs = rules()
        linux = L + ["FAIL x: expected ret=0"]
        self.assertEqual(ref.compare_program("prog", linux, U, 1, 0, rs).verdict, "agree*")
        self.assertEqual(ref.compare_program("prog", L + ["FAIL b: expected"], U, 1, 0, rs).verdict, "DIFFER")
        self.assertEqual(ref.compare_program("prog", L, U, 1, 0, rs).verdict, "DIFFER")  # no FAIL line
        fatal = linux + ["FATAL x: cannot continue"]
        self.assertEqual(ref.compare_program("prog", fatal, U, 1, 0, rs).verdict, "DIFFER")
        self.assertEqual(ref.compare_program("prog", linux, U, 2, 0, rs).verdict, "DIFFER")


class Rules(unittest.TestCase):
    def test_parse(self):
        (r,) = rules()
        self.assertEqual((r.name, r.program, r.steps), ("r1", "prog", {"x", "y"}))
        self.assertEqual(r.reason, "the two sides differ on x and y for a documented reason")

    def test_globs_and_missing_fields_are_errors(self):
        with self.assertRaises(SystemExit):
            rules("Rule: g\nProgram: prog\nSteps: v62_*\nReason: r\n")
        with self.assertRaises(SystemExit):
            rules("Rule: g\nProgram: abi_*\nSteps: x\nReason: r\n")
        with self.assertRaises(SystemExit):
            rules("Rule: g\nProgram: prog\nSteps: x\n")

    def test_project_file_parses(self):
        rs = ref.load_known()
        self.assertTrue(rs)
        for r in rs:
            self.assertTrue(r.reason and r.steps)


class Kernel(unittest.TestCase):
    def test_health(self):
        h = ref.KernelHealth()
        self.assertTrue(h.problems())  # no @@DONE, no taint reported
        h.done, h.tainted = True, 0
        self.assertEqual(h.problems(), [])
        h.tainted = 512
        self.assertTrue(h.problems())
        h.tainted, h.lines = 0, ["WARNING: CPU: 0 PID: 1 at mm/gup.c:1 x"]
        self.assertTrue(h.problems())


class Console(unittest.TestCase):
    CLEAN = "\n".join([
        "[    0.000000] Linux version 7.2.13", "@@KERNEL 7.2.13-amd64", "@@BEGIN p1", "step a: ret=0 errno=0",
        "result: PASS", "@@END p1 rc=0", "@@BEGIN p2", "step b: ret=-1 errno=EINVAL", "@@END p2 rc=139",
        "@@TAINTED 0", "@@DONE"])

    def test_jobs_and_a_clean_kernel(self):
        jobs, release, health = ref.parse_console(self.CLEAN)
        self.assertEqual(release, "7.2.13-amd64")
        self.assertEqual(jobs["p1"], (["step a: ret=0 errno=0", "result: PASS"], 0))
        self.assertEqual(jobs["p2"][1], 139)
        self.assertEqual(health.problems(), [])

    def test_kernel_problems_fail(self):
        warn = self.CLEAN.replace("@@TAINTED 0", "@@KLOG [ 3.1] WARNING: CPU: 1 PID: 9 at x.c:1 f\n@@TAINTED 512")
        _, _, health = ref.parse_console(warn)
        self.assertEqual(health.tainted, 512)
        self.assertEqual(len(health.lines), 1)
        self.assertTrue(health.problems())
        # A panic outside any job, and a VM that never finished its plan.
        _, _, health = ref.parse_console("@@BEGIN p1\nstep a: x\n@@END p1 rc=0\nKernel panic - not syncing: x\n")
        self.assertFalse(health.done)
        self.assertTrue(any("Kernel panic" in ln for ln in health.lines))

    def boot_with_consoles(self, consoles):
        """ref.boot() with each VM run replaced by the next console text."""
        left = list(consoles)

        def fake_boot_once(bzimage, initrd, console_log, timeout):
            text = left.pop(0)
            with open(console_log, "w") as f:
                f.write(text)
            return ref.parse_console(text)

        saved = ref.boot_once
        ref.boot_once = fake_boot_once
        try:
            with tempfile.TemporaryDirectory() as d:
                return ref.boot("bz", "initrd", os.path.join(d, "console.log"), 1), left
        finally:
            ref.boot_once = saved

    CRASH = "[    2.23] Oops: int3: 0000 [#1] SMP NOPTI\n[    2.24] Kernel panic - not syncing: x"

    def test_a_boot_that_crashes_before_any_job_is_booted_again_and_named(self):
        (jobs, _, health), left = self.boot_with_consoles([self.CRASH, self.CLEAN])
        self.assertEqual(left, [])
        self.assertEqual(jobs["p1"][1], 0)
        self.assertEqual(health.problems(), [])
        self.assertEqual(len(health.boot_crashes), 1)
        self.assertIn("Oops: int3", health.boot_crashes[0])

    def test_boot_crashes_are_retried_a_bounded_number_of_times_and_then_fail(self):
        (jobs, _, health), left = self.boot_with_consoles([self.CRASH] * (ref.BOOT_RETRIES + 2))
        self.assertEqual(len(left), 1)  # one console never asked for
        self.assertEqual(jobs, {})
        self.assertTrue(health.problems())

    def test_a_crash_after_a_job_began_is_never_retried(self):
        began = "@@BEGIN p1\nstep a: ret=0 errno=0\n" + self.CRASH
        (jobs, _, health), left = self.boot_with_consoles([began, self.CLEAN])
        self.assertEqual(left, [self.CLEAN])
        self.assertEqual(jobs["p1"][1], -1)
        self.assertTrue(health.problems())

    def test_unfinished_job(self):
        jobs, _, _ = ref.parse_console("@@BEGIN p1\nstep a: ret=0 errno=0\n")
        self.assertEqual(jobs["p1"][1], -1)
        self.assertEqual(ref.compare_program("p1", jobs["p1"][0], jobs["p1"][0], -1, 0, []).verdict, "DIFFER")


class Errno(unittest.TestCase):
    def test_table_names_every_number_once(self):
        names = ref_errno_names()
        self.assertGreaterEqual(len(names), 130)
        self.assertEqual(names[22], "EINVAL")
        self.assertEqual(names[11], "EAGAIN")  # the first name, not the EWOULDBLOCK alias
        self.assertEqual(len(set(names.values())), len(names))


def ref_errno_names():
    import re
    text = open(os.path.join(ref.ABI_DIR, "abi.h")).read()
    return {int(n): s for n, s in re.findall(r'\[(\d+)\] = "(E[A-Z0-9]+)"', text)}


if __name__ == "__main__":
    unittest.main()
