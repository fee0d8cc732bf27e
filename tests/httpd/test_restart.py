"""flwd-httpd: a crash (kill -9) with runs in flight and the restart that
adopts them, once per runtime of FLWD_TEST_RUNTIMES."""

import signal
import time
import unittest

from support import FINAL_STATES, TOKEN, ServerTestCase, runtime_classes, sh_job


class RestartCases:
    JOBS = {
        "short": lambda job: sh_job(job, "echo begin; sleep 3; exit 7"),
        "long": lambda job: sh_job(job, "echo begin; exec sleep 300"),
    }

    def test_kill_and_restart(self):
        server = self.start_server()
        short = self.create_run(server, "short")
        long = self.create_run(server, "long")
        self.wait_state(server, short["id"], ("running",))
        self.wait_state(server, long["id"], ("running",))

        self.assertEqual(server.stop(signal.SIGKILL), -signal.SIGKILL)
        # The short job exits while no server runs.
        time.sleep(5)
        self.assertEqual(len(self.containers_of_run(long["id"])), 1,
                         f"the long run's container must survive the crash{self.logs()}")

        restarted = self.start_server()
        short_run = self.wait_state(restarted, short["id"], FINAL_STATES)
        self.assertEqual(short_run["state"], "failed", f"{short_run}{self.logs()}")
        self.assertEqual(short_run["exit_status"], 7)
        long_run = restarted.request("GET", f"/runs/{long['id']}").json()
        self.assertEqual(long_run["state"], "running", f"{long_run}{self.logs()}")

        response = restarted.request("POST", f"/runs/{long['id']}:cancel")
        self.assertStatus(response, 202)
        long_run = self.wait_state(restarted, long["id"], FINAL_STATES)
        self.assertEqual(long_run["state"], "cancelled", f"{long_run}{self.logs()}")
        self.assertEqual(self.containers_of_run(short["id"]), [])
        self.assertEqual(self.containers_of_run(long["id"]), [])

    def test_follow_adopted_run(self):
        server = self.start_server()
        run = self.create_run(server, "long")
        self.wait_state(server, run["id"], ("running",))
        self.assertEqual(server.stop(signal.SIGKILL), -signal.SIGKILL)

        restarted = self.start_server()
        conn = restarted.connection(timeout=120)
        conn.request("GET", f"/runs/{run['id']}/events?follow=true",
                     headers={"Authorization": f"Bearer {TOKEN}"})
        reply = conn.getresponse()
        self.assertEqual(reply.status, 200)
        # The stream sends the stored events first, before the cancel.
        self.assertEqual(reply.readline(), b"id: 1\n")
        self.assertStatus(restarted.request("POST", f"/runs/{run['id']}:cancel"), 202)
        body = reply.read().decode()
        conn.close()
        self.assertIn('"type":"run.finished"', body, self.logs())
        self.assertIn('"state":"cancelled"', body)
        self.assertEqual(self.containers_of_run(run["id"]), [])


runtime_classes(RestartCases, globals())

if __name__ == "__main__":
    unittest.main()
