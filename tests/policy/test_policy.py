#!/usr/bin/env python3
"""Tests of profiles, policy files and secrets through the flwd CLI.

The tests start real containers with each runtime of FLWD_TEST_RUNTIMES and
reuse the set-up of tests/integration/support.py. `meson test` fills in the
environment:

  FLWD_BIN            the flwd binary (required)
  FLWD_INIT           the flwd-init helper (required)
  FLWD_TEST_RUNTIMES  comma-separated runtimes to test (default "podman")
  FLWD_TEST_IMAGE     image with busybox sh and the users root, app (1000)
                      and nobody (default localhost/flwd-busybox:latest)

A runtime named in FLWD_TEST_RUNTIMES that cannot run the test image fails
its tests. The secret tests build two images FROM the test image, one with
USER 1000 and one with USER app, and remove them when they end.
"""

import hashlib
import http.server
import json
import os
import secrets
import selectors
import sys
import tempfile
import textwrap
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import support  # noqa: E402
from support import event_types, read_until, runtime_command, sh_job  # noqa: E402

SECRET = "api_token"
SECRET_PATH = f"/run/secrets/{SECRET}"
GIB = 1024 * 1024 * 1024

# Images built FROM the test image by the secret tests. The tag carries
# the token of this test process, so that two processes never remove each
# other's images.
UID_IMAGE = f"localhost/flwd-busybox-app:uid-{support.RUN_TOKEN}"
NAMED_IMAGE = f"localhost/flwd-busybox-app:name-{support.RUN_TOKEN}"

# The limited network of each runtime: its --network value and the
# interfaces that the container has besides lo.
LIMITED_NETWORK = {
    "podman": ("--network=slirp4netns:allow_host_loopback=false", ["tap0"]),
    "docker": ("--network=bridge", ["eth0"]),
}

# Variables of the calling environment that would give flwd a policy or
# secrets behind a test's back.
POLICY_VARIABLES = ("FLWD_POLICY", "FLWD_SECRETS_DIR")

# A rule that grants everything to a job id that no test uses, placed
# first in the test policies, so that a rule matching the wrong job is
# noticed.
UNRELATED_RULE = """\
  - jobs: ["unrelated-job", "other-*"]
    profiles: [permissive, disabled]
    allow:
      writable_rootfs: true
      capabilities: [NET_BIND_SERVICE, CHOWN]
      network: limited
      secrets_as_env: ["*"]
      resources: {memory: 4Gi, pids: 4096}
"""

# Prints the mode, owner, size, digest, mount options and writability of
# /run/secrets/api_token as KEY=VALUE lines. The shell never expands the
# value, so the value reaches no output.
SECRET_PROBE = f"""\
f={SECRET_PATH}
echo "stat=$(stat -c '%a %u' $f)"
echo "uid=$(id -u)"
echo "size=$(wc -c < $f)"
echo "sha256=$(sha256sum < $f | cut -d ' ' -f 1)"
if (echo x > $f) 2>/dev/null; then echo write=ok; else echo write=failed; fi
if chmod 600 $f 2>/tmp/chmod.err; then echo chmod=ok; else echo "chmod=$(cat /tmp/chmod.err)"; fi
awk '$2 ~ "^/run/secrets" {{print "mount=" $2 " " $4}}' /proc/mounts
ls -A /run/secrets | sed 's/^/entry=/'
echo "env=$(env | grep -ci api_token)"
"""

# Waits, for at most 60 s, until the test creates the file "release" in the
# run's /work, so that the test can look at the running container first.
WAIT_FOR_RELEASE = """\
i=0
while [ ! -e /work/release ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i + 1)); done
"""


def permissive_job(script, **fields):
    return lambda job: sh_job(job, script, profile="permissive", **fields)


def rule_lines(text):
    """Return the 1-based line numbers of the rules ("- jobs:") in TEXT."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip().startswith("- jobs:")
    ]


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def decisions_of(events):
    return [event["data"] for event in events if event["type"] == "policy.decision"]


def decision_summary(decisions):
    """Return (request, granted, rule) of each decision, sorted by request."""
    return sorted((d.get("request"), d.get("granted"), d.get("rule")) for d in decisions)


def interfaces(proc_net_dev):
    """Return the sorted interface names of a /proc/net/dev text."""
    names = [line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:] if ":" in line]
    return sorted(names)


def probe_fields(text):
    """Return the KEY=VALUE lines of TEXT as a dict of lists of values."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    return fields


def files_containing(top, needle):
    """Return the paths under TOP whose content or name contains NEEDLE (bytes)."""
    found = []
    for directory, subdirs, names in os.walk(top):
        for name in subdirs + names:
            if needle in os.fsencode(name):
                found.append(os.path.join(directory, name))
        for name in names:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as f:
                    if needle in f.read():
                        found.append(path)
            except PermissionError as error:
                found.append(f"{path} (unreadable: {error})")
    return found


def paths_named(top, name):
    """Return the paths under TOP whose last component is NAME."""
    return [
        os.path.join(directory, entry)
        for directory, subdirs, names in os.walk(top)
        for entry in subdirs + names
        if entry == name
    ]


