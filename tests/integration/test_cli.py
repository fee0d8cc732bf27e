"""Commands of the flwd CLI that start no container: --version, --help,
jobs, a job's --help and the errors of bad command lines."""

import json
import os
import re
import unittest

import support
from support import sh_job


def greet_job(job):
    return support.job_yaml(
        job,
        ["sh", "-c", 'echo "Hello, $FLWD_ARG_NAME"'],
        [
            {"name": "name", "type": "string", "required": True, "description": "Who to greet."},
            {"name": "times", "type": "integer", "default": 1},
        ],
        description="Greets someone from inside a container.",
        stop_timeout="10s",
    )


def typed_job(job):
    return sh_job(
        job,
        "true",
        [
            {"name": "mode", "type": "enum", "values": ["fast", "slow"], "default": "fast"},
            {"name": "tags", "type": "list"},
            {"name": "verbose", "type": "boolean"},
            {"name": "ratio", "type": "number"},
        ],
    )


class Cli(support.FlwdTestCase):
    JOBS = {"greet": greet_job, "typed": typed_job, "bare": lambda job: sh_job(job, "true")}

    def test_version(self):
        result = self.flwd("--version")
        self.assertExit(result, 0)
        expected = os.environ.get("FLWD_TEST_VERSION")
        if expected:
            self.assertEqual(result.out, f"flwd {expected}\n")
        else:
            self.assertRegex(result.out, r"^flwd \d+\.\d+\.\d+\n\Z")
        self.assertEqual(result.err, "")

    def test_help(self):
        result = self.flwd("--help")
        self.assertExit(result, 0)
        self.assertTrue(result.out.startswith("Usage: flwd "), result.describe())
        for word in ("run JOB", "plan JOB", "jobs", "validate FILE", "--runtime", "--pull", "--events"):
            self.assertIn(word, result.out)

    def test_no_arguments(self):
        result = self.flwd()
        self.assertExit(result, 2)
        self.assertTrue(result.err.startswith("Usage: flwd "), result.describe())

    def test_unknown_option(self):
        result = self.flwd("--bogus")
        self.assertExit(result, 2)
        self.assertIn("unknown option '--bogus'", result.err)

    def test_invalid_runtime_option(self):
        result = self.flwd("--runtime", "crio", "jobs")
        self.assertError(result, "config.invalid", status=2)
        self.assertIn("'crio'", result.err)

    def test_invalid_runtime_variable(self):
        env = dict(self.env, FLWD_RUNTIME="crio")
        result = self.flwd("jobs", env=env)
        self.assertError(result, "config.invalid")
        self.assertIn("'crio'", result.err)

    def test_invalid_pull_option(self):
        result = self.flwd("--pull", "sometimes", "jobs")
        self.assertError(result, "config.invalid", status=2)
        self.assertIn("'sometimes'", result.err)

    def test_jobs_lists_arguments(self):
        result = self.flwd("jobs")
        self.assertExit(result, 0)
        lines = result.out.splitlines()
        greet = self.job("greet")
        start = next(i for i, line in enumerate(lines) if line.startswith(greet + " "))
        self.assertEqual(
            lines[start : start + 3],
            [
                f"{greet:<24} Greets someone from inside a container.",
                "    --name string (required)",
                "    --times integer (default 1)",
            ],
        )
        listed = {line.split()[0] for line in lines if not line.startswith(" ")}
        self.assertEqual(listed, set(self.job_ids))

    def test_jobs_json(self):
        result = self.flwd("jobs", "--json")
        self.assertExit(result, 0)
        jobs = {job["id"]: job for job in json.loads(result.stdout)}
        self.assertEqual(set(jobs), set(self.job_ids))
        greet = jobs[self.job("greet")]
        self.assertEqual(greet["image"], support.TEST_IMAGE)
        self.assertEqual(greet["profile"], "secure")
        self.assertEqual(
            greet["args"],
            [
                {"name": "name", "type": "string", "required": True, "description": "Who to greet."},
                {"name": "times", "type": "integer", "required": False, "default": 1},
            ],
        )
        typed = jobs[self.job("typed")]
        self.assertEqual(typed["args"][0]["values"], ["fast", "slow"])

    def test_jobs_skips_invalid_spec(self):
        jobs_dir = os.path.join(self.state_dir, "jobs")
        os.mkdir(jobs_dir)
        with open(os.path.join(jobs_dir, "good.yaml"), "w", encoding="utf-8") as spec:
            spec.write(sh_job("good", "true"))
        with open(os.path.join(jobs_dir, "broken.yaml"), "w", encoding="utf-8") as spec:
            spec.write("id: broken\nexecutor: shell\n")
        result = self.flwd("--jobs", jobs_dir, "jobs")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "good                     \n")
        self.assertIn("broken.yaml", result.err)

    def test_jobs_empty_directory(self):
        empty = os.path.join(self.state_dir, "empty")
        os.mkdir(empty)
        result = self.flwd("--jobs", empty, "jobs")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "")
        self.assertIn("no jobs found", result.err)

    def test_job_help(self):
        result = self.flwd(self.job("greet"), "--help")
        self.assertExit(result, 0)
        self.assertEqual(
            result.out,
            f"Usage: flwd {self.job('greet')} --name TEXT [--times INT]\n"
            "\n"
            "Greets someone from inside a container.\n"
            "\n"
            f"Image: {support.TEST_IMAGE}\n"
            "\n"
            "Arguments:\n"
            "  --name                 string, required\n"
            "      Who to greet.\n"
            "  --times                integer, default 1\n",
        )

    def test_job_help_typed(self):
        result = self.flwd(self.job("typed"), "--help")
        self.assertExit(result, 0)
        self.assertIn(
            f"Usage: flwd {self.job('typed')} [--mode VALUE] [--tags ITEM] [--verbose] [--ratio NUMBER]\n",
            result.out,
        )
        self.assertIn('  --mode                 enum ["fast","slow"], default "fast"\n', result.out)
        self.assertIn("  --tags                 list, repeat for more items\n", result.out)
        self.assertIn("  --verbose              boolean, --no-verbose for false\n", result.out)

    def test_job_help_no_arguments(self):
        result = self.flwd(self.job("bare"), "--help")
        self.assertExit(result, 0)
        self.assertIn("This job takes no arguments.", result.out)

    def test_help_needs_no_required_arguments(self):
        # --help wins over the missing --name, so no args.invalid.
        result = self.flwd("run", self.job("greet"), "--help")
        self.assertExit(result, 0)
        self.assertTrue(result.out.startswith(f"Usage: flwd {self.job('greet')} "))

    def test_unknown_job(self):
        result = self.flwd("no-such-job")
        self.assertError(result, "job.not_found")
        self.assertIn("'no-such-job'", result.err)
        self.assertIn(self.jobs_dir, result.err)

    def test_jobs_option_overrides_variable(self):
        other = os.path.join(self.state_dir, "other")
        os.mkdir(other)
        with open(os.path.join(other, "only-here.yaml"), "w", encoding="utf-8") as spec:
            spec.write(sh_job("only-here", "true"))
        result = self.flwd("--jobs", other, "jobs")
        self.assertExit(result, 0)
        self.assertEqual(result.out.split(), ["only-here"])

    def test_run_missing_job_id(self):
        result = self.flwd("run")
        self.assertExit(result, 2)
        self.assertIn("missing job id", result.err)

    def test_plan_prints_json(self):
        # The plan needs a runtime, and the first one under test is enough here.
        runtime = support.test_runtimes()[0]
        result = self.flwd("plan", self.job("greet"), "--name", "Alice", runtime=runtime)
        self.assertExit(result, 0)
        plan = json.loads(result.stdout)
        self.assertEqual(plan["job"], self.job("greet"))
        self.assertEqual(plan["runtime"], runtime)
        self.assertEqual(plan["image"], support.TEST_IMAGE)
        self.assertEqual(plan["profile"], "secure")
        self.assertEqual(plan["args"], {"name": "Alice", "times": 1})
        self.assertEqual(plan["stop_timeout_ms"], 10000)
        for key in ("argv", "guarantees", "guarantees_missing"):
            self.assertIn(key, plan)
        argv = plan["argv"]
        self.assertEqual(os.path.basename(argv[0]), runtime)
        self.assertIn(support.TEST_IMAGE, argv)
        for flag in ("--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--network=none"):
            self.assertIn(flag, argv)
        self.assertIn(f"--label=io.flwd.job-id={self.job('greet')}", argv)
        # Argument values travel in the env file, never on the command line.
        self.assertNotIn("Alice", " ".join(argv))
        names = [arg for arg in argv if arg.startswith("--name=")]
        self.assertEqual(len(names), 1, argv)
        self.assertRegex(names[0], r"^--name=flwd-[0-9a-f]{16}$")

    def test_plan_starts_nothing(self):
        runtime = support.test_runtimes()[0]
        result = self.flwd("plan", self.job("greet"), "--name", "Alice", runtime=runtime)
        self.assertExit(result, 0)
        runs_dir = os.path.join(self.state_dir, "runs")
        self.assertFalse(os.path.exists(runs_dir) and os.listdir(runs_dir), "plan wrote run files")


class StateDir(support.FlwdTestCase):
    """Runs that share one state directory, without any runtime: each run
    is recorded before flwd looks for a runtime, and then fails fast."""

    JOBS = {"bare": lambda job: sh_job(job, "true")}

    def test_concurrent_first_use(self):
        empty_bin = os.path.join(self.state_dir, "bin")
        os.mkdir(empty_bin)
        # The race is narrow: several rounds make a failure likely to show.
        for attempt in range(30):
            state_dir = os.path.join(self.state_dir, f"fresh-{attempt}")
            env = dict(self.env, PATH=empty_bin, FLWD_STATE_DIR=state_dir)
            procs = [self.start_flwd("-q", self.job("bare"), env=env) for _ in range(10)]
            for index, proc in enumerate(procs):
                _, stderr = proc.communicate(timeout=support.COMMAND_TIMEOUT)
                with self.subTest(attempt=attempt, run=index):
                    self.assertEqual(proc.returncode, 125)
                    self.assertIn("container.runtime.unavailable", stderr.decode(errors="replace"))


if __name__ == "__main__":
    unittest.main()
