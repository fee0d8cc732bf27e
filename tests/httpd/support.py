"""Shared set-up of the flwd-httpd tests.

Each test starts the real flwd-httpd on 127.0.0.1 with a port that the
kernel picks (--listen 127.0.0.1:0), reads the port from the server's
"listening on" log line, and talks to it with http.client. The environment,
which `meson test` fills in, names what to test:

  FLWD_HTTPD          the flwd-httpd binary (default: build/flwd-httpd/flwd-httpd)
  FLWD_INIT           the flwd-init helper (default: build/libflwd/flwd-init)
  FLWD_TEST_IMAGE     image with busybox sh (default localhost/flwd-busybox:latest)
  FLWD_TEST_RUNTIMES  comma-separated runtimes to test (default "podman")
"""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

_TOP = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))

FLWD_HTTPD = os.environ.get("FLWD_HTTPD") or os.path.join(
    _TOP, "build", "flwd-httpd", "flwd-httpd"
)
FLWD_INIT = os.environ.get("FLWD_INIT") or os.path.join(
    _TOP, "build", "libflwd", "flwd-init"
)
TEST_IMAGE = os.environ.get("FLWD_TEST_IMAGE") or "localhost/flwd-busybox:latest"
TOKEN = "test-token-0123456789abcdef"

# Seconds to wait for the server's "listening" line. The server reconciles
# the run store with the runtime first, which runs the runtime's CLI; on
# a busy two-core machine that has taken tens of seconds.
START_TIMEOUT = 180
# Seconds to wait for a run to reach a state.
RUN_TIMEOUT = 180

# Variables of the calling environment that would change the server's
# runtime, jobs, state or tokens behind a test's back.
_FLWD_VARIABLES = (
    "FLWD_RUNTIME",
    "FLWD_JOBS_PATH",
    "FLWD_STATE_DIR",
    "FLWD_TOKEN",
)

FINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out", "error")


def test_runtimes():
    """Return the runtimes named in FLWD_TEST_RUNTIMES, in order."""
    text = os.environ.get("FLWD_TEST_RUNTIMES") or "podman"
    return [name.strip() for name in text.split(",") if name.strip()]


def sh_job(job, script, args=(), **fields):
    """Return the YAML text of a job that runs SCRIPT with busybox sh -c.

    Values are written as JSON, which YAML reads as flow syntax.
    """
    lines = [
        f"id: {job}",
        "executor: container",
        f"interpreter: {json.dumps('container:' + TEST_IMAGE)}",
        f"command: {json.dumps(['sh', '-c', script])}",
    ]
    if args:
        lines.append("args:")
        lines.extend(f"  - {json.dumps(arg)}" for arg in args)
    lines.extend(f"{key}: {json.dumps(value)}" for key, value in fields.items())
    return "\n".join(lines) + "\n"


