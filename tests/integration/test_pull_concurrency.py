"""Pulls seen from several runs at once, and a pull that never ends.

Concurrent runs of one missing image must share one pull, even when they
run in separate flwd processes with one state directory. A run whose
registry accepts connections and never responds must still end at once on
SIGTERM.
"""

import os
import signal
import socket
import threading
import time
import unittest

import support
from support import event_types, job_yaml

CONCURRENT_RUNS = 10


class SilentRegistry:
    """A TCP server on 127.0.0.1 that accepts connections and never responds."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.connections = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self):
        self.server.close()
        for connection in self.connections:
            connection.close()


SILENT_REGISTRY = SilentRegistry()


def processes_mentioning(text):
    """Return the pids of processes whose command line contains TEXT."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if text.encode() in cmdline.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


class PullConcurrency:
    JOBS = {
        "remote": lambda job: job_yaml(job, ["echo", "pulled"], image=support.REGISTRY_IMAGE),
        "silent": lambda job: job_yaml(
            job, ["echo", "pulled"], image=f"127.0.0.1:{SILENT_REGISTRY.port}/flwd/silent-{support.RUN_TOKEN}:latest"
        ),
    }

    def run_concurrently(self):
        """Run the remote job CONCURRENT_RUNS times at once, the image absent."""
        if support.registry_address() is None:
            self.skipTest(
                f"no registry answers at FLWD_TEST_REGISTRY={os.environ.get('FLWD_TEST_REGISTRY', '(unset)')}"
            )
        support.remove_image(self.runtime, support.REGISTRY_IMAGE)
        self.addCleanup(support.remove_image, self.runtime, support.REGISTRY_IMAGE)
        self.assertFalse(support.image_present(self.runtime, support.REGISTRY_IMAGE), "the image is still present")

        # One run without any runtime creates the run store first, so that
        # the burst below tests the pull alone. Many processes that create a
        # store at once are the case of test_cli.StateDir.
        empty_bin = os.path.join(self.state_dir, "bin")
        os.mkdir(empty_bin)
        first = self.flwd("-q", self.job("remote"), env=dict(self.env, PATH=empty_bin))
        self.assertError(first, "container.runtime.unavailable")

        procs = [
            self.start_flwd("-q", "--events", self.job("remote"), runtime=self.runtime)
            for _ in range(CONCURRENT_RUNS)
        ]
        results = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=support.COMMAND_TIMEOUT)
            results.append(support.Result(proc.args, proc.returncode, stdout, stderr, 0.0))
        return results

    def test_concurrent_runs_succeed(self):
        for index, result in enumerate(self.run_concurrently()):
            with self.subTest(run=index):
                self.assertExit(result, 0)
                self.assertEqual(result.out, "pulled\n")

    def test_concurrent_runs_share_pull(self):
        results = self.run_concurrently()
        for result in results:
            self.assertExit(result, 0)
        pulls = sum(event_types(result.events()).count("image.pull_started") for result in results)
        self.assertEqual(pulls, 1, "pulls started by the concurrent runs")

    def test_cancel_silent_registry(self):
        image = f"127.0.0.1:{SILENT_REGISTRY.port}/flwd/silent-{support.RUN_TOKEN}"
        proc = self.start_flwd("-q", "--events", self.job("silent"), runtime=self.runtime)
        started = support.read_until(proc, proc.stderr, b'"image.pull_started"', 60)
        self.assertIn(b'"image.pull_started"', started, "the pull did not start")
        # Give the runtime time to connect, so that the pull really hangs.
        deadline = time.monotonic() + 10
        while not SILENT_REGISTRY.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIsNone(proc.poll(), "flwd ended before the signal")

        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=support.COMMAND_TIMEOUT)
        result = support.Result(proc.args, proc.returncode, stdout, started + stderr, time.monotonic() - sent)
        self.assertExit(result, 128 + signal.SIGTERM)
        self.assertLess(result.elapsed, 5, result.describe())
        self.assertEqual(result.events()[-1]["data"]["state"], "cancelled", result.describe())
        # The runtime's pull command ends with flwd. A daemon such as
        # dockerd may go on with the pull by itself, but that is no process
        # of flwd's.
        deadline = time.monotonic() + 5
        while processes_mentioning(image) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(processes_mentioning(image), [], "pull processes left behind")


support.runtime_classes(PullConcurrency, globals())


def tearDownModule():
    SILENT_REGISTRY.close()


if __name__ == "__main__":
    unittest.main()
