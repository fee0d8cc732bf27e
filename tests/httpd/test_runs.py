"""flwd-httpd: runs in real containers: create, follow, cancel, idempotency,
metrics and shutdown, once per runtime of FLWD_TEST_RUNTIMES."""

import signal
import time
import unittest

from support import FINAL_STATES, ServerTestCase, runtime_classes, sh_job

NAME_ARG = [{"name": "name", "type": "string", "required": True}]
REQUEST_TIMEOUT = 2


def parse_sse(body):
    """Return the (id, data) pairs of a Server-Sent Events body, skipping
    comment lines."""
    items = []
    for block in body.decode().split("\n\n"):
        fields = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            items.append((int(fields["id"]), fields["data"]))
    return items


class RunsCases:
    JOBS = {
        "greet": lambda job: sh_job(job, 'echo "Hello, $FLWD_ARG_NAME"', NAME_ARG),
        # Prints over longer than --request-timeout, so a follow stream
        # must outlive the timeout of a silent client.
        "count": lambda job: sh_job(
            job, "for i in 1 2 3 4; do echo line $i; sleep 1; done; echo err >&2"),
        "sleeper": lambda job: sh_job(job, "echo started; exec sleep 300"),
    }

    def setUp(self):
        super().setUp()
        self.server = self.start_server("--request-timeout", str(REQUEST_TIMEOUT))

    def test_greeting_run(self):
        response = self.server.request("POST", "/runs", {"job": "greet", "args": {"name": "Alice"}})
        self.assertStatus(response, 201)
        run = response.json()
        self.assertEqual(response.header("Location"), f"/runs/{run['id']}")
        self.assertEqual(run["job"], "greet")
        self.assertEqual(run["args"], {"name": "Alice"})
        self.assertIn(run["state"], ("queued", "preparing", "running"))

        run = self.wait_state(self.server, run["id"], FINAL_STATES)
        self.assertEqual(run["state"], "succeeded", f"{run}{self.logs()}")
        self.assertEqual(run["exit_status"], 0)
        response = self.server.request("GET", f"/runs/{run['id']}/logs")
        self.assertStatus(response, 200)
        self.assertEqual(response.json(), {"lines": [{"n": 1, "stream": "stdout", "line": "Hello, Alice"}]})

        response = self.server.request("GET", f"/runs/{run['id']}/events")
        types = [event["type"] for event in response.json()["events"]]
        self.assertEqual(types[0], "run.created")
        self.assertEqual(types[-1], "run.finished")
        response = self.server.request("GET", "/runs?job=greet&state=succeeded")
        self.assertEqual([r["id"] for r in response.json()["runs"]], [run["id"]])
        self.assertEqual(self.containers_of_run(run["id"]), [])

    def test_cancel_running(self):
        run = self.create_run(self.server, "sleeper")
        self.wait_state(self.server, run["id"], ("running",))
        start = time.monotonic()
        response = self.server.request("POST", f"/runs/{run['id']}:cancel")
        self.assertStatus(response, 202)
        self.assertLess(time.monotonic() - start, 2, "the cancel must answer at once")
        self.assertEqual(response.json()["id"], run["id"])
        run = self.wait_state(self.server, run["id"], FINAL_STATES)
        self.assertEqual(run["state"], "cancelled")
        self.assertEqual(self.containers_of_run(run["id"]), [])

        response = self.server.request("POST", f"/runs/{run['id']}:cancel")
        self.assertError(response, 409, "run.finished")

    def test_cancel_finished(self):
        run = self.create_run(self.server, "greet", {"name": "Bob"})
        self.wait_state(self.server, run["id"], FINAL_STATES)
        response = self.server.request("POST", f"/runs/{run['id']}:cancel")
        self.assertError(response, 409, "run.finished")

    def test_idempotency(self):
        key = {"Idempotency-Key": "key-1"}
        first = self.server.request("POST", "/runs", {"job": "greet", "args": {"name": "Ann"}}, headers=key)
        self.assertStatus(first, 201)
        run_id = first.json()["id"]
        # The same request with other member order and spacing.
        body = '{ "args": {"name": "Ann"},  "job": "greet" }'
        again = self.server.request("POST", "/runs", body, headers=key)
        self.assertStatus(again, 200)
        self.assertEqual(again.json()["id"], run_id)
        self.assertEqual(again.header("Location"), f"/runs/{run_id}")

        other = self.server.request("POST", "/runs", {"job": "greet", "args": {"name": "Eve"}}, headers=key)
        self.assertError(other, 409, "request.invalid")
        runs = self.server.request("GET", "/runs").json()["runs"]
        self.assertEqual([r["id"] for r in runs], [run_id])

        bad = self.server.request("POST", "/runs", {"job": "greet", "args": {"name": "A"}},
                                  headers={"Idempotency-Key": "a" * 256})
        self.assertError(bad, 400, "request.invalid")
        self.wait_state(self.server, run_id, FINAL_STATES)

    def test_follow_events(self):
        run = self.create_run(self.server, "count")
        response = self.server.request("GET", f"/runs/{run['id']}/events?follow=true")
        self.assertStatus(response, 200)
        self.assertEqual(response.header("Content-Type"), "text/event-stream")
        items = parse_sse(response.body)
        seqs = [seq for seq, _ in items]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.assertIn('"type":"run.created"', items[0][1])
        self.assertIn('"type":"run.finished"', items[-1][1])
        self.assertIn('"state":"succeeded"', items[-1][1])

        stored = self.server.request("GET", f"/runs/{run['id']}/events").json()["events"]
        self.assertEqual(len(stored), len(items))
        after = self.server.request("GET", f"/runs/{run['id']}/events?follow=true&after=2")
        self.assertEqual([seq for seq, _ in parse_sse(after.body)], seqs[2:])

    def test_follow_logs(self):
        run = self.create_run(self.server, "count")
        response = self.server.request("GET", f"/runs/{run['id']}/logs?follow=true")
        self.assertStatus(response, 200)
        items = parse_sse(response.body)
        self.assertEqual([n for n, _ in items], [1, 2, 3, 4, 5])
        self.assertEqual(items[0][1], '{"n":1,"stream":"stdout","line":"line 1"}')
        self.assertEqual(items[4][1], '{"n":5,"stream":"stderr","line":"err"}')
        self.assertEqual(self.server.request("GET", f"/runs/{run['id']}").json()["state"], "succeeded")

        after = self.server.request("GET", f"/runs/{run['id']}/logs?follow=true&after=3")
        self.assertEqual([n for n, _ in parse_sse(after.body)], [4, 5])
        lines = self.server.request("GET", f"/runs/{run['id']}/logs?after=4").json()
        self.assertEqual(lines, {"lines": [{"n": 5, "stream": "stderr", "line": "err"}]})

    def test_metrics_after_run(self):
        run = self.create_run(self.server, "greet", {"name": "M"})
        self.wait_state(self.server, run["id"], FINAL_STATES)
        text = self.server.request("GET", "/metrics").body.decode()
        self.assertIn('flwd_runs{state="succeeded"} 1\n', text)
        self.assertIn("flwd_run_duration_seconds_count 1\n", text)
        self.assertIn('flwd_run_duration_seconds_bucket{le="+Inf"} 1\n', text)
        self.assertIn('flwd_http_requests_total{code="201"} 1\n', text)
        self.assertIn("flwd_image_pulls_total 0\n", text)

    def test_shutdown_leaves_runs(self):
        run = self.create_run(self.server, "sleeper")
        self.wait_state(self.server, run["id"], ("running",))
        conn = self.server.connection()
        self.assertStatus(self.server.request("GET", "/healthz", conn=conn), 200)

        self.server.proc.send_signal(signal.SIGTERM)
        self.assertIsNotNone(self.server.wait_for_log("received Terminated", 30), self.logs())
        response = self.server.request("POST", "/runs", {"job": "greet", "args": {"name": "X"}}, conn=conn)
        self.assertError(response, 503, "internal")
        self.assertEqual(response.header("Connection"), "close")
        conn.close()
        self.assertEqual(self.server.proc.wait(timeout=30), 0, self.logs())
        self.assertEqual(len(self.containers_of_run(run["id"])), 1, "the container must keep running")

        restarted = self.start_server()
        self.assertEqual(self.wait_state(restarted, run["id"], ("running",))["state"], "running")
        self.assertStatus(restarted.request("POST", f"/runs/{run['id']}:cancel"), 202)
        self.assertEqual(self.wait_state(restarted, run["id"], FINAL_STATES)["state"], "cancelled")
        self.assertEqual(self.containers_of_run(run["id"]), [])


runtime_classes(RunsCases, globals())

if __name__ == "__main__":
    unittest.main()
