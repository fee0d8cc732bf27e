"""flwd-httpd: authentication, request validation, jobs, plans and
errors, without starting containers."""

import os
import unittest

from support import TOKEN, ServerTestCase, sh_job

GREET_ARGS = [
    {"name": "name", "type": "string", "required": True},
    {"name": "times", "type": "integer", "default": 1},
]


class Api(ServerTestCase):
    JOBS = {
        "greet": lambda job: sh_job(job, 'echo "Hello, $FLWD_ARG_NAME"', GREET_ARGS),
    }

    def setUp(self):
        super().setUp()
        self.server = self.start_server()

    def test_healthz_without_auth(self):
        response = self.server.request("GET", "/healthz", token=None)
        self.assertStatus(response, 200)
        self.assertEqual(response.json(), {"status": "ok"})

    def test_auth_failures(self):
        cases = [
            ("no header", {}),
            ("wrong token", {"Authorization": "Bearer wrong-token"}),
            ("token prefix", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
            ("token with suffix", {"Authorization": f"Bearer {TOKEN}x"}),
            ("wrong scheme", {"Authorization": f"Basic {TOKEN}"}),
            ("scheme only", {"Authorization": "Bearer"}),
        ]
        for name, headers in cases:
            with self.subTest(name):
                response = self.server.request("GET", "/jobs", token=None, headers=headers)
                self.assertError(response, 401, "auth.unauthorized")
                self.assertEqual(response.header("WWW-Authenticate"), 'Bearer realm="flwd"')

    def test_auth_success_any_scheme_case(self):
        headers = {"Authorization": f"bearer {TOKEN}"}
        response = self.server.request("GET", "/jobs", token=None, headers=headers)
        self.assertStatus(response, 200)

    def test_token_never_logged(self):
        self.server.request("GET", "/jobs")
        self.server.request("GET", "/jobs", token="wrong-secret-value")
        log = self.server.log()
        self.assertIn("path=/jobs status=200", log)
        self.assertIn("path=/jobs status=401", log)
        self.assertNotIn(TOKEN, log)
        self.assertNotIn("wrong-secret-value", log)

    def test_jobs_list_and_get(self):
        response = self.server.request("GET", "/jobs")
        self.assertStatus(response, 200)
        jobs = response.json()["jobs"]
        self.assertEqual([job["id"] for job in jobs], ["greet"])
        self.assertEqual([arg["name"] for arg in jobs[0]["args"]], ["name", "times"])

        response = self.server.request("GET", "/jobs/greet")
        self.assertStatus(response, 200)
        self.assertEqual(response.json()["id"], "greet")

        response = self.server.request("GET", "/jobs/missing")
        self.assertError(response, 404, "job.not_found")
        response = self.server.request("GET", "/jobs/..")
        self.assertError(response, 404, "job.not_found")

    def test_plan(self):
        body = {"job": "greet", "args": {"name": "Alice"}}
        response = self.server.request("POST", "/plans", body)
        self.assertStatus(response, 200)
        plan = response.json()
        self.assertIn(os.environ.get("FLWD_TEST_IMAGE", "flwd-busybox"), str(plan))
        response = self.server.request("GET", "/runs")
        self.assertEqual(response.json(), {"runs": []}, "a plan must not create a run")

    def test_bad_json(self):
        for body in ['{"job": "greet",', "not json", '{"job": "greet"} x', "[]", '"greet"']:
            with self.subTest(body=body):
                response = self.server.request("POST", "/runs", body)
                self.assertError(response, 400, "request.invalid")

    def test_bad_fields(self):
        cases = [
            {"args": {"name": "A"}},
            {"job": 5},
            {"job": "greet", "args": [1]},
            {"job": "greet", "args": {"name": "A"}, "extra": 1},
        ]
        for body in cases:
            with self.subTest(body=body):
                response = self.server.request("POST", "/runs", body)
                self.assertError(response, 400, "request.invalid")

    def test_unknown_job(self):
        response = self.server.request("POST", "/runs", {"job": "missing", "args": {}})
        self.assertError(response, 404, "job.not_found")

    def test_wrong_argument_types(self):
        cases = [
            {"name": 5},
            {"name": "A", "times": "two"},
            {"name": "A", "unknown": 1},
            {},
        ]
        for args in cases:
            with self.subTest(args=args):
                response = self.server.request("POST", "/runs", {"job": "greet", "args": args})
                self.assertError(response, 422, "args.invalid")
        self.assertEqual(self.server.request("GET", "/runs").json(), {"runs": []})

    def test_unknown_runs(self):
        response = self.server.request("GET", "/runs/0123456789abcdef")
        self.assertError(response, 404, "run.not_found")
        response = self.server.request("GET", "/runs/0123456789abcdef/events")
        self.assertError(response, 404, "run.not_found")
        response = self.server.request("GET", "/runs/0123456789abcdef/logs?follow=true")
        self.assertError(response, 404, "run.not_found")
        response = self.server.request("POST", "/runs/0123456789abcdef:cancel")
        self.assertError(response, 404, "run.not_found")
        response = self.server.request("GET", "/runs/not%20an%20id")
        self.assertError(response, 404, "run.not_found")

    def test_runs_query_validation(self):
        for query in ["limit=0", "limit=1001", "limit=x", "offset=-1", "state=done"]:
            with self.subTest(query=query):
                response = self.server.request("GET", f"/runs?{query}")
                self.assertError(response, 400, "request.invalid")
        response = self.server.request("GET", "/runs?limit=1000&offset=0&state=running&job=greet")
        self.assertStatus(response, 200)
        self.assertEqual(response.json(), {"runs": []})

    def test_unknown_path_and_method(self):
        response = self.server.request("GET", "/nothing")
        self.assertError(response, 404, "request.invalid")
        response = self.server.request("DELETE", "/runs")
        self.assertError(response, 405, "request.invalid")
        self.assertEqual(response.header("Allow"), "POST, GET")
        response = self.server.request("GET", "/runs/0123456789abcdef:cancel")
        self.assertError(response, 405, "request.invalid")
        self.assertEqual(response.header("Allow"), "POST")

    def test_metrics(self):
        self.server.request("GET", "/nothing")
        response = self.server.request("GET", "/metrics")
        self.assertStatus(response, 200)
        self.assertTrue(response.header("Content-Type").startswith("text/plain"))
        text = response.body.decode()
        self.assertIn('flwd_runs{state="running"} 0\n', text)
        self.assertIn('flwd_http_requests_total{code="404"} 1\n', text)
        self.assertIn("flwd_run_duration_seconds_count 0\n", text)
        self.assertIn("flwd_image_pulls_total 0\n", text)
        response = self.server.request("GET", "/metrics", token=None)
        self.assertError(response, 401, "auth.unauthorized")


class Startup(ServerTestCase):
    """Options and tokens checked before the server listens."""

    def test_refuses_without_token(self):
        server = self.spawn_server(env=self.server_env(token=None))
        self.assertEqual(server.proc.wait(timeout=60), 2, self.logs())
        self.assertIn("no token configured", server.log())

    def test_dev_rejected_on_non_loopback(self):
        server = self.spawn_server("--dev", "--listen", "0.0.0.0:0",
                                   env=self.server_env(token=None))
        self.assertEqual(server.proc.wait(timeout=60), 2, self.logs())
        self.assertIn("--dev is only allowed on a loopback address", server.log())

    def test_dev_token_on_loopback(self):
        server = self.start_server("--dev", env=self.server_env(token=None))
        self.assertIn('accepting the token "dev-token"', server.log())
        self.assertStatus(server.request("GET", "/jobs", token="dev-token"), 200)
        self.assertStatus(server.request("GET", "/jobs", token=TOKEN), 401)

    def test_token_file(self):
        path = os.path.join(self.dir, "tokens")
        with open(path, "w") as tokens:
            tokens.write("# operators\n\n  first-token  \nsecond-token\n#third-token\n")
        os.chmod(path, 0o600)
        server = self.start_server("--token-file", path, env=self.server_env(token=None))
        self.assertStatus(server.request("GET", "/jobs", token="first-token"), 200)
        self.assertStatus(server.request("GET", "/jobs", token="second-token"), 200)
        self.assertStatus(server.request("GET", "/jobs", token="#third-token"), 401)
        self.assertStatus(server.request("GET", "/jobs", token="operators"), 401)

    def test_invalid_token_file(self):
        path = os.path.join(self.dir, "tokens")
        with open(path, "w") as tokens:
            tokens.write("good-token\nbad token with spaces\n")
        server = self.spawn_server("--token-file", path, env=self.server_env(token=None))
        self.assertEqual(server.proc.wait(timeout=60), 2, self.logs())
        self.assertIn("invalid token on line 2", server.log())
        self.assertNotIn("bad token with spaces", server.log())

    def test_invalid_options(self):
        for args in (["--max-runs", "x"], ["--listen", "nohost"], ["--unknown"]):
            with self.subTest(args=args):
                server = self.spawn_server(*args)
                self.assertEqual(server.proc.wait(timeout=60), 2, self.logs())


if __name__ == "__main__":
    unittest.main()