def environments_containing(needle, skip_pids=()):
    """Return "PID: ARGS" (cut to 100 characters) of the processes whose
    environment contains NEEDLE.

    Processes whose environment this user cannot read are left out.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip_pids:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if needle in environ:
            found.append(f"{entry}: {cmdline[:100]}")
    return found


def read_event(proc, event_type, timeout):
    """Read PROC's stderr until a whole event line of EVENT_TYPE arrives.

    Returns everything read and the event, or None for the event when the
    time ran out or stderr closed first.
    """
    data = b""
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            for line in data.splitlines(keepends=True):
                if line.startswith(b'{"seq":') and line.endswith(b"\n"):
                    event = json.loads(line)
                    if event["type"] == event_type:
                        return data, event
            left = deadline - time.monotonic()
            if left <= 0:
                return data, None
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return data, None
            data += chunk


class LoopbackServer:
    """An HTTP server on the host's 127.0.0.1 that responds to every GET with
    a random token, so that a container that reaches it would print the token."""

    def __init__(self):
        self.token = secrets.token_hex(8)
        token = self.token.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(token)))
                self.end_headers()
                self.wfile.write(token)

            def log_message(self, format, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class PolicyHelpers:
    """Helpers shared by the policy and secret tests, mixed in before a
    support test case."""

    def setUp(self):
        super().setUp()
        for key in list(self.env):
            if key in POLICY_VARIABLES or key.startswith("FLWD_SECRET_"):
                del self.env[key]

    def write_policy(self, text):
        """Write TEXT (dedented) to a new policy file.

        Returns the path and the "PATH:LINE" of each rule, in order.
        """
        text = textwrap.dedent(text)
        fd, path = tempfile.mkstemp(prefix="policy-", suffix=".yaml", dir=self.class_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path, [f"{path}:{line}" for line in rule_lines(text)]

    def make_secrets_dir(self, values):
        """Create a secrets directory with one file per NAME: VALUE (bytes)."""
        directory = tempfile.mkdtemp(prefix="secrets-", dir=self.class_dir)
        for name, value in values.items():
            path = os.path.join(directory, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(value)
        return directory

    def run_flwd(self, name, *args, policy=None, secrets_dir=None, flags=(), env=None, command="run"):
        """Run `flwd --events [FLAGS] COMMAND JOB ARGS` on this class's runtime."""
        options = ["--events", *flags]
        if policy is not None:
            options += ["--policy", policy]
        if secrets_dir is not None:
            options += ["--secrets-dir", secrets_dir]
        return self.flwd(*options, command, self.job(name), *args, runtime=self.runtime, env=env)

    def plan_of(self, name, *args, **kwargs):
        result = self.run_flwd(name, *args, command="plan", **kwargs)
        self.assertExit(result, 0)
        return json.loads(result.stdout)

    def assertDecisions(self, result, name, expected):
        """Assert that the policy.decision events are EXPECTED, a list of
        (request, granted, rule) in any order, each for job NAME."""
        decisions = decisions_of(result.events())
        for decision in decisions:
            self.assertEqual(decision.get("job"), self.job(name), f"decision {decision}{result.describe()}")
        self.assertEqual(decision_summary(decisions), sorted(expected), result.describe())

    def error_line(self, result, code):
        lines = [line for line in result.err.splitlines() if line.startswith(f"flwd: {code}: ")]
        self.assertEqual(len(lines), 1, f"expected one 'flwd: {code}:' line{result.describe()}")
        return lines[0]

    def assertDenied(self, result, name, request, policy=None):
        """Assert that the run of NAME failed with policy.denied for REQUEST
        before any container was created."""
        self.assertError(result, "policy.denied")
        line = self.error_line(result, "policy.denied")
        self.assertIn(f"'{self.job(name)}'", line, "the message does not name the job")
        self.assertIn(request, line, "the message does not name the request")
        if policy is not None:
            self.assertIn(policy, line, "the message does not name the policy file")
        self.assertNotIn("container.created", event_types(result.events()), result.describe())

    def assertNoContainerCreated(self, result):
        self.assertNotIn("container.created", event_types(result.events()), result.describe())

    def run_id_of(self, result):
        """Return the run id from the run.created event of RESULT."""
        created = [event for event in result.events() if event["type"] == "run.created"]
        self.assertEqual(len(created), 1, f"expected one run.created event{result.describe()}")
        for event in created:
            for key in ("run", "id", "run_id"):
                if key in event["data"]:
                    return event["data"][key]
        self.fail(f"run.created has no run id: {created}")

    def assertNowhereInState(self, value):
        """Assert that no file of the state directory contains VALUE and
        that no path there is named after the secret."""
        self.assertEqual(files_containing(self.state_dir, value), [], "the secret value is in the state directory")
        self.assertEqual(paths_named(self.state_dir, SECRET), [], "a secret file is left in the state directory")


# ---- Policy files and spec fields, without containers --------------------


# Broken policy files: (name, text, line, column of the value at fault).
BROKEN_POLICIES = [
    ("unknown rule key", 'rules:\n  - jobs: ["a"]\n    colour: red\n', 3, 5),
    ("unknown top key", "rules: []\nextra: 1\n", 2, 1),
    ("rules not a list", 'rules: {jobs: ["a"]}\n', 1, 8),
    ("glob not a string", "rules:\n  - jobs: [{a: 1}]\n", 2, 12),
    ("unknown profile", 'rules:\n  - jobs: ["a"]\n    profiles: [superuser]\n', 3, 16),
    (
        "unknown capability",
        'rules:\n  - jobs: ["a"]\n    allow:\n      capabilities: [NET_BIND_SERVIC]\n',
        4,
        22,
    ),
    ("invalid memory", 'rules:\n  - jobs: ["a"]\n    allow:\n      resources: {memory: lots}\n', 4, 27),
    ("unknown network", 'rules:\n  - jobs: ["a"]\n    allow:\n      network: wide\n', 4, 16),
    ("empty file", "", 1, 1),
]

