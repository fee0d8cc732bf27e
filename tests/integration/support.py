"""Shared set-up of the flwd integration tests.

The tests drive the built flwd binary against real container runtimes. They
read their configuration from the environment, which `meson test` fills in:

  FLWD_BIN            the flwd binary (default: build/flwd/flwd of this checkout)
  FLWD_INIT           the flwd-init helper (default: build/libflwd/flwd-init)
  FLWD_TEST_IMAGE     image with busybox sh (default localhost/flwd-busybox:latest)
  FLWD_TEST_RUNTIMES  comma-separated runtimes to test (default "podman")
  FLWD_TEST_REGISTRY  host:port of a plain-HTTP registry with flwd/busybox:latest
  FLWD_TEST_VERSION   the version that `flwd --version` must print

A runtime named in FLWD_TEST_RUNTIMES that cannot run the test image fails
its tests, because CI lists only the runtimes it has set up.
"""

import json
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from dataclasses import dataclass

_TOP = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))

FLWD_BIN = os.environ.get("FLWD_BIN") or os.path.join(_TOP, "build", "flwd", "flwd")
FLWD_INIT = os.environ.get("FLWD_INIT") or os.path.join(
    _TOP, "build", "libflwd", "flwd-init"
)
TEST_IMAGE = os.environ.get("FLWD_TEST_IMAGE") or "localhost/flwd-busybox:latest"
KNOWN_RUNTIMES = ("podman", "docker")

# The registry image of the pull tests. REGISTRY only names it, and the
# tests check with registry_address() that the registry responds.
REGISTRY = os.environ.get("FLWD_TEST_REGISTRY") or "127.0.0.1:5000"
REGISTRY_REPOSITORY = "flwd/busybox"
REGISTRY_IMAGE = f"{REGISTRY}/{REGISTRY_REPOSITORY}:latest"

# Job ids carry a token of this test process, so that the label checks of
# one process never see the containers of another that runs at the same time.
RUN_TOKEN = secrets.token_hex(3)

# Variables of the calling environment that would change which runtime,
# jobs or state flwd uses behind a test's back.
_FLWD_VARIABLES = (
    "FLWD_RUNTIME",
    "FLWD_PODMAN",
    "FLWD_DOCKER",
    "FLWD_JOBS_PATH",
    "FLWD_STATE_DIR",
)

# Maximum seconds that one flwd command may take before the test fails.
# Generous, because the CI machine has two cores and runs other work.
COMMAND_TIMEOUT = 180


def test_runtimes():
    """Return the runtimes named in FLWD_TEST_RUNTIMES, in order."""
    text = os.environ.get("FLWD_TEST_RUNTIMES") or "podman"
    return [name.strip() for name in text.split(",") if name.strip()]


def job_id(name):
    """Return the job id for NAME, made unique to this test process."""
    return f"{name}-it{RUN_TOKEN}"


def job_yaml(job, command, args=(), image=TEST_IMAGE, **fields):
    """Return the YAML text of a container job spec.

    Values are written as JSON, which is valid YAML flow syntax, so every
    string reaches flwd exactly as given here.
    """
    lines = [
        f"id: {job}",
        "executor: container",
        f"interpreter: {json.dumps('container:' + image)}",
    ]
    if command is not None:
        lines.append(f"command: {json.dumps(command)}")
    if args:
        lines.append("args:")
        for arg in args:
            lines.append(f"  - {json.dumps(arg)}")
    for key, value in fields.items():
        lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def sh_job(job, script, args=(), **fields):
    """Return the spec of a job that runs SCRIPT with busybox sh -c."""
    return job_yaml(job, ["sh", "-c", script], args, **fields)


@dataclass
class Result:
    """Outcome of one flwd command."""

    argv: list
    returncode: int
    stdout: bytes
    stderr: bytes
    elapsed: float

    @property
    def out(self):
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self):
        return self.stderr.decode("utf-8", "replace")

    def job_stderr(self):
        """Return stderr without flwd's own lines, which start with "flwd: "."""
        lines = self.stderr.splitlines(keepends=True)
        return b"".join(line for line in lines if not line.startswith(b"flwd: "))

    def events(self):
        """Return the --events records on stderr, in order."""
        found = []
        for line in self.stderr.splitlines():
            if not line.startswith(b'{"seq":'):
                continue
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise AssertionError(f"invalid event line {line!r}: {error}") from None
        return found

    def describe(self):
        """Return the command, its status and its output for a failure message."""
        stdout = self.out
        if len(stdout) > 2000:
            stdout = stdout[:2000] + f"... ({len(self.stdout)} bytes in all)"
        stderr = self.err
        if len(stderr) > 4000:
            stderr = stderr[:4000] + f"... ({len(self.stderr)} bytes in all)"
        argv = [arg if len(arg) <= 200 else arg[:200] + "..." for arg in self.argv]
        return (
            f"\ncommand: {argv}\nexit status: {self.returncode}"
            f" after {self.elapsed:.2f}s\nstdout:\n{stdout}\nstderr:\n{stderr}"
        )


