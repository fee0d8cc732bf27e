#!/usr/bin/env python3
"""Tests of the run model: runs, events, cancel, timeouts and the run store.

The tests start real containers with each runtime of FLWD_TEST_RUNTIMES. They
drive them through the flwd CLI and through runs-driver (tests/runs/driver.c),
a client of libflwd's public C API. The driver runs a batch of runs on one
event loop and reports each as a JSON line. `meson test` fills in the
environment:

  FLWD_DRIVER         the runs-driver binary (required)
  FLWD_BIN            the flwd binary (required)
  FLWD_INIT           the flwd-init helper (required)
  FLWD_TEST_RUNTIMES  comma-separated runtimes to test (default "podman")
  FLWD_TEST_IMAGE     image with busybox sh (default localhost/flwd-busybox:latest)

A runtime named in FLWD_TEST_RUNTIMES that cannot run the test image fails
its tests rather than skipping them.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

FLWD_DRIVER = os.environ.get("FLWD_DRIVER", "")
FLWD_BIN = os.environ.get("FLWD_BIN", "")
FLWD_INIT = os.environ.get("FLWD_INIT", "")
TEST_IMAGE = os.environ.get("FLWD_TEST_IMAGE") or "localhost/flwd-busybox:latest"

# Job ids carry a token of this process, so that the label checks of one
# test process never see the containers of another.
TOKEN = secrets.token_hex(3)

# Seconds that one flwd or driver command may take before the test fails.
# Generous, because the CI machine has two cores and runs other work.
COMMAND_TIMEOUT = 300

# Variables that would change the runtime, jobs, state or run mode of flwd
# behind a test's back.
FLWD_VARIABLES = (
    "FLWD_RUNTIME",
    "FLWD_PODMAN",
    "FLWD_DOCKER",
    "FLWD_JOBS_PATH",
    "FLWD_STATE_DIR",
    "FLWD_RUN_MODE",
)

def runtimes_under_test():
    """Return the runtimes named in FLWD_TEST_RUNTIMES, in order."""
    text = os.environ.get("FLWD_TEST_RUNTIMES") or "podman"
    return [name.strip() for name in text.split(",") if name.strip()]


def job_id(name):
    return f"{name}-rt{TOKEN}"


def job_spec(job, command, image=TEST_IMAGE, args=(), **fields):
    """Return the YAML text of a container job. Values are written as JSON,
    which YAML reads as flow syntax, so strings arrive exactly as given."""
    lines = [
        f"id: {job}",
        "executor: container",
        f"interpreter: {json.dumps('container:' + image)}",
        f"command: {json.dumps(command)}",
    ]
    if args:
        lines.append("args:")
        lines += [f"  - {json.dumps(arg)}" for arg in args]
    lines += [f"{key}: {json.dumps(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


SCRIPT_ARG = {"name": "script", "type": "string", "required": True}

# name -> spec text of the job with that id. The pull job is written by its
# test, because its image names a port chosen at run time.
JOBS = {
    "sh": lambda job: job_spec(
        job, ["sh", "-c", "${args.script}"], args=[SCRIPT_ARG], stop_timeout="2s"
    ),
    # sleep as PID 1 has no handler for SIGTERM, so the kernel drops the
    # signal and only the kill at the end of the grace period stops it.
    "pid1": lambda job: job_spec(job, ["sleep", "300"], stop_timeout="2s"),
    "trap": lambda job: job_spec(
        job,
        [
            "sh",
            "-c",
            'trap "echo got-term; exit 0" TERM; echo ready; '
            "while :; do sleep 0.2; done",
        ],
        stop_timeout="20s",
    ),
    "timeout": lambda job: job_spec(
        job, ["sleep", "300"], timeout="2s", stop_timeout="2s"
    ),
}
PULL_JOB = "pull"


class Result:
    """Outcome of one command."""

    def __init__(self, argv, returncode, stdout, stderr, elapsed):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    @property
    def out(self):
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self):
        return self.stderr.decode("utf-8", "replace")

    def describe(self):
        """Return the command, its status and its output for a failure message."""
        out = self.out if len(self.out) <= 6000 else self.out[:6000] + "..."
        err = self.err if len(self.err) <= 6000 else self.err[:6000] + "..."
        return (
            f"\ncommand: {self.argv}\nexit status: {self.returncode} after "
            f"{self.elapsed:.2f}s\nstdout:\n{out}\nstderr:\n{err}"
        )


def run_command(argv, env=None, timeout=COMMAND_TIMEOUT, stdin_data=None):
    """Run ARGV (never through a shell) and return its Result."""
    start = time.monotonic()
    proc = subprocess.run(
        argv,
        input=stdin_data,
        stdin=None if stdin_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        timeout=timeout,
        check=False,
    )
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


_runtime_problems = {}


def runtime_problem(runtime):
    """Return why RUNTIME cannot run the test image, or None when it can."""
    if runtime in _runtime_problems:
        return _runtime_problems[runtime]
    problem = None
    if runtime not in ("podman", "docker"):
        problem = f"FLWD_TEST_RUNTIMES names '{runtime}'; flwd supports podman and docker"
    elif shutil.which(runtime) is None:
        problem = f"FLWD_TEST_RUNTIMES names '{runtime}', but it is not on PATH"
    else:
        argv = [runtime, "image", "inspect", "--format={{.Id}}", TEST_IMAGE]
        try:
            result = run_command(argv, timeout=60)
        except subprocess.TimeoutExpired:
            problem = f"{argv} did not finish in 60 s; is the runtime's lock wedged?"
        else:
            if result.returncode != 0:
                problem = f"{runtime} cannot see the test image {TEST_IMAGE}:{result.describe()}"
    _runtime_problems[runtime] = problem
    return problem


def driver_report(result):
    """Split runs-driver output into its run lines and its summary."""
    runs, summary, fatal = [], None, None
    for line in result.out.splitlines():
        record = json.loads(line)
        if "summary" in record:
            summary = record["summary"]
        elif "fatal" in record:
            fatal = record["fatal"]
        else:
            runs.append(record)
    return runs, summary, fatal


class HangingRegistry:
    """A TCP listener on 127.0.0.1 that accepts connections and never
    replies, so that a pull from it hangs."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self):
        self.closed = True
        # shutdown() wakes the accept() that close() alone would leave blocked.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for conn in self.connections:
            conn.close()