VALID_POLICY = """\
rules:
  - jobs: ["demo-*", "report"]
    profiles: [permissive, disabled]
    allow:
      writable_rootfs: true
      capabilities: [NET_BIND_SERVICE]
      network: limited
      secrets_as_env: [api_token]
      resources: {memory: 2Gi, pids: 1024}
  - jobs: ["local"]
    profiles: [disabled]
    allow:
      secrets_as_env: ["*"]
"""


def spec_text(job, **fields):
    return sh_job(job, "true", **fields)


# Specs with an invalid use of the new fields: (name, fields).
INVALID_SPECS = [
    ("secure with writable rootfs", {"requests": {"writable_rootfs": True}}),
    ("secure with capability", {"requests": {"capabilities": ["NET_BIND_SERVICE"]}}),
    ("secure with network", {"requests": {"network": "limited"}}),
    (
        "secure with secret env",
        {"secrets": [SECRET], "requests": {"secrets_as_env": [SECRET]}},
    ),
    (
        "env secret not declared",
        {"profile": "permissive", "secrets": [SECRET], "requests": {"secrets_as_env": ["other_token"]}},
    ),
    ("unknown capability", {"profile": "permissive", "requests": {"capabilities": ["NET_BIND_SERVIC"]}}),
    ("unknown network", {"profile": "permissive", "requests": {"network": "wide"}}),
    ("unknown profile", {"profile": "relaxed"}),
]

VALID_SPECS = [
    ("secret names", {"secrets": [SECRET, "db_token"]}),
    ("secret mappings", {"secrets": [{"name": SECRET}, {"name": "db_token"}]}),
    (
        "permissive requests",
        {
            "profile": "permissive",
            "secrets": [SECRET],
            "requests": {
                "writable_rootfs": True,
                "capabilities": ["NET_BIND_SERVICE"],
                "network": "limited",
                "secrets_as_env": [SECRET],
            },
        },
    ),
    ("secure defaults", {"requests": {"writable_rootfs": False, "capabilities": [], "network": "none", "secrets_as_env": []}}),
]


