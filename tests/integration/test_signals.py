"""Signals to flwd stop the job's container politely, then forcefully, and
leave nothing behind."""

import signal
import time
import unittest

import support
from support import event_types, sh_job

# Seconds beyond a job's grace period that a stop may take on a slow,
# loaded machine: the runtime's stop, kill and removal all run in it.
SLACK = 5
# Maximum seconds to wait for a job to print "ready".
START_TIMEOUT = 60


class Signals:
    JOBS = {
        "sleep": lambda job: sh_job(job, "echo ready; sleep 300", stop_timeout="2s"),
        "trap": lambda job: sh_job(
            job,
            'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done',
            stop_timeout="10s",
        ),
        "ignore": lambda job: sh_job(
            job, 'trap "" TERM; echo ready; while :; do sleep 0.1; done', stop_timeout="2s"
        ),
    }

    def start_ready(self, name):
        """Start job NAME and return its process once the job printed ready."""
        proc = self.start_flwd("-q", "--events", self.job(name), runtime=self.runtime)
        output = support.read_until(proc, proc.stdout, b"ready\n", START_TIMEOUT)
        if output != b"ready\n":
            proc.kill()
            _, stderr = proc.communicate()
            self.fail(f"the job did not print ready in {START_TIMEOUT}s; stdout {output!r}, stderr:\n{stderr.decode(errors='replace')}")
        return proc

    def stop(self, proc, signum):
        """Send SIGNUM to flwd, wait for it and return its Result.

        The Result's elapsed time counts from the signal.
        """
        sent = time.monotonic()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=support.COMMAND_TIMEOUT)
        elapsed = time.monotonic() - sent
        result = support.Result(proc.args, proc.returncode, stdout, stderr, elapsed)
        return result

    def run_id(self, result):
        created = [e for e in result.events() if e["type"] == "run.created"]
        self.assertEqual(len(created), 1, result.describe())
        return created[0]["data"]["run"]

    def assertNoContainer(self, result):
        run_id = self.run_id(result)
        left = support.containers_with_label(self.runtime, f"io.flwd.run-id={run_id}")
        self.assertEqual(left, [], f"container of run {run_id} left behind{result.describe()}")

    def assertCancelled(self, result):
        finished = result.events()[-1]
        self.assertEqual(finished["type"], "run.finished", result.describe())
        self.assertEqual(finished["data"]["state"], "cancelled")

    def test_sigterm(self):
        proc = self.start_ready("sleep")
        result = self.stop(proc, signal.SIGTERM)
        self.assertExit(result, 128 + signal.SIGTERM)
        self.assertLess(result.elapsed, 2 + SLACK, result.describe())
        self.assertCancelled(result)
        self.assertNoContainer(result)

    def test_sigint(self):
        proc = self.start_ready("sleep")
        result = self.stop(proc, signal.SIGINT)
        self.assertExit(result, 128 + signal.SIGINT)
        self.assertLess(result.elapsed, 2 + SLACK, result.describe())
        self.assertCancelled(result)
        self.assertNoContainer(result)

    def test_sighup(self):
        proc = self.start_ready("sleep")
        result = self.stop(proc, signal.SIGHUP)
        self.assertExit(result, 128 + signal.SIGHUP)
        self.assertNoContainer(result)

    def test_job_traps_term(self):
        proc = self.start_ready("trap")
        result = self.stop(proc, signal.SIGTERM)
        self.assertExit(result, 128 + signal.SIGTERM)
        self.assertEqual(result.stdout, b"got-term\n")
        # The job exits on its own, long before its 10s grace would end.
        self.assertLess(result.elapsed, SLACK, result.describe())
        self.assertNotIn("container.killed", event_types(result.events()))
        self.assertNoContainer(result)

    def test_job_ignores_term(self):
        proc = self.start_ready("ignore")
        result = self.stop(proc, signal.SIGTERM)
        self.assertExit(result, 128 + signal.SIGTERM)
        # The job keeps its full 2s grace before the kill.
        self.assertGreater(result.elapsed, 1.5, result.describe())
        self.assertLess(result.elapsed, 2 + SLACK, result.describe())
        self.assertNoContainer(result)

    def test_second_signal(self):
        proc = self.start_ready("sleep")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=support.COMMAND_TIMEOUT)
        result = support.Result(proc.args, proc.returncode, stdout, stderr, time.monotonic() - sent)
        self.assertExit(result, 128 + signal.SIGTERM)
        self.assertLess(result.elapsed, 2 + SLACK, result.describe())
        self.assertNoContainer(result)

    def test_signal_during_start(self):
        # A signal may arrive in any step before the job runs: each must
        # end the run as cancelled without a container.
        for delay in (0.05, 0.2, 0.5):
            with self.subTest(delay=delay):
                proc = self.start_flwd("-q", "--events", self.job("sleep"), runtime=self.runtime)
                time.sleep(delay)
                result = self.stop(proc, signal.SIGTERM)
                if result.returncode == -signal.SIGTERM:
                    # The signal came before flwd set up its handlers, so
                    # the default action ended it before it started anything.
                    self.assertNotIn("container.started", event_types(result.events()))
                    continue
                self.assertExit(result, 128 + signal.SIGTERM)
                self.assertLess(result.elapsed, 2 + SLACK, result.describe())
                self.assertNoContainer(result)


support.runtime_classes(Signals, globals())

if __name__ == "__main__":
    unittest.main()