class FlwdCase(unittest.TestCase):
    """A jobs directory per class and a state directory per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for path, name in ((FLWD_DRIVER, "FLWD_DRIVER"), (FLWD_BIN, "FLWD_BIN"), (FLWD_INIT, "FLWD_INIT")):
            if not path or not os.access(path, os.X_OK):
                raise AssertionError(
                    f"{name} '{path}' is not an executable file; run the tests "
                    "with `meson test --suite integration` or set the variable"
                )
        cls.class_dir = tempfile.mkdtemp(prefix="flwd-runs-")
        # Containers run as other uids of a user namespace and must be able
        # to reach the run directories that flwd creates below.
        os.chmod(cls.class_dir, 0o755)
        cls.jobs_dir = os.path.join(cls.class_dir, "jobs")
        os.mkdir(cls.jobs_dir)
        for name, make_spec in JOBS.items():
            cls.write_job(job_id(name), make_spec(job_id(name)))

    @classmethod
    def write_job(cls, job, text):
        with open(os.path.join(cls.jobs_dir, f"{job}.yaml"), "w", encoding="utf-8") as spec:
            spec.write(text)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.class_dir, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.state_dir = tempfile.mkdtemp(prefix="state-", dir=self.class_dir)
        os.chmod(self.state_dir, 0o755)
        self.env = {k: v for k, v in os.environ.items() if k not in FLWD_VARIABLES}
        self.env["FLWD_INIT"] = FLWD_INIT

    def flwd(self, *args, runtime=None, env=None, timeout=COMMAND_TIMEOUT):
        """Run flwd with the test's jobs and state directory, then ARGS."""
        argv = [FLWD_BIN, "--state-dir", self.state_dir, "--jobs", self.jobs_dir]
        if runtime:
            argv += ["--runtime", runtime]
        return run_command(argv + list(args), env=env or self.env, timeout=timeout)

    def assertExit(self, result, status):
        self.assertEqual(result.returncode, status, f"expected exit status {status}{result.describe()}")

    def assertFlwdError(self, result, code, status=125):
        """Assert that flwd failed with "flwd: CODE: ..." and exit STATUS."""
        self.assertExit(result, status)
        self.assertIn(f"flwd: {code}: ", result.err, result.describe())

    def stored_runs(self):
        result = self.flwd("runs", "--json", "--limit", "1000")
        self.assertExit(result, 0)
        return {run["id"]: run for run in json.loads(result.out)}, result

    def show(self, run_id):
        result = self.flwd("show", run_id)
        self.assertExit(result, 0)
        return json.loads(result.out), result


