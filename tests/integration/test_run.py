"""Running jobs: output, exit statuses, timeouts, runtime failures and the
events of a run."""

import re
import unittest

import support
from support import event_types, job_yaml, sh_job


def script_job(job):
    return sh_job(
        job,
        "${args.script}",
        [{"name": "script", "type": "string", "required": True}],
        stop_timeout="2s",
    )


def greet_job(job):
    return job_yaml(
        job,
        ["sh", "-c", 'echo "Hello, $FLWD_ARG_NAME"'],
        [
            {"name": "name", "type": "string", "required": True},
            {"name": "times", "type": "integer", "default": 1},
        ],
        description="Greets someone from inside a container.",
        stop_timeout="10s",
    )


class Run:
    JOBS = {
        "greet": greet_job,
        "script": script_job,
        "missing": lambda job: job_yaml(job, ["/nonexistent"]),
        "not-executable": lambda job: job_yaml(job, ["/etc/passwd"]),
        "image-command": lambda job: job_yaml(job, None),
        "run-id": lambda job: job_yaml(job, ["sh", "-c", 'echo "$FLWD_RUN_ID ${run.id}"']),
        "timeout": lambda job: sh_job(job, "echo ready; sleep 300", timeout="1s", stop_timeout="1s"),
    }

    def script(self, text, flags=("-q",)):
        return self.run_job("script", "--script", text, flags=flags)

    def test_greeting(self):
        result = self.run_job("greet", "--name", "Alice")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "Hello, Alice\n")
        self.assertEqual(result.err, "")

    def test_greeting_run_command(self):
        result = self.flwd("run", self.job("greet"), "--name", "Bob", runtime=self.runtime)
        self.assertExit(result, 0)
        self.assertEqual(result.out, "Hello, Bob\n")
        self.assertEqual(result.job_stderr(), b"")

    def test_exit_statuses(self):
        for status in (0, 1, 2, 124, 125, 126, 127, 128, 143, 255):
            with self.subTest(status=status):
                result = self.script(f"exit {status}")
                self.assertExit(result, status)
                self.assertEqual(result.err, "", result.describe())

    def test_command_not_found_in_job(self):
        # The job ran and its shell failed: 127 is the job's own status.
        result = self.script("/nonexistent")
        self.assertExit(result, 127)
        self.assertNotIn("flwd: E_OCI", result.err)

    def test_streams_kept_apart(self):
        result = self.script("echo out; echo err >&2; echo out2; exit 3")
        self.assertExit(result, 3)
        self.assertEqual(result.stdout, b"out\nout2\n")
        self.assertEqual(result.stderr, b"err\n")

    def test_missing_entrypoint(self):
        result = self.run_job("missing", flags=("--events",))
        self.assertError(result, "E_OCI")
        self.assertIn("/nonexistent", result.err)
        self.assertRegex(result.err, r"flwd: E_OCI: .*(No such file|not found)")
        finished = [e for e in result.events() if e["type"] == "run.finished"]
        self.assertEqual(len(finished), 1, result.describe())
        self.assertEqual(finished[0]["data"]["state"], "error")
        self.assertEqual(finished[0]["data"]["error_code"], "E_OCI")
        self.assertNotIn("exit_status", finished[0]["data"])

    def test_entrypoint_not_executable(self):
        result = self.run_job("not-executable")
        self.assertError(result, "E_OCI")
        self.assertIn("/etc/passwd", result.err)

    def test_image_command(self):
        # Without a command the image's own (sh) runs; its stdin is empty.
        result = self.run_job("image-command")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "")

    def test_run_id_placeholder(self):
        result = self.run_job("run-id", flags=("-q", "--events"))
        self.assertExit(result, 0)
        run_id = result.events()[0]["data"]["run"]
        self.assertRegex(run_id, r"^[0-9a-f]{16}$")
        self.assertEqual(result.out, f"{run_id} {run_id}\n")

    def test_timeout(self):
        result = self.run_job("timeout", flags=("--events",))
        self.assertExit(result, 124)
        self.assertEqual(result.out, "ready\n")
        self.assertIn("timed out", result.err)
        # One second of timeout and one of grace, then slack for a slow machine.
        self.assertLess(result.elapsed, 1 + 1 + 8, result.describe())
        types = event_types(result.events())
        self.assertIn("run.timed_out", types)
        finished = result.events()[-1]
        self.assertEqual(finished["type"], "run.finished")
        self.assertEqual(finished["data"]["state"], "timed_out")

    def test_events_of_success(self):
        result = self.script("echo hi", flags=("-q", "--events"))
        self.assertExit(result, 0)
        self.assertEqual(result.out, "hi\n")
        events = result.events()
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
        for event in events:
            self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        types = event_types(events)
        expected_order = [
            "run.created",
            "run.planned",
            "runtime.chosen",
            "image.cached",
            "container.started",
            "container.exited",
            "run.finished",
        ]
        positions = [types.index(t) if t in types else -1 for t in expected_order]
        self.assertNotIn(-1, positions, f"events missing from {types}")
        self.assertEqual(positions, sorted(positions), f"events out of order: {types}")
        self.assertEqual(types[-1], "run.finished")

        by_type = {e["type"]: e["data"] for e in events}
        self.assertEqual(by_type["run.created"]["job"], self.job("script"))
        self.assertEqual(by_type["runtime.chosen"]["runtime"], self.runtime)
        self.assertEqual(by_type["image.cached"]["image"], support.TEST_IMAGE)
        run_id = by_type["run.created"]["run"]
        self.assertEqual(by_type["container.started"]["container"], f"flwd-{run_id}")
        self.assertEqual(by_type["container.exited"]["exit_code"], 0)
        self.assertEqual(by_type["run.finished"]["state"], "succeeded")
        self.assertEqual(by_type["run.finished"]["exit_status"], 0)

    def test_events_of_failure(self):
        result = self.script("exit 7", flags=("-q", "--events"))
        self.assertExit(result, 7)
        finished = result.events()[-1]
        self.assertEqual(finished["type"], "run.finished")
        self.assertEqual(finished["data"]["state"], "failed")
        self.assertEqual(finished["data"]["exit_status"], 7)

    def test_quiet_hides_warnings(self):
        result = self.script("true", flags=("-q",))
        self.assertExit(result, 0)
        self.assertEqual(result.err, "")
        result = self.script("true", flags=())
        self.assertExit(result, 0)
        for line in result.err.splitlines():
            self.assertTrue(re.match(r"^flwd: (warning|info): ", line), result.describe())


support.runtime_classes(Run, globals())

if __name__ == "__main__":
    unittest.main()