class PolicyFiles(PolicyHelpers, support.FlwdTestCase):
    JOBS = {"plain": lambda job: sh_job(job, "echo plain")}

    def write_file(self, text, suffix=".yaml"):
        fd, path = tempfile.mkstemp(suffix=suffix, dir=self.class_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertConfigInvalid(self, result, path, line, column, status):
        self.assertError(result, "config.invalid", status=status)
        message = self.error_line(result, "config.invalid")
        self.assertIn(f"{path}:{line}:{column}: ", message, result.describe())

    def test_validate_valid_policy(self):
        path = self.write_file(VALID_POLICY)
        result = self.flwd("validate", path)
        self.assertExit(result, 0)
        self.assertIn(path, result.out)
        self.assertEqual(result.err, "")

    def test_validate_broken_policies(self):
        for name, text, line, column in BROKEN_POLICIES:
            if not text:
                continue
            with self.subTest(name):
                path = self.write_file(text)
                result = self.flwd("validate", path)
                self.assertConfigInvalid(result, path, line, column, status=1)

    def test_validate_empty_file(self):
        # Without a top-level "rules:" key, validate reads a file as a spec.
        path = self.write_file("")
        result = self.flwd("validate", path)
        self.assertError(result, "spec.invalid", status=1)
        self.assertIn(f"{path}:1:1: ", self.error_line(result, "spec.invalid"))

    def test_run_with_broken_policy(self):
        # An invalid value of a global option exits 2, as --runtime does.
        for name, text, line, column in BROKEN_POLICIES:
            with self.subTest(name):
                path = self.write_file(text)
                result = self.flwd("--events", "--policy", path, "run", self.job("plain"))
                self.assertConfigInvalid(result, path, line, column, status=2)
                self.assertEqual(result.events(), [], result.describe())
                self.assertEqual(result.out, "")

    def test_policy_variable_broken(self):
        # An invalid environment exits 125, as FLWD_RUNTIME does.
        text = 'rules:\n  - jobs: ["a"]\n    profiles: [superuser]\n'
        path = self.write_file(text)
        env = dict(self.env, FLWD_POLICY=path)
        result = self.flwd("--events", "run", self.job("plain"), env=env)
        self.assertConfigInvalid(result, path, 3, 16, status=125)
        self.assertEqual(result.events(), [], result.describe())

    def test_policy_file_missing(self):
        path = os.path.join(self.class_dir, "no-such-policy.yaml")
        result = self.flwd("--policy", path, "run", self.job("plain"))
        self.assertError(result, "config.invalid", status=2)
        self.assertIn(path, self.error_line(result, "config.invalid"))

    def test_validate_invalid_specs(self):
        for name, fields in INVALID_SPECS:
            with self.subTest(name):
                path = self.write_file(spec_text("bad-spec", **fields))
                result = self.flwd("validate", path)
                self.assertError(result, "spec.invalid", status=1)
                self.assertIn(f"{path}:", self.error_line(result, "spec.invalid"))

    def test_validate_valid_specs(self):
        for name, fields in VALID_SPECS:
            with self.subTest(name):
                path = self.write_file(spec_text("good-spec", **fields))
                result = self.flwd("validate", path)
                self.assertExit(result, 0)
                self.assertIn(path, result.out)


# ---- Profiles and relaxations ---------------------------------------------


CGROUP_MEMORY = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; true"
CGROUP_PIDS = "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; true"

# Probes the host's 127.0.0.1:PORT through each address that could lead
# there, with busybox nc because the static busybox wget of the test image
# crashes (SIGSEGV) before it connects. The control line shows that nc
# works, through a listener on the container's own loopback.
NETWORK_PROBE = r"""
(echo control-ok | nc -l -p 18080 127.0.0.1 >/dev/null &)
i=0
until control=$(nc -w 3 127.0.0.1 18080 </dev/null 2>/dev/null) || [ $i -ge 20 ]; do sleep 0.2; i=$((i + 1)); done
echo "control=$control"
cat /proc/net/dev
gateway=$(ip route | awk '/^default/ {print $3}')
echo "gateway=$gateway"
for host in 10.0.2.2 $gateway 127.0.0.1; do
  if body=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 $host $FLWD_ARG_PORT 2>&1) && [ -n "$body" ]; then
    echo "reached=$host $body"
  else
    echo "blocked=$host"
  fi
done
"""


# Each relaxation: job name -> (request in events, allow entry that grants
# it, allow entry of a rule for the same job that does not).
RELAXATIONS = {
    "rootfs": ("writable_rootfs", "writable_rootfs: true", "capabilities: [NET_BIND_SERVICE]"),
    "cap": ("capability:NET_BIND_SERVICE", "capabilities: [NET_BIND_SERVICE]", "capabilities: [CHOWN]"),
    "net": ("network:limited", "network: limited", "writable_rootfs: true"),
    "envsecret": (f"secret_as_env:{SECRET}", f"secrets_as_env: [{SECRET}]", "secrets_as_env: [other_token]"),
    "memory": ("resources.memory", "resources: {memory: 2Gi}", "resources: {memory: 1536Mi}"),
    "pids": ("resources.pids", "resources: {pids: 1024}", "resources: {pids: 512}"),
}


class Relaxations(PolicyHelpers):
    JOBS = {
        "plain": lambda job: sh_job(job, "echo plain"),
        "defaults": lambda job: sh_job(job, "echo defaults", resources={"memory": "1Gi", "pids": 256}),
        "permissive": permissive_job("echo permissive"),
        # Podman gives / mode 0555, so the write goes below it.
        "rootfs": permissive_job("touch /etc/flwd-probe && echo touched", requests={"writable_rootfs": True}),
        "cap": permissive_job("grep CapEff /proc/self/status", requests={"capabilities": ["NET_BIND_SERVICE"]}),
        "net": permissive_job("cat /proc/net/dev", requests={"network": "limited"}),
        "netprobe": permissive_job(
            NETWORK_PROBE,
            args=[{"name": "port", "type": "integer", "required": True}],
            requests={"network": "limited"},
        ),
        # The job prints a digest of the variable rather than its value,
        # so the run's log does not contain the value.
        "envsecret": permissive_job(
            'echo "count=$(env | grep -c \'^API_TOKEN=\')"\n'
            'echo "sha256=$(printf %s "$API_TOKEN" | sha256sum | cut -d \' \' -f 1)"',
            secrets=[SECRET],
            requests={"secrets_as_env": [SECRET]},
        ),
        "memory": permissive_job(CGROUP_MEMORY, resources={"memory": "2Gi"}),
        "pids": permissive_job(CGROUP_PIDS, resources={"pids": 1024}),
        "securememory": lambda job: sh_job(job, "echo ran", resources={"memory": "2Gi"}),
        "disabled": lambda job: sh_job(job, "touch /etc/flwd-probe && echo touched", profile="disabled"),
        "secure": lambda job: sh_job(job, "touch /etc/flwd-probe && echo touched"),
    }

    def policy_for(self, name, allow, profiles="[permissive]"):
        """Return a policy whose second rule matches job NAME by a glob and
        has PROFILES and the single ALLOW entry."""
        return (
            "rules:\n"
            + UNRELATED_RULE
            + f'  - jobs: ["no-such-job", "{name}-it*"]\n'
            + f"    profiles: {profiles}\n"
            + "    allow:\n"
            + f"      {allow}\n"
        )

    def run_granted(self, name, *args, flags=(), **kwargs):
        """Run NAME under a policy that grants its relaxation, check the
        decisions and return the Result."""
        request, allow, _ = RELAXATIONS[name]
        policy, rules = self.write_policy(self.policy_for(name, allow))
        result = self.run_flwd(name, *args, policy=policy, flags=flags, **kwargs)
        self.assertExit(result, 0)
        self.assertDecisions(result, name, [("profile:permissive", True, rules[1]), (request, True, rules[1])])
        return result

    def check_denied(self, name, **kwargs):
        """Run NAME under a policy whose rule for it allows something else."""
        request, _, other = RELAXATIONS[name]
        policy, rules = self.write_policy(self.policy_for(name, other))
        result = self.run_flwd(name, policy=policy, **kwargs)
        self.assertDenied(result, name, request, policy)
        self.assertDecisions(result, name, [("profile:permissive", True, rules[1]), (request, False, None)])
        return result

    # -- profiles

    def test_secure_without_policy(self):
        result = self.run_flwd("plain")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "plain\n")
        self.assertDecisions(result, "plain", [])

    def test_default_limits_need_nothing(self):
        result = self.run_flwd("defaults")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "defaults\n")
        self.assertDecisions(result, "defaults", [])

    def test_permissive_without_policy(self):
        result = self.run_flwd("permissive")
        self.assertDenied(result, "permissive", "profile:permissive")
        self.assertDecisions(result, "permissive", [("profile:permissive", False, None)])

    def test_relaxation_without_policy(self):
        result = self.run_flwd("rootfs")
        self.assertDenied(result, "rootfs", "profile:permissive")
        decisions = decisions_of(result.events())
        granted = [d for d in decisions if d.get("granted") is not False]
        self.assertEqual(granted, [], result.describe())
        self.assertIn(("profile:permissive", False, None), decision_summary(decisions))

    def test_rule_of_other_job(self):
        policy, _ = self.write_policy("rules:\n" + UNRELATED_RULE)
        result = self.run_flwd("rootfs", policy=policy)
        self.assertDenied(result, "rootfs", "profile:permissive", policy)
        granted = [d for d in decisions_of(result.events()) if d.get("granted") is not False]
        self.assertEqual(granted, [], result.describe())

    def test_permissive_granted(self):
        policy, rules = self.write_policy(
            f"""\
            rules:
              - jobs: ["{self.job('permissive')}"]
                profiles: [permissive]
            """
        )
        result = self.run_flwd("permissive", policy=policy)
        self.assertExit(result, 0)
        self.assertEqual(result.out, "permissive\n")
        self.assertDecisions(result, "permissive", [("profile:permissive", True, rules[0])])

    def test_policy_variable(self):
        request, allow, _ = RELAXATIONS["rootfs"]
        policy, rules = self.write_policy(self.policy_for("rootfs", allow))
        result = self.run_flwd("rootfs", env=dict(self.env, FLWD_POLICY=policy))
        self.assertExit(result, 0)
        self.assertEqual(result.out, "touched\n")
        self.assertDecisions(result, "rootfs", [("profile:permissive", True, rules[1]), (request, True, rules[1])])

    def test_disabled_denied(self):
        policy, _ = self.write_policy(self.policy_for("disabled", "writable_rootfs: true"))
        result = self.run_flwd("disabled", policy=policy)
        self.assertDenied(result, "disabled", "profile:disabled", policy)
        self.assertDecisions(result, "disabled", [("profile:disabled", False, None)])

    def test_disabled_granted(self):
        policy, rules = self.write_policy(
            self.policy_for("disabled", "writable_rootfs: false", profiles="[disabled]")
        )
        plan = self.plan_of("disabled", policy=policy)
        self.assertNotIn("--read-only", plan["argv"])
        self.assertNotIn("--cap-drop=ALL", plan["argv"])
        self.assertEqual(plan["profile"], "disabled")
        result = self.run_flwd("disabled", policy=policy)
        self.assertExit(result, 0)
        self.assertEqual(result.out, "touched\n")
        self.assertDecisions(result, "disabled", [("profile:disabled", True, rules[1])])

    # -- one relaxation at a time

    def test_rootfs_granted(self):
        result = self.run_granted("rootfs", flags=("-v",))
        self.assertEqual(result.out, "touched\n")
        logs = [
            line
            for line in result.err.splitlines()
            if line.startswith("flwd: ") and "writable_rootfs" in line and self.job("rootfs") in line
        ]
        self.assertNotEqual(logs, [], f"no log line for the decision{result.describe()}")

    def test_rootfs_denied(self):
        result = self.check_denied("rootfs", flags=("-v",))
        logs = [
            line
            for line in result.err.splitlines()
            if line.startswith("flwd: ")
            and not line.startswith("flwd: policy.denied: ")
            and "writable_rootfs" in line
        ]
        self.assertNotEqual(logs, [], f"no log line for the denied decision{result.describe()}")

    def test_rootfs_read_only_when_secure(self):
        result = self.run_flwd("secure")
        self.assertNotEqual(result.returncode, 0, result.describe())
        self.assertIn("Read-only file system", result.err)

    def test_cap_granted(self):
        result = self.run_granted("cap")
        self.assertEqual(result.out, "CapEff:\t0000000000000400\n")

    def test_cap_denied(self):
        self.check_denied("cap")

    def test_net_granted(self):
        result = self.run_granted("net")
        _, extra = LIMITED_NETWORK[self.runtime]
        self.assertEqual(interfaces(result.out), sorted(["lo", *extra]), result.describe())

    def test_net_denied(self):
        self.check_denied("net")

    def test_net_none_when_secure(self):
        plan = self.plan_of("plain")
        self.assertEqual(plan["network"]["mode"], "none")
        self.assertIn("--network=none", plan["argv"])
        self.assertEqual(plan["policy"], [])

    def test_net_plan(self):
        request, allow, _ = RELAXATIONS["net"]
        policy, rules = self.write_policy(self.policy_for("net", allow))
        plan = self.plan_of("net", policy=policy)
        self.assertEqual(plan["network"]["mode"], "limited")
        flag, _ = LIMITED_NETWORK[self.runtime]
        self.assertIn(flag, plan["argv"])
        self.assertNotIn("--network=none", plan["argv"])
        published = [arg for arg in plan["argv"] if arg in ("-p", "-P") or arg.startswith("--publish")]
        self.assertEqual(published, [])
        self.assertEqual(
            decision_summary(plan["policy"]),
            [("network:limited", True, rules[1]), ("profile:permissive", True, rules[1])],
        )
        for decision in plan["policy"]:
            self.assertEqual(decision["job"], self.job("net"))

    def test_net_host_loopback(self):
        server = LoopbackServer()
        self.addCleanup(server.close)
        request, allow, _ = RELAXATIONS["net"]
        policy, _ = self.write_policy(self.policy_for("netprobe", allow))
        result = self.run_flwd("netprobe", "--port", str(server.port), policy=policy)
        self.assertExit(result, 0)
        probe = probe_fields(result.out)
        self.assertEqual(probe.get("control"), ["control-ok"], f"nc does not work in the container{result.describe()}")
        self.assertNotIn(server.token, result.out, "the container reached the host's 127.0.0.1")
        self.assertNotIn("reached", probe, result.describe())
        self.assertNotEqual(probe.get("gateway"), [""], f"no default route{result.describe()}")
        self.assertIn("10.0.2.2", probe.get("blocked", []), result.describe())

    def test_envsecret_granted(self):
        value = secrets.token_hex(16)
        secrets_dir = self.make_secrets_dir({SECRET: (value + "\n").encode()})
        result = self.run_granted("envsecret", secrets_dir=secrets_dir)
        self.assertEqual(result.out, f"count=1\nsha256={sha256_hex(value)}\n")
        self.assertNowhereInState(value.encode())

    def test_envsecret_star(self):
        value = secrets.token_hex(16)
        secrets_dir = self.make_secrets_dir({SECRET: value.encode()})
        policy, rules = self.write_policy(self.policy_for("envsecret", 'secrets_as_env: ["*"]'))
        result = self.run_flwd("envsecret", policy=policy, secrets_dir=secrets_dir)
        self.assertExit(result, 0)
        self.assertEqual(result.out, f"count=1\nsha256={sha256_hex(value)}\n")
        self.assertDecisions(
            result,
            "envsecret",
            [("profile:permissive", True, rules[1]), (f"secret_as_env:{SECRET}", True, rules[1])],
        )

    def test_envsecret_denied(self):
        secrets_dir = self.make_secrets_dir({SECRET: secrets.token_hex(16).encode()})
        self.check_denied("envsecret", secrets_dir=secrets_dir)

    def test_envsecret_line_break(self):
        # An env file cannot carry a line break inside a value.
        first, second = secrets.token_hex(8), secrets.token_hex(8)
        secrets_dir = self.make_secrets_dir({SECRET: f"{first}\n{second}\n".encode()})
        _, allow, _ = RELAXATIONS["envsecret"]
        policy, _ = self.write_policy(self.policy_for("envsecret", allow))
        result = self.run_flwd("envsecret", policy=policy, secrets_dir=secrets_dir)
        self.assertExit(result, 125)
        self.assertNoContainerCreated(result)
        for part in (first, second):
            self.assertNotIn(part, result.out + result.err)
        self.assertNowhereInState(first.encode())

    def check_limit(self, name, script_output, expected):
        """Check the cgroup limit that the job printed, where the runtime
        can set limits on this host."""
        plan = self.plan_of(name, policy=self.write_policy(self.policy_for(name, RELAXATIONS[name][1]))[0])
        if not plan["guarantees"]["resource_limits"]:
            self.assertIn("resource limits", " ".join(plan["guarantees_missing"]))
            return plan
        self.assertEqual(script_output.split(), [str(expected)])
        return plan

    def test_memory_granted(self):
        result = self.run_granted("memory")
        plan = self.check_limit("memory", result.out, 2 * GIB)
        self.assertEqual(plan["resources"]["memory_bytes"], 2 * GIB)

    def test_memory_denied(self):
        self.check_denied("memory")

    def test_memory_under_secure(self):
        result = self.run_flwd("securememory")
        self.assertDenied(result, "securememory", "resources.memory")
        self.assertDecisions(result, "securememory", [("resources.memory", False, None)])

    def test_pids_granted(self):
        result = self.run_granted("pids")
        plan = self.check_limit("pids", result.out, 1024)
        self.assertEqual(plan["resources"]["pids"], 1024)

    def test_pids_denied(self):
        self.check_denied("pids")