class Response:
    """One HTTP response, read whole."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        text = self.body[:2000].decode("utf-8", "replace")
        return f"HTTP {self.status} {self.headers} {text}"


class Server:
    """A flwd-httpd process and its log."""

    def __init__(self, argv, env, log_path):
        self.argv = argv
        self.log_path = log_path
        self.port = None
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )

    def log(self):
        with open(self.log_path, "rb") as log:
            return log.read().decode("utf-8", "replace")

    def wait_for_log(self, pattern, timeout):
        """Return the first match of PATTERN in the log, waiting up to
        TIMEOUT seconds; None when the time runs out or the server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                return re.search(pattern, self.log())
            time.sleep(0.05)
        return None

    def wait_listening(self):
        match = self.wait_for_log(r"listening on 127\.0\.0\.1:(\d+)", START_TIMEOUT)
        if match:
            self.port = int(match.group(1))
        return match is not None

    def connection(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, token=TOKEN, headers=None, conn=None):
        """Send one request and return its Response. BODY may be a dict
        (sent as JSON), bytes or str."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            all_headers.setdefault("Content-Type", "application/json")
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=all_headers)
            reply = conn.getresponse()
            data = reply.read()
            headers = {key.lower(): value for key, value in reply.getheaders()}
            return Response(reply.status, headers, data)
        finally:
            if own:
                conn.close()

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Send SIG and return the exit status, or None if still running."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class ServerTestCase(unittest.TestCase):
    """Base of the server tests: a jobs directory from JOBS, a state
    directory per test, and helpers to start servers and wait for runs.

    JOBS maps a job id to the spec text returned by a function of the id.
    RUNTIME is the container runtime the server uses.
    """

    JOBS = {}
    RUNTIME = None

    def setUp(self):
        super().setUp()
        for path, what in ((FLWD_HTTPD, "FLWD_HTTPD"), (FLWD_INIT, "FLWD_INIT")):
            if not os.access(path, os.X_OK):
                self.fail(f"{what} '{path}' is not an executable file; build first")
        self.runtime = self.RUNTIME or test_runtimes()[0]
        self.dir = tempfile.mkdtemp(prefix="flwd-httpd-test-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        # Containers run as other uids of a user namespace and must reach
        # the run directories below.
        os.chmod(self.dir, 0o755)
        self.jobs_dir = os.path.join(self.dir, "jobs")
        self.state_dir = os.path.join(self.dir, "state")
        os.mkdir(self.jobs_dir)
        os.mkdir(self.state_dir, 0o755)
        for job, make_spec in self.JOBS.items():
            with open(os.path.join(self.jobs_dir, f"{job}.yaml"), "w") as spec:
                spec.write(make_spec(job))
        self.servers = []
        self.addCleanup(self._remove_containers)

    def tearDown(self):
        for server in self.servers:
            server.close()
        super().tearDown()

    def server_env(self, token=TOKEN):
        env = {k: v for k, v in os.environ.items() if k not in _FLWD_VARIABLES}
        env["FLWD_INIT"] = FLWD_INIT
        if token is not None:
            env["FLWD_TOKEN"] = token
        return env

    def server_argv(self, *extra):
        return [
            FLWD_HTTPD,
            "--listen", "127.0.0.1:0",
            "--jobs", self.jobs_dir,
            "--state-dir", self.state_dir,
            "--runtime", self.runtime,
            *extra,
        ]

    def spawn_server(self, *extra, env=None):
        """Start a server with EXTRA options and return it, not waiting."""
        log_path = os.path.join(self.dir, f"server-{len(self.servers)}.log")
        server = Server(self.server_argv(*extra), env or self.server_env(), log_path)
        self.servers.append(server)
        return server

    def start_server(self, *extra, env=None):
        """Start a server and wait until it listens."""
        server = self.spawn_server(*extra, env=env)
        if not server.wait_listening():
            self.fail(f"flwd-httpd did not start listening:{self.logs()}")
        return server

    def logs(self):
        """Return every server log of this test, for failure messages."""
        parts = []
        for i, server in enumerate(self.servers):
            text = server.log()
            if len(text) > 6000:
                text = "...\n" + text[-6000:]
            parts.append(f"\n--- server {i} ({server.argv}) log:\n{text}")
        return "".join(parts)

    def assertStatus(self, response, status):
        self.assertEqual(
            response.status, status, f"unexpected response {response!r}{self.logs()}"
        )

    def assertError(self, response, status, code):
        """Assert STATUS and a JSON error body with CODE and a message."""
        self.assertStatus(response, status)
        self.assertEqual(response.header("Content-Type"), "application/json")
        doc = response.json()
        self.assertEqual(sorted(doc), ["error"], repr(response))
        self.assertEqual(doc["error"]["code"], code, repr(response))
        self.assertTrue(doc["error"]["message"], repr(response))

    def create_run(self, server, job, args=None, headers=None):
        body = {"job": job}
        if args is not None:
            body["args"] = args
        response = server.request("POST", "/runs", body, headers=headers)
        self.assertStatus(response, 201)
        return response.json()

    def wait_state(self, server, run_id, states, timeout=RUN_TIMEOUT):
        """Poll GET /runs/ID until its state is in STATES; return the run."""
        deadline = time.monotonic() + timeout
        run = None
        while time.monotonic() < deadline:
            response = server.request("GET", f"/runs/{run_id}")
            self.assertStatus(response, 200)
            run = response.json()
            if run["state"] in states:
                return run
            time.sleep(0.2)
        self.fail(f"run {run_id} did not reach {states} in {timeout}s: {run}{self.logs()}")

    def containers_of_run(self, run_id):
        result = subprocess.run(
            [self.runtime, "ps", "--all", "--quiet", f"--filter=label=io.flwd.run-id={run_id}"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.split()

    def _remove_containers(self):
        """Remove every container of this test's state directory."""
        label = f"label=io.flwd.state-dir={self.state_dir}"
        result = subprocess.run(
            [self.runtime, "ps", "--all", "--quiet", f"--filter={label}"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        ids = result.stdout.split()
        if ids:
            subprocess.run([self.runtime, "rm", "--force", *ids],
                           capture_output=True, timeout=120, check=False)


def runtime_classes(cases, module_globals):
    """Define one TestCase per runtime of FLWD_TEST_RUNTIMES from mixin
    CASES, named after CASES and the runtime (RunsPodman, RunsDocker)."""
    for runtime in test_runtimes():
        suffix = re.sub(r"[^0-9A-Za-z]", "", runtime.title())
        name = f"{cases.__name__}{suffix}"
        module_globals[name] = type(
            name, (cases, ServerTestCase),
            {"RUNTIME": runtime, "__module__": module_globals["__name__"]},
        )