def event_types(events):
    return [event["type"] for event in events]


def run_command(argv, timeout=COMMAND_TIMEOUT, env=None):
    """Run ARGV (never through a shell) and return its Result."""
    start = time.monotonic()
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        timeout=timeout,
        check=False,
    )
    return Result(
        list(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start
    )


def runtime_command(runtime, *args, timeout=120):
    """Run the runtime's own CLI, such as `podman ps`, and return its Result."""
    return run_command([runtime, *args], timeout=timeout)


_runtime_problems = {}


def runtime_problem(runtime):
    """Return why RUNTIME cannot run the test image, or None when it can.

    The result is cached for the rest of the process.
    """
    if runtime in _runtime_problems:
        return _runtime_problems[runtime]
    problem = None
    if runtime not in KNOWN_RUNTIMES:
        problem = (
            f"FLWD_TEST_RUNTIMES names '{runtime}', but flwd supports only "
            f"{', '.join(KNOWN_RUNTIMES)}"
        )
    elif shutil.which(runtime) is None:
        problem = f"FLWD_TEST_RUNTIMES names '{runtime}', but it is not on PATH"
    else:
        try:
            result = runtime_command(runtime, "image", "inspect", "--format={{.Id}}", TEST_IMAGE, timeout=60)
        except subprocess.TimeoutExpired:
            problem = f"'{runtime} image inspect {TEST_IMAGE}' did not finish in 60s"
        else:
            if result.returncode != 0:
                problem = (
                    f"'{runtime}' cannot see the test image {TEST_IMAGE}; build it "
                    f"with scripts/build-image.sh:{result.describe()}"
                )
    _runtime_problems[runtime] = problem
    return problem


def containers_with_label(runtime, label):
    """Return the ids of RUNTIME's containers, running or not, with LABEL (k=v)."""
    result = runtime_command(runtime, "ps", "--all", "--quiet", f"--filter=label={label}")
    if result.returncode != 0:
        raise AssertionError(f"listing containers failed:{result.describe()}")
    return result.out.split()


def image_present(runtime, reference):
    result = runtime_command(runtime, "image", "inspect", "--format={{.Id}}", reference)
    return result.returncode == 0


def remove_image(runtime, reference):
    """Remove the name REFERENCE from RUNTIME's store, if it is there.

    Only the name goes, and the image itself only when no other name is
    left. The registry image shares its id with TEST_IMAGE, and a forced
    removal, or one by digest in Podman, would delete TEST_IMAGE as well.
    """
    if runtime != "podman":
        runtime_command(runtime, "rmi", reference)
        return
    found = runtime_command(runtime, "image", "inspect", "--format={{.Id}}", reference)
    if found.returncode != 0:
        return
    image_id = found.out.strip()
    runtime_command(runtime, "untag", image_id, reference)
    names = runtime_command(runtime, "image", "inspect", "--format={{len .RepoTags}}", image_id)
    if names.returncode == 0 and names.out.strip() == "0":
        runtime_command(runtime, "rmi", image_id)


def registry_address():
    """Return FLWD_TEST_REGISTRY when its /v2/ endpoint responds, else None."""
    address = os.environ.get("FLWD_TEST_REGISTRY")
    if not address:
        return None
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=5) as reply:
            if reply.status != 200:
                return None
    except (urllib.error.URLError, OSError):
        return None
    return address


def registry_digest(address, repository, tag):
    """Return the manifest digest ("sha256:...") of REPOSITORY:TAG in the registry."""
    request = urllib.request.Request(
        f"http://{address}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": ", ".join(
                [
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                ]
            )
        },
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        digest = reply.headers.get("Docker-Content-Digest")
    if not digest or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise AssertionError(f"registry {address} gave no digest for {repository}:{tag}")
    return digest


def read_until(proc, stream, needle, timeout):
    """Read STREAM of PROC until NEEDLE (bytes) appears or TIMEOUT seconds pass.

    Returns everything read, which ends with NEEDLE unless the time ran out or
    the stream closed.
    """
    data = b""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while needle not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data