support.runtime_classes(Relaxations, globals())


# ---- Secrets --------------------------------------------------------------


class Secrets(PolicyHelpers):
    JOBS = {
        "asroot": lambda job: sh_job(job, SECRET_PROBE, secrets=[SECRET]),
        "asuid": lambda job: sh_job(job, SECRET_PROBE, image=UID_IMAGE, secrets=[{"name": SECRET}]),
        "asname": lambda job: sh_job(job, SECRET_PROBE, image=NAMED_IMAGE, secrets=[SECRET]),
        "failing": lambda job: sh_job(job, f"test -r {SECRET_PATH} && exit 3", secrets=[SECRET]),
        "two": lambda job: sh_job(job, "echo ran", secrets=[SECRET, "db_token"]),
        # The job never prints the value: it prints only whether its own
        # environment contains it.
        "quiet": lambda job: sh_job(
            job,
            f'v=$(cat {SECRET_PATH})\ncase "$(env)" in *"$v"*) echo env-has-secret;; *) echo env-clean;; esac\n'
            + "echo started\n"
            + WAIT_FOR_RELEASE
            + "echo released\n",
            secrets=[SECRET],
        ),
        "deniedsecret": permissive_job("echo ran", secrets=[SECRET], requests={"writable_rootfs": True}),
    }

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.images = []
        if support.runtime_problem(cls.runtime):
            return
        context = tempfile.mkdtemp(prefix="image-", dir=cls.class_dir)
        for image, user in ((UID_IMAGE, "1000"), (NAMED_IMAGE, "app")):
            containerfile = os.path.join(context, f"Containerfile.{user}")
            with open(containerfile, "w", encoding="utf-8") as f:
                f.write(f"FROM {support.TEST_IMAGE}\nUSER {user}\n")
            argv = [cls.runtime, "build", "--quiet", "--tag", image, "--file", containerfile, context]
            env = None
            if cls.runtime == "podman":
                argv.insert(2, "--pull=never")
            else:
                # The legacy builder uses the local test image without a
                # BuildKit component.
                env = dict(os.environ, DOCKER_BUILDKIT="0")
            result = support.run_command(argv, timeout=300, env=env)
            if result.returncode != 0:
                cls.tearDownClass()
                raise AssertionError(f"building the test image {image} failed:{result.describe()}")
            cls.images.append(image)

    @classmethod
    def tearDownClass(cls):
        for image in cls.images:
            support.remove_image(cls.runtime, image)
        cls.images = []
        super().tearDownClass()

    def probe(self, name, value, expected_uid):
        """Run job NAME with VALUE as the secret and check what it saw."""
        secrets_dir = self.make_secrets_dir({SECRET: value})
        result = self.run_flwd(name, secrets_dir=secrets_dir)
        self.assertExit(result, 0)
        fields = probe_fields(result.out)
        self.assertEqual(fields.get("uid"), [str(expected_uid)], result.describe())
        self.assertEqual(fields.get("stat"), [f"400 {expected_uid}"], result.describe())
        self.assertEqual(fields.get("size"), [str(len(value))], result.describe())
        self.assertEqual(fields.get("sha256"), [hashlib.sha256(value).hexdigest()], result.describe())
        self.assertEqual(fields.get("write"), ["failed"], result.describe())
        chmod = fields.get("chmod", [""])
        self.assertIn("Read-only file system", chmod[0], result.describe())
        self.assertEqual(fields.get("entry"), [SECRET], result.describe())
        mounts = fields.get("mount", [])
        self.assertNotEqual(mounts, [], f"no mount under /run/secrets{result.describe()}")
        for mount in mounts:
            options = mount.split()[1].split(",")
            self.assertEqual(options[0], "ro", f"mount {mount} is writable{result.describe()}")
        self.assertEqual(fields.get("env"), ["0"], f"the secret is in the environment{result.describe()}")
        self.assertNowhereInState(value)
        return result

    def test_file_as_root(self):
        self.probe("asroot", secrets.token_bytes(48) + b"\n\x00 end\n", 0)

    def test_file_as_uid(self):
        self.probe("asuid", secrets.token_bytes(48) + b"\n", 1000)

    def test_file_as_named_user(self):
        value = secrets.token_bytes(48)
        if self.runtime == "podman":
            self.probe("asname", value, 1000)
            return
        # With Docker, flwd rejects an image whose USER is a name, because it
        # cannot map the name to the uid that must own the file.
        secrets_dir = self.make_secrets_dir({SECRET: value})
        result = self.run_flwd("asname", secrets_dir=secrets_dir)
        self.assertError(result, "config.invalid")
        self.assertIn("'app'", self.error_line(result, "config.invalid"))
        self.assertNoContainerCreated(result)
        self.assertNowhereInState(value)

    def test_removed_after_failure(self):
        value = secrets.token_hex(16).encode()
        secrets_dir = self.make_secrets_dir({SECRET: value})
        result = self.run_flwd("failing", secrets_dir=secrets_dir)
        self.assertExit(result, 3)
        self.assertNotIn(value, result.stdout + result.stderr)
        self.assertNowhereInState(value)

    def test_from_env(self):
        value = secrets.token_hex(16)
        env = dict(self.env, FLWD_SECRET_API_TOKEN=value)
        result = self.run_flwd("asroot", flags=("--secrets-from-env",), env=env)
        self.assertExit(result, 0)
        fields = probe_fields(result.out)
        self.assertEqual(fields.get("sha256"), [hashlib.sha256(value.encode()).hexdigest()], result.describe())
        self.assertEqual(fields.get("env"), ["0"], result.describe())
        self.assertNotIn(value, result.err)
        self.assertNowhereInState(value.encode())

    def test_dir_wins(self):
        file_value = secrets.token_hex(16).encode()
        env_value = secrets.token_hex(16)
        secrets_dir = self.make_secrets_dir({SECRET: file_value})
        env = dict(self.env, FLWD_SECRET_API_TOKEN=env_value)
        result = self.run_flwd("asroot", secrets_dir=secrets_dir, flags=("--secrets-from-env",), env=env)
        self.assertExit(result, 0)
        fields = probe_fields(result.out)
        self.assertEqual(fields.get("sha256"), [hashlib.sha256(file_value).hexdigest()], result.describe())

    def test_env_needs_flag(self):
        value = secrets.token_hex(16)
        env = dict(self.env, FLWD_SECRET_API_TOKEN=value)
        result = self.run_flwd("asroot", env=env)
        self.assertError(result, "secret.not_found")
        self.assertIn(f"'{SECRET}'", self.error_line(result, "secret.not_found"))
        self.assertNoContainerCreated(result)
        self.assertNotIn(value, result.out + result.err)

    def test_dir_variable(self):
        value = secrets.token_bytes(32)
        secrets_dir = self.make_secrets_dir({SECRET: value})
        result = self.run_flwd("asroot", env=dict(self.env, FLWD_SECRETS_DIR=secrets_dir))
        self.assertExit(result, 0)
        fields = probe_fields(result.out)
        self.assertEqual(fields.get("sha256"), [hashlib.sha256(value).hexdigest()], result.describe())

    def test_missing_secret(self):
        value = secrets.token_hex(16)
        secrets_dir = self.make_secrets_dir({SECRET: value.encode()})
        result = self.run_flwd("two", secrets_dir=secrets_dir, flags=("-v", "-v"))
        self.assertError(result, "secret.not_found")
        self.assertIn("'db_token'", self.error_line(result, "secret.not_found"))
        self.assertNoContainerCreated(result)
        self.assertEqual(result.out, "")
        self.assertNotIn(value, result.err)
        show = self.flwd("show", self.run_id_of(result))
        self.assertExit(show, 0)
        self.assertIn("secret.not_found", show.out)
        self.assertNotIn(value, show.out + show.err)
        self.assertNowhereInState(value.encode())

    def test_denied_run_hides_value(self):
        value = secrets.token_hex(16)
        secrets_dir = self.make_secrets_dir({SECRET: value.encode()})
        result = self.run_flwd("deniedsecret", secrets_dir=secrets_dir, flags=("-v", "-v"))
        self.assertDenied(result, "deniedsecret", "profile:permissive")
        self.assertNotIn(value, result.out + result.err)
        show = self.flwd("show", self.run_id_of(result))
        self.assertExit(show, 0)
        self.assertNotIn(value, show.out + show.err)
        self.assertNowhereInState(value.encode())

    def test_value_nowhere(self):
        value = secrets.token_hex(16)
        needle = value.encode()
        secrets_dir = self.make_secrets_dir({SECRET: needle + b"\n"})
        found = {}

        plan = self.run_flwd("quiet", secrets_dir=secrets_dir, command="plan", flags=("-v", "-v"))
        self.assertExit(plan, 0)
        found["plan"] = needle in plan.stdout + plan.stderr

        secrets_before = self.podman_secrets()
        proc = self.start_flwd(
            "-v", "-v", "--events", "--secrets-dir", secrets_dir, "run", self.job("quiet"), runtime=self.runtime
        )
        stderr, created = read_event(proc, "container.created", support.COMMAND_TIMEOUT)
        self.assertIsNotNone(created, f"no container.created event; stderr:\n{stderr.decode(errors='replace')}")
        container = created["data"]["container"]
        run_id = container.removeprefix("flwd-")
        stdout = read_until(proc, proc.stdout, b"started\n", support.COMMAND_TIMEOUT)
        self.assertTrue(stdout.endswith(b"started\n"), f"the job did not start; stdout: {stdout!r}")

        # While the job waits: every process's arguments and readable
        # environment, and the runtime's view of the container.
        ps = support.run_command(["ps", "-eo", "args"])
        self.assertExit(ps, 0)
        found["ps"] = needle in ps.stdout
        found["environ"] = environments_containing(needle)
        inspect = runtime_command(self.runtime, "inspect", container)
        self.assertExit(inspect, 0)
        found["inspect"] = needle in inspect.stdout
        sources = [
            mount.get("Source")
            for mount in json.loads(inspect.stdout)[0].get("Mounts", [])
            if mount.get("Destination", "").startswith("/run/secrets")
        ]

        release = os.path.join(self.state_dir, "runs", run_id, "work", "release")
        with open(release, "w", encoding="utf-8"):
            pass
        rest_out, rest_err = proc.communicate(timeout=support.COMMAND_TIMEOUT)
        stdout += rest_out
        stderr += rest_err
        self.assertEqual(proc.returncode, 0, f"stdout: {stdout!r}\nstderr: {stderr.decode(errors='replace')}")
        self.assertEqual(stdout, b"env-clean\nstarted\nreleased\n")
        found["stdout"] = needle in stdout
        found["stderr and events"] = needle in stderr

        for args in (("show", run_id), ("logs", run_id), ("logs", run_id, "--json"), ("runs", "--json")):
            result = self.flwd(*args)
            self.assertExit(result, 0)
            found[" ".join(args)] = needle in result.stdout + result.stderr

        found["state files"] = files_containing(self.state_dir, needle)
        found["secret files"] = paths_named(self.state_dir, SECRET)
        found["mount sources left"] = [source for source in sources if source and os.path.exists(source)]
        found["podman secrets added"] = sorted(set(self.podman_secrets()) - set(secrets_before))
        leaks = {place: what for place, what in found.items() if what}
        self.assertEqual(leaks, {}, "the secret value, or a file of it, was found here")
        self.assertNotEqual(sources, [], f"no mount at /run/secrets in:\n{inspect.out}")

    def test_env_source_not_inherited(self):
        # flwd's own environment contains the value; the runtime processes
        # that it starts, which live as long as the container, must not.
        value = secrets.token_hex(16)
        env = dict(self.env, FLWD_SECRET_API_TOKEN=value)
        proc = self.start_flwd(
            "--events", "--secrets-from-env", "run", self.job("quiet"), runtime=self.runtime, env=env
        )
        stderr, created = read_event(proc, "container.created", support.COMMAND_TIMEOUT)
        self.assertIsNotNone(created, f"no container.created event; stderr:\n{stderr.decode(errors='replace')}")
        run_id = created["data"]["container"].removeprefix("flwd-")
        stdout = read_until(proc, proc.stdout, b"started\n", support.COMMAND_TIMEOUT)
        self.assertTrue(stdout.endswith(b"started\n"), f"the job did not start; stdout: {stdout!r}")

        inheritors = environments_containing(value.encode(), skip_pids=(proc.pid,))

        with open(os.path.join(self.state_dir, "runs", run_id, "work", "release"), "w", encoding="utf-8"):
            pass
        rest_out, rest_err = proc.communicate(timeout=support.COMMAND_TIMEOUT)
        stdout += rest_out
        stderr += rest_err
        self.assertEqual(proc.returncode, 0, f"stdout: {stdout!r}\nstderr: {stderr.decode(errors='replace')}")
        self.assertEqual(stdout, b"env-clean\nstarted\nreleased\n")
        self.assertEqual(inheritors, [], "processes other than flwd have the value in their environment")

    def podman_secrets(self):
        """Return the names in Podman's own secret store; [] for Docker."""
        if self.runtime != "podman":
            return []
        result = runtime_command("podman", "secret", "ls", "--format={{.Name}}")
        self.assertExit(result, 0)
        return result.out.split()


support.runtime_classes(Secrets, globals())


if __name__ == "__main__":
    unittest.main(verbosity=2)
