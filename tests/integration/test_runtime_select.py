"""How flwd chooses its container runtime, seen through `flwd plan`.

Each test gives flwd a PATH that contains only a directory of symbolic links
to the runtimes it should find. Podman is found by its binary alone, and
Docker also needs its daemon to respond on its socket.
"""

import json
import os
import shutil
import socket
import unittest

import support
from support import sh_job

# Maximum seconds that flwd may take to report that no runtime is usable.
UNAVAILABLE_LIMIT = 1.0


class RuntimeSelect(support.FlwdTestCase):
    JOBS = {"hello": lambda job: sh_job(job, "echo hello")}

    def setUp(self):
        super().setUp()
        self.env.pop("DOCKER_HOST", None)

    def bin_dir(self, *runtimes):
        """Return a new directory with links to RUNTIMES, for use as PATH."""
        path = os.path.join(self.state_dir, "bin-" + "-".join(runtimes or ("none",)))
        os.mkdir(path)
        for runtime in runtimes:
            target = shutil.which(runtime)
            if target is None:
                self.skipTest(f"{runtime} is not installed")
            os.symlink(target, os.path.join(path, runtime))
        return path

    def require_docker(self):
        # Choosing Docker needs a daemon that responds. CI lists docker in
        # FLWD_TEST_RUNTIMES only where one runs and this user may use it.
        if "docker" not in support.test_runtimes():
            self.skipTest("docker is not in FLWD_TEST_RUNTIMES")

    def plan(self, path, *options, **variables):
        env = dict(self.env, PATH=path, **variables)
        return self.flwd(*options, "plan", self.job("hello"), env=env)

    def assertChosen(self, result, runtime, path):
        self.assertExit(result, 0)
        plan = json.loads(result.stdout)
        self.assertEqual(plan["runtime"], runtime, result.describe())
        self.assertEqual(plan["runtime_path"], os.path.join(path, runtime))
        self.assertEqual(plan["argv"][0], os.path.join(path, runtime))

    def assertUnavailable(self, result, *mentions):
        self.assertError(result, "container.runtime.unavailable")
        for text in mentions:
            self.assertIn(text, result.err)
        self.assertEqual(result.out, "")

    def test_podman_only(self):
        path = self.bin_dir("podman")
        self.assertChosen(self.plan(path), "podman", path)

    def test_docker_only(self):
        self.require_docker()
        path = self.bin_dir("docker")
        self.assertChosen(self.plan(path), "docker", path)

    def test_both_prefers_podman(self):
        path = self.bin_dir("podman", "docker")
        self.assertChosen(self.plan(path), "podman", path)

    def test_variable_chooses_docker(self):
        self.require_docker()
        path = self.bin_dir("podman", "docker")
        self.assertChosen(self.plan(path, FLWD_RUNTIME="docker"), "docker", path)

    def test_option_overrides_variable(self):
        path = self.bin_dir("podman", "docker")
        result = self.plan(path, "--runtime", "podman", FLWD_RUNTIME="docker")
        self.assertChosen(result, "podman", path)

    def test_no_runtime_on_path(self):
        path = self.bin_dir()
        result = self.flwd(self.job("hello"), env=dict(self.env, PATH=path))
        self.assertUnavailable(result, "podman: not found on PATH", "docker: not found on PATH")
        self.assertLess(result.elapsed, UNAVAILABLE_LIMIT, result.describe())
        self.assertFalse(os.path.exists(os.path.join(self.state_dir, "runs")), "run files written")

    def test_no_runtime_plan(self):
        result = self.plan(self.bin_dir())
        self.assertUnavailable(result, "podman: not found on PATH", "docker: not found on PATH")
        self.assertLess(result.elapsed, UNAVAILABLE_LIMIT, result.describe())

    def test_chosen_docker_absent(self):
        # An explicit choice never falls back to the other runtime.
        path = self.bin_dir("podman")
        result = self.flwd("--runtime", "docker", self.job("hello"), env=dict(self.env, PATH=path))
        self.assertUnavailable(result, "docker: not found on PATH")
        self.assertNotIn("podman", result.err)
        self.assertLess(result.elapsed, UNAVAILABLE_LIMIT, result.describe())

    def test_variable_docker_absent(self):
        path = self.bin_dir("podman")
        result = self.plan(path, FLWD_RUNTIME="docker")
        self.assertUnavailable(result, "docker: not found on PATH")
        self.assertNotIn('"runtime"', result.out)

    def test_chosen_podman_absent(self):
        path = self.bin_dir("docker")
        result = self.plan(path, "--runtime", "podman")
        self.assertUnavailable(result, "podman: not found on PATH")

    def test_docker_daemon_absent(self):
        path = self.bin_dir("docker")
        socket_path = os.path.join(self.state_dir, "absent.sock")
        result = self.flwd(
            "--runtime", "docker", self.job("hello"),
            env=dict(self.env, PATH=path, DOCKER_HOST=f"unix://{socket_path}"),
        )
        self.assertUnavailable(result, socket_path)
        self.assertLess(result.elapsed, UNAVAILABLE_LIMIT, result.describe())

    def test_docker_daemon_silent(self):
        # A daemon that accepts the connection and never responds must not
        # hold flwd past its deadline.
        path = self.bin_dir("docker")
        socket_path = os.path.join(self.state_dir, "silent.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(socket_path)
            server.listen(8)
            result = self.flwd(
                "--runtime", "docker", self.job("hello"),
                env=dict(self.env, PATH=path, DOCKER_HOST=f"unix://{socket_path}"),
            )
        self.assertUnavailable(result, socket_path)
        # The probe gives up after less than a second, and the rest is
        # slack for a loaded machine.
        self.assertLess(result.elapsed, UNAVAILABLE_LIMIT + 0.5, result.describe())


if __name__ == "__main__":
    unittest.main()