class FlwdTestCase(unittest.TestCase):
    """Base of every integration test, with helpers to run flwd.

    Each class gets its own jobs directory and each test its own state
    directory. A subclass sets JOBS to a dict that maps a short name to a
    function of the job id that returns the spec text. self.job(name)
    returns that id.
    """

    JOBS = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for path, what in ((FLWD_BIN, "FLWD_BIN"), (FLWD_INIT, "FLWD_INIT")):
            if not os.access(path, os.X_OK):
                raise AssertionError(
                    f"{what} '{path}' is not an executable file; build flwd "
                    "first or set the variable"
                )
        cls.class_dir = tempfile.mkdtemp(prefix="flwd-it-")
        # Containers run as other uids of their user namespace, so they
        # must be able to reach the run directories that flwd creates below.
        os.chmod(cls.class_dir, 0o755)
        cls.jobs_dir = os.path.join(cls.class_dir, "jobs")
        os.mkdir(cls.jobs_dir)
        cls.job_ids = []
        for name, make_spec in cls.JOBS.items():
            job = job_id(name)
            cls.job_ids.append(job)
            with open(os.path.join(cls.jobs_dir, f"{job}.yaml"), "w", encoding="utf-8") as spec:
                spec.write(make_spec(job))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.class_dir, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.state_dir = tempfile.mkdtemp(prefix="state-", dir=self.class_dir)
        os.chmod(self.state_dir, 0o755)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in _FLWD_VARIABLES
        }
        self.env.update(
            FLWD_INIT=FLWD_INIT,
            FLWD_STATE_DIR=self.state_dir,
            FLWD_JOBS_PATH=self.jobs_dir,
        )

    def job(self, name):
        return job_id(name)

    def flwd_argv(self, args, runtime=None):
        argv = [FLWD_BIN]
        if runtime:
            argv += ["--runtime", runtime]
        return argv + list(args)

    def flwd(self, *args, runtime=None, env=None, timeout=COMMAND_TIMEOUT):
        """Run flwd with ARGS and return its Result."""
        return run_command(
            self.flwd_argv(args, runtime), timeout=timeout, env=env or self.env
        )

    def start_flwd(self, *args, runtime=None, env=None):
        """Start flwd with ARGS in its own session and return the Popen.

        The caller waits for it. A cleanup kills it if it is still running
        when the test ends.
        """
        proc = subprocess.Popen(
            self.flwd_argv(args, runtime),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or self.env,
            start_new_session=True,
        )
        self.addCleanup(self._reap, proc)
        return proc

    @staticmethod
    def _reap(proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()

    def assertExit(self, result, status):
        self.assertEqual(
            result.returncode,
            status,
            f"expected exit status {status}{result.describe()}",
        )

    def assertError(self, result, code, status=125):
        """Assert that flwd failed with "flwd: CODE: ..." and exit STATUS."""
        self.assertExit(result, status)
        self.assertIn(f"flwd: {code}: ", result.err, result.describe())


class RuntimeTestCase(FlwdTestCase):
    """Base of tests that start containers with one runtime.

    Subclasses are generated per runtime by runtime_classes(). Each test
    fails when its runtime is unusable, and fails when a container of this
    class's jobs is left behind after it.
    """

    runtime = None

    def setUp(self):
        super().setUp()
        problem = runtime_problem(self.runtime)
        if problem:
            self.fail(problem)

    def tearDown(self):
        leftovers = []
        for job in self.job_ids:
            for container in containers_with_label(self.runtime, f"io.flwd.job-id={job}"):
                leftovers.append((job, container))
        if leftovers:
            runtime_command(self.runtime, "rm", "--force", *[c for _, c in leftovers])
        runs_dir = os.path.join(self.state_dir, "runs")
        left_runs = os.listdir(runs_dir) if os.path.isdir(runs_dir) else []
        super().tearDown()
        self.assertEqual(leftovers, [], f"{self.runtime} containers left behind by flwd")
        self.assertEqual(left_runs, [], f"run directories left in {runs_dir}")

    def run_job(self, name, *args, flags=("-q",), timeout=COMMAND_TIMEOUT):
        """Run job NAME with ARGS on this class's runtime and return the Result."""
        return self.flwd(*flags, self.job(name), *args, runtime=self.runtime, timeout=timeout)


def runtime_classes(cases, module_globals):
    """Define one TestCase per runtime of FLWD_TEST_RUNTIMES from mixin CASES.

    The classes are named CASES' name plus the runtime, such as RunPodman,
    and are added to MODULE_GLOBALS so that unittest finds them.
    """
    for runtime in test_runtimes():
        suffix = re.sub(r"[^0-9A-Za-z]", "", runtime.title()) or "Unnamed"
        name = f"{cases.__name__}{suffix}"
        module_globals[name] = type(
            name,
            (cases, RuntimeTestCase),
            {"runtime": runtime, "__module__": module_globals["__name__"]},
        )