class RunsCases:
    """Cases that start containers. runtime_classes() binds them to each
    runtime of FLWD_TEST_RUNTIMES."""

    runtime = None

    def setUp(self):
        super().setUp()
        problem = runtime_problem(self.runtime)
        if problem:
            self.fail(problem)
        self.started_processes = []

    def tearDown(self):
        for proc in self.started_processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate()
        leftovers = []
        for job in [job_id(name) for name in JOBS] + [job_id(PULL_JOB)]:
            leftovers += self.containers(f"io.flwd.job-id={job}")
        if leftovers:
            self.runtime_cli("rm", "--force", *leftovers)
        super().tearDown()
        self.assertEqual(leftovers, [], f"{self.runtime} containers left behind")

    # ---- Helpers -----------------------------------------------------------

    def runtime_cli(self, *args, timeout=120):
        """Run the runtime's own CLI. A command that hangs marks the runtime
        unusable, so that the next tests fail at once instead of hanging too."""
        argv = [self.runtime, *args]
        try:
            return run_command(argv, timeout=timeout)
        except subprocess.TimeoutExpired:
            problem = f"{argv} did not finish in {timeout} s; is the runtime's lock wedged?"
            _runtime_problems[self.runtime] = problem
            raise AssertionError(problem) from None

    def containers(self, label, *filters):
        """Return the names of the runtime's containers with LABEL (k=v), in
        any state unless FILTERS ("--filter=...") narrow them."""
        result = self.runtime_cli("ps", "--all", "--format={{.Names}}", f"--filter=label={label}", *filters)
        self.assertExit(result, 0)
        return result.out.split()

    def assertNoContainer(self, run_id):
        self.assertEqual(self.containers(f"io.flwd.run-id={run_id}"), [], f"container of run {run_id} left")

    def drive(self, job, *options, env=None, status=0):
        """Run runs-driver on JOB with OPTIONS; return its runs, summary and Result."""
        argv = [
            FLWD_DRIVER,
            "--state-dir", self.state_dir,
            "--jobs", self.jobs_dir,
            "--runtime", self.runtime,
            "--job", job_id(job),
            # The driver cancels what is left and reports before the test's
            # own timeout kills it.
            "--deadline-ms", str((COMMAND_TIMEOUT - 60) * 1000),
            *options,
        ]
        result = run_command(argv, env=env or self.env)
        self.assertExit(result, status)
        runs, summary, fatal = driver_report(result)
        self.assertIsNone(fatal, result.describe())
        return runs, summary, result

    def script(self, text, *flags):
        """Run the sh job with SCRIPT through the CLI, with its events on
        stderr; return the run id and the Result."""
        result = self.flwd("--events", *flags, job_id("sh"), "--script", text, runtime=self.runtime)
        events = [json.loads(line) for line in result.err.splitlines() if line.startswith('{"seq":')]
        self.assertTrue(events, f"no events on stderr{result.describe()}")
        self.assertEqual(events[0]["type"], "run.created", result.describe())
        return events[0]["data"]["run"], result

    def assertOrder(self, events, expected, context):
        """Assert that EXPECTED event types appear in EVENTS in that order."""
        positions = []
        for event_type in expected:
            self.assertIn(event_type, events, context)
            positions.append(events.index(event_type))
        self.assertEqual(positions, sorted(positions), f"events out of order {expected}: {context}")

    # ---- Cancel ------------------------------------------------------------

    def test_cancel_before_start(self):
        runs, summary, result = self.drive("sh", "--args", '{"script":"echo ran"}', "--count", "2", "--cancel-before-start")
        context = result.describe()
        self.assertEqual(summary["finished"], 2, context)
        for run in runs:
            self.assertEqual(run["state"], "cancelled", context)
            self.assertEqual(run["cancel"]["code"], "ok", context)
            self.assertEqual(run["exit_status"], -1, context)
            self.assertEqual(run["events"], ["run.created", "run.cancel_requested", "run.finished"], context)
            self.assertNoContainer(run["id"])

        # Right after the start, and while queued behind --max-runs.
        runs, summary, result = self.drive(
            "sh", "--args", '{"script":"echo ran"}', "--count", "3", "--max-runs", "1", "--cancel-after-start"
        )
        context = result.describe()
        self.assertEqual(
            [run["events"] for run in runs],
            [["run.created", "run.cancel_requested", "run.finished"]]
            + [["run.created", "run.queued", "run.cancel_requested", "run.finished"]] * 2,
            context,
        )
        stored, listing = self.stored_runs()
        for run in runs:
            self.assertEqual(run["state"], "cancelled", context)
            self.assertEqual(run["start_error"], None, context)
            self.assertEqual(stored[run["id"]]["state"], "cancelled", listing.describe())
            self.assertNoContainer(run["id"])

    def test_cancel_during_pull(self):
        registry = HangingRegistry()
        self.addCleanup(registry.close)
        image = f"127.0.0.1:{registry.port}/x:latest"
        self.write_job(job_id(PULL_JOB), job_spec(job_id(PULL_JOB), ["true"], image=image, pull="missing"))
        # Podman reads from this file, in place of the system's
        # registries.conf, that the registry on 127.0.0.1 is plain HTTP.
        conf = os.path.join(self.state_dir, "registries.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(
                "unqualified-search-registries = []\n\n"
                f'[[registry]]\nlocation = "127.0.0.1:{registry.port}"\ninsecure = true\n'
            )
        env = dict(self.env, CONTAINERS_REGISTRIES_CONF=conf)

        runs, _, result = self.drive(
            PULL_JOB, "--cancel-when", "image.pull_started", "--cancel-after-ms", "1000", env=env
        )
        context = result.describe()
        (run,) = runs
        self.assertEqual(run["state"], "cancelled", context)
        self.assertEqual(run["cancel"]["code"], "ok", context)
        self.assertOrder(run["events"], ["image.pull_started", "run.cancel_requested", "run.finished"], context)
        self.assertNotIn("container.created", run["events"], context)
        self.assertGreater(len(registry.connections), 0, f"the pull never reached {image}{context}")
        self.assertLess(run["finished_ms"] - run["cancel_ms"], 5000, f"cancel took too long{context}")

        ps = run_command(["ps", "-eo", "pid=,args="])
        self.assertExit(ps, 0)
        pulls = [line for line in ps.out.splitlines() if " pull " in line and image in line]
        self.assertEqual(pulls, [], f"pull processes left after the cancel{context}")
        self.assertNoContainer(run["id"])

    def test_cancel_running(self):
        for mode in ("attached", "detached"):
            with self.subTest(mode=mode):
                runs, _, result = self.drive(
                    "sh",
                    "--args", '{"script":"echo ready; sleep 300"}',
                    "--run-mode", mode,
                    "--cancel-on-output", "ready",
                )
                context = result.describe()
                (run,) = runs
                self.assertEqual(run["state"], "cancelled", context)
                self.assertEqual(run["cancel"]["code"], "ok", context)
                self.assertEqual(run["exit_status"], -1, context)
                self.assertOrder(
                    run["events"],
                    ["container.started", "run.cancel_requested", "stop.sent", "container.exited", "run.finished"],
                    context,
                )
                self.assertEqual(run["events"][-1], "run.finished", context)
                self.assertNoContainer(run["id"])

    def test_cancel_after_end(self):
        runs, _, result = self.drive("sh", "--args", '{"script":"exit 0"}', "--cancel-after-end")
        context = result.describe()
        (run,) = runs
        self.assertEqual(run["state"], "succeeded", context)
        self.assertEqual(run["late_cancel"]["code"], "run.finished", context)
        self.assertEqual(run["late_ctx_cancel"]["code"], "run.finished", context)
        # Another process finds the finished run only in the store.
        other = run_command([FLWD_DRIVER, "--state-dir", self.state_dir, "--cancel-id", run["id"]], env=self.env)
        self.assertExit(other, 0)
        self.assertEqual(json.loads(other.out)["code"], "run.finished", other.describe())
        stored, listing = self.stored_runs()
        self.assertEqual(stored[run["id"]]["state"], "succeeded", listing.describe())

    def test_kill_after_grace(self):
        runs, _, result = self.drive("pid1", "--cancel-when", "container.started", "--cancel-after-ms", "1000")
        context = result.describe()
        (run,) = runs
        self.assertEqual(run["state"], "cancelled", context)
        self.assertEqual(run["events"].count("container.killed"), 1, context)
        self.assertOrder(run["events"], ["stop.sent", "container.exited", "container.killed", "run.finished"], context)
        took = run["finished_ms"] - run["cancel_ms"]
        self.assertGreaterEqual(took, 2000, f"killed before its 2 s grace{context}")
        self.assertLess(took, 2000 + 8000, f"kill came too late{context}")
        self.assertNoContainer(run["id"])

    def test_term_trapped(self):
        runs, _, result = self.drive("trap", "--cancel-on-output", "ready")
        context = result.describe()
        (run,) = runs
        self.assertEqual(run["state"], "cancelled", context)
        self.assertNotIn("container.killed", run["events"], context)
        self.assertIn("container.exited", run["events"], context)
        took = run["finished_ms"] - run["cancel_ms"]
        self.assertLess(took, 10000, f"the trapped TERM did not end the job well within its 20 s grace{context}")

        stored_run, show = self.show(run["id"])
        exited = [e for e in stored_run["events"] if e["type"] == "container.exited"]
        self.assertEqual(len(exited), 1, show.describe())
        self.assertEqual(exited[0]["data"]["exit_code"], 0, show.describe())
        logs = self.flwd("logs", run["id"])
        self.assertExit(logs, 0)
        self.assertEqual(logs.out, "ready\ngot-term\n", logs.describe())
        self.assertNoContainer(run["id"])

    # ---- Timeout -----------------------------------------------------------

    def test_timeout(self):
        runs, _, result = self.drive("timeout")
        context = result.describe()
        (run,) = runs
        self.assertEqual(run["state"], "timed_out", context)
        self.assertEqual(run["exit_status"], -1, context)
        self.assertOrder(run["events"], ["container.started", "run.timed_out", "stop.sent", "run.finished"], context)
        self.assertEqual(run["events"].count("run.timed_out"), 1, context)
        self.assertNoContainer(run["id"])

        cli = self.flwd("-q", job_id("timeout"), runtime=self.runtime)
        self.assertExit(cli, 124)
        self.assertIn("timed out", cli.err, cli.describe())
        # Two seconds of timeout and two of grace, then slack for a slow machine.
        self.assertGreaterEqual(cli.elapsed, 2, cli.describe())
        self.assertLess(cli.elapsed, 2 + 2 + 10, cli.describe())
        stored, listing = self.stored_runs()
        self.assertEqual(
            sorted(r["state"] for r in stored.values()), ["timed_out", "timed_out"], listing.describe()
        )

    # ---- Many runs ---------------------------------------------------------

    def check_batch(self, runs, statuses, context):
        """Assert that run I ended with exit status STATUSES[I]."""
        self.assertEqual(len(runs), len(statuses), context)
        for run, status in zip(runs, statuses):
            self.assertEqual(run["exit_status"], status, context)
            self.assertEqual(run["state"], "succeeded" if status == 0 else "failed", context)
            self.assertEqual(run["events"].count("container.exited"), 1, context)
            self.assertEqual(run["events"][-1], "run.finished", context)
        stored, listing = self.stored_runs()
        for run, status in zip(runs, statuses):
            self.assertEqual(stored[run["id"]]["exit_status"], status, listing.describe())
        self.assertEqual(self.containers(f"io.flwd.job-id={job_id('sh')}"), [], context)

    def test_fifty_in_a_row(self):
        codes = [0, 1, 7]
        args = json.dumps([{"script": f"exit {code}"} for code in codes])
        runs, summary, result = self.drive("sh", "--args", args, "--count", "50", "--max-runs", "1")
        context = result.describe()
        self.assertEqual(summary["max_active"], 1, context)
        self.check_batch(runs, [codes[i % 3] for i in range(50)], context)
        # With one slot, each run starts after the one before it ended.
        for before, after in zip(runs, runs[1:]):
            self.assertLessEqual(before["finished_ms"], after["finished_ms"], context)

    def test_twenty_at_once(self):
        args = json.dumps([{"script": f"exit {code}"} for code in (0, 3)])
        runs, summary, result = self.drive("sh", "--args", args, "--count", "20")
        context = result.describe()
        self.assertEqual(summary["max_active"], 20, context)
        self.check_batch(runs, [(0, 3)[i % 2] for i in range(20)], context)

    def test_max_runs(self):
        runs, summary, result = self.drive("sh", "--args", '{"script":"sleep 1"}', "--count", "8", "--max-runs", "3")
        context = result.describe()
        self.assertLessEqual(summary["max_active"], 3, context)
        self.assertLessEqual(summary["max_active_events"], 3, context)
        self.assertEqual(summary["max_active"], 3, context)
        queued = [run["index"] for run in runs if "run.queued" in run["events"]]
        self.assertEqual(queued, [3, 4, 5, 6, 7], context)
        self.check_batch(runs, [0] * 8, context)

    # ---- Result ------------------------------------------------------------

    def test_result_valid(self):
        run_id, result = self.script(
            "printf '%s' '{\"answer\": 42, \"list\": [1, \"x\"]}' > /run/flwd/out/result.json"
        )
        self.assertExit(result, 0)
        stored_run, show = self.show(run_id)
        self.assertEqual(stored_run["result"], {"answer": 42, "list": [1, "x"]}, show.describe())
        self.assertIsNone(stored_run["result_error"], show.describe())
        self.assertIn("result.recorded", [e["type"] for e in stored_run["events"]], show.describe())

    def test_result_invalid(self):
        run_id, result = self.script("echo '{\"answer\": ' > /run/flwd/out/result.json")
        self.assertExit(result, 0)
        stored_run, show = self.show(run_id)
        self.assertIsNone(stored_run["result"], show.describe())
        self.assertIn("not valid JSON", stored_run["result_error"] or "", show.describe())
        self.assertIn("result.invalid", [e["type"] for e in stored_run["events"]], show.describe())

    def test_result_too_large(self):
        # A valid JSON string of 1 MiB + 3 bytes.
        run_id, result = self.script(
            "{ printf '\"'; head -c 1048577 /dev/zero | tr '\\0' a; printf '\"'; }"
            " > /run/flwd/out/result.json"
        )
        self.assertExit(result, 0)
        stored_run, show = self.show(run_id)
        self.assertIsNone(stored_run["result"], show.describe())
        self.assertIn("larger than 1048576 bytes", stored_run["result_error"] or "", show.describe())
        self.assertIn("result.invalid", [e["type"] for e in stored_run["events"]], show.describe())

    # ---- Logs --------------------------------------------------------------

    def test_logs_streams(self):
        run_id, result = self.script("echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf tail", "-q")
        self.assertExit(result, 0)
        logs = self.flwd("logs", run_id)
        self.assertExit(logs, 0)
        self.assertEqual(logs.out, "out1\nout2\ntail", logs.describe())
        self.assertEqual(logs.err, "err1\nerr2\n", logs.describe())

        logs_json = self.flwd("logs", run_id, "--json")
        self.assertExit(logs_json, 0)
        lines = json.loads(logs_json.out)
        self.assertEqual(sorted(line["n"] for line in lines), [1, 2, 3, 4, 5], logs_json.describe())
        by_stream = {"stdout": [], "stderr": []}
        for line in lines:
            by_stream[line["stream"]].append((line["line"], line.get("partial", False)))
        self.assertEqual(
            by_stream["stdout"], [("out1", False), ("out2", False), ("tail", True)], logs_json.describe()
        )
        self.assertEqual(by_stream["stderr"], [("err1", False), ("err2", False)], logs_json.describe())

    def test_log_cap(self):
        runs, _, result = self.drive("sh", "--args", '{"script":"seq 1 10000"}', "--log-max-bytes", "4096")
        context = result.describe()
        (run,) = runs
        self.assertEqual(run["state"], "succeeded", context)
        self.assertEqual(run["events"].count("log.truncated"), 1, context)
        self.assertIs(run["run"]["log_truncated"], True, context)
        stored_run, show = self.show(run["id"])
        self.assertIs(stored_run["log_truncated"], True, show.describe())

        logs = self.flwd("logs", run["id"])
        self.assertExit(logs, 0)
        log_lines = logs.out.splitlines()
        self.assertGreater(len(log_lines), 0, logs.describe())
        self.assertLess(len(log_lines), 10000, logs.describe())
        # The log keeps the first lines, whole and in order, within the cap
        # of 4096 bytes. Each stored line costs its text plus 3 bytes.
        self.assertEqual(log_lines, [str(n) for n in range(1, len(log_lines) + 1)], logs.describe())
        self.assertLessEqual(sum(len(line) + 3 for line in log_lines), 4096, logs.describe())

    # ---- Store -------------------------------------------------------------

    def start_cli_run(self, script):
        argv = [
            FLWD_BIN, "--state-dir", self.state_dir, "--jobs", self.jobs_dir,
            "--runtime", self.runtime, "-q", job_id("sh"), "--script", script,
        ]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env
        )
        self.started_processes.append(proc)
        return proc

    def test_store_after_kill(self):
        # The store exists before the runs start, so that this test checks
        # only the kill. StoreCli.test_concurrent_open covers a fresh store.
        self.stored_runs()
        sleepers = [self.start_cli_run(f"sleep 60; exit {status}") for status in (11, 12, 13, 14)]
        quick = {status: self.start_cli_run(f"echo quick{status}; exit {status}") for status in (0, 5)}
        for status, proc in quick.items():
            out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
            self.assertEqual(proc.returncode, status, f"quick run: {out!r} {err!r}")

        # Wait until the store shows the four sleepers running.
        deadline = time.monotonic() + 120
        while True:
            for proc in sleepers:
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    self.fail(f"{proc.args} ended with {proc.returncode} before the kill: {out!r} {err!r}")
            stored, listing = self.stored_runs()
            running = [r for r in stored.values() if r["state"] == "running"]
            if len(running) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(len(running), 4, f"the sleeping runs did not start{listing.describe()}")
        killed_ids = sorted(r["id"] for r in running)
        try:
            # Attached, a run is recorded running as soon as the runtime's
            # run command starts, so wait for the containers themselves.
            expected = sorted(f"flwd-{run_id}" for run_id in killed_ids)
            while True:
                started = sorted(self.containers(f"io.flwd.job-id={job_id('sh')}", "--filter=status=running"))
                if started == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            self.assertEqual(started, expected, "the containers of the sleeping runs did not start")
            self.check_store_after_kill(sleepers, killed_ids)
        finally:
            self.remove_killed(killed_ids)

    def check_store_after_kill(self, sleepers, killed_ids):
        for proc in sleepers:
            self.assertIsNone(proc.poll(), "a sleeping run ended before the kill")
            proc.send_signal(signal.SIGKILL)
            proc.wait()

        stored, listing = self.stored_runs()
        context = listing.describe()
        self.assertEqual(len(stored), 6, context)
        finished = {r["exit_status"]: r for r in stored.values() if r["state"] != "running"}
        self.assertEqual(sorted(finished), [0, 5], context)
        self.assertEqual(finished[0]["state"], "succeeded", context)
        self.assertEqual(finished[5]["state"], "failed", context)
        self.assertEqual(sorted(r["id"] for r in stored.values() if r["state"] == "running"), killed_ids, context)
        for status, run in finished.items():
            stored_run, show = self.show(run["id"])
            self.assertEqual(stored_run["events"][-1]["type"], "run.finished", show.describe())
            self.assertEqual(stored_run["events"][-1]["data"]["exit_status"], status, show.describe())
            logs = self.flwd("logs", run["id"])
            self.assertEqual(logs.out, f"quick{status}\n", logs.describe())

        integrity = run_command(["sqlite3", os.path.join(self.state_dir, "flwd.db"), "PRAGMA integrity_check"])
        self.assertEqual(integrity.out, "ok\n", integrity.describe())
        # The killed runs belong to a process that is gone. A cancel from
        # here is rejected, because only the process running a run stops it.
        other = run_command([FLWD_DRIVER, "--state-dir", self.state_dir, "--cancel-id", killed_ids[0]], env=self.env)
        self.assertEqual(json.loads(other.out)["code"], "request.invalid", other.describe())

    def remove_killed(self, run_ids):
        """Remove the containers of runs whose flwd was killed, until the
        runtime commands that flwd left attached to them have ended."""
        deadline = time.monotonic() + 60
        while True:
            for run_id in run_ids:
                names = self.containers(f"io.flwd.run-id={run_id}")
                if not names:
                    continue
                # Podman's rm --force stops with a grace of 10 s unless --time
                # is given. Docker's kills at once and has no --time option.
                extra = ["--time=0"] if self.runtime == "podman" else []
                removed = self.runtime_cli("rm", "--force", *extra, *names)
                self.assertExit(removed, 0)
            left = self.processes_of(run_ids)
            if not left:
                return
            if time.monotonic() > deadline:
                # Started by the killed flwd processes of this test; SIGTERM,
                # because a runtime killed with SIGKILL can leave a lock held.
                for pid in left:
                    os.kill(pid, signal.SIGTERM)
                self.fail(f"runtime processes of the killed runs did not end: {left}")
            time.sleep(0.5)

    def processes_of(self, run_ids):
        """Return the pids of processes whose arguments name one of RUN_IDS."""
        ps = run_command(["ps", "-eo", "pid=,args="])
        self.assertExit(ps, 0)
        pids = []
        for line in ps.out.splitlines():
            pid, _, args = line.strip().partition(" ")
            if any(f"io.flwd.run-id={run_id}" in args for run_id in run_ids):
                pids.append(int(pid))
        return pids


class StoreCli(FlwdCase):
    """Store errors that need no runtime."""

    def test_unknown_id(self):
        unknown = "0123456789abcdef"
        for args in (("show", unknown), ("logs", unknown), ("logs", unknown, "--json")):
            with self.subTest(args=args):
                result = self.flwd(*args)
                self.assertFlwdError(result, "run.not_found")
                self.assertIn(unknown, result.err, result.describe())
        runs = self.flwd("runs", "--json")
        self.assertExit(runs, 0)
        self.assertEqual(json.loads(runs.out), [], runs.describe())
        cancel = run_command([FLWD_DRIVER, "--state-dir", self.state_dir, "--cancel-id", unknown], env=self.env)
        self.assertExit(cancel, 0)
        self.assertEqual(json.loads(cancel.out)["code"], "run.not_found", cancel.describe())

    def test_concurrent_open(self):
        # Processes that open a fresh store at the same moment, as several
        # CLI runs started together on a new state directory do. The race
        # hit between 1 and 14 in 100 fresh stores of 8 processes in runs
        # on a two-core machine, so the test tries stores for 15 s.
        failures, total, stores = [], 0, 0
        deadline = time.monotonic() + 15
        while not failures and time.monotonic() < deadline:
            state_dir = tempfile.mkdtemp(prefix="fresh-", dir=self.class_dir)
            stores += 1
            argv = [FLWD_BIN, "--state-dir", state_dir, "runs", "--json"]
            procs = [
                subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(8)
            ]
            for proc in procs:
                out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
                total += 1
                if proc.returncode != 0 or out != b"[]\n":
                    failures.append((proc.returncode, out, err))
        first = failures[0] if failures else None
        self.assertEqual(
            len(failures),
            0,
            f"{len(failures)} of {total} processes failed to open one of {stores} fresh stores; first: {first}",
        )

    def test_newer_schema(self):
        created = self.flwd("runs", "--json")
        self.assertExit(created, 0)
        db = os.path.join(self.state_dir, "flwd.db")
        set_version = run_command(["sqlite3", db, "PRAGMA user_version=99"])
        self.assertExit(set_version, 0)

        for args in (
            ("runs",),
            ("runs", "--json"),
            ("show", "0123456789abcdef"),
            ("logs", "0123456789abcdef"),
            (job_id("sh"), "--script", "exit 0"),
        ):
            with self.subTest(args=args):
                result = self.flwd(*args)
                self.assertFlwdError(result, "store.failed")
                self.assertIn("schema version 99", result.err, result.describe())

        version = run_command(["sqlite3", db, "PRAGMA user_version"])
        self.assertEqual(version.out, "99\n", "flwd changed the version of a newer store")


def runtime_classes():
    """Define one TestCase per runtime of FLWD_TEST_RUNTIMES, such as RunsPodman."""
    for runtime in runtimes_under_test():
        suffix = re.sub(r"[^0-9A-Za-z]", "", runtime.title()) or "Unnamed"
        name = f"Runs{suffix}"
        globals()[name] = type(name, (RunsCases, FlwdCase), {"runtime": runtime})


runtime_classes()

if __name__ == "__main__":
    unittest.main(verbosity=2)
