"""flwd-httpd: request size, URI length, timeout and connection limits."""

import socket
import time
import unittest

from support import TOKEN, ServerTestCase, sh_job

MAX_BODY = 1024
MAX_CONNECTIONS = 3
REQUEST_TIMEOUT = 2


class Limits(ServerTestCase):
    JOBS = {
        "greet": lambda job: sh_job(
            job, 'echo "Hello, $FLWD_ARG_NAME"',
            [{"name": "name", "type": "string", "required": True}]),
    }

    def setUp(self):
        super().setUp()
        self.server = self.start_server(
            "--max-body", str(MAX_BODY),
            "--max-connections", str(MAX_CONNECTIONS),
            "--request-timeout", str(REQUEST_TIMEOUT),
        )

    def test_body_over_limit(self):
        body = '{"job": "greet", "args": {"name": "%s"}}' % ("a" * MAX_BODY)
        response = self.server.request("POST", "/runs", body)
        self.assertStatus(response, 413)
        self.assertEqual(response.header("Connection"), "close")
        self.assertEqual(self.server.request("GET", "/runs").json(), {"runs": []})

    def test_body_at_limit_accepted(self):
        # Padding with spaces keeps the JSON valid and the body exactly
        # MAX_BODY bytes long; the argument is invalid, so no run starts.
        body = '{"job": "greet", "args": {"name": 1}}'
        body += " " * (MAX_BODY - len(body))
        response = self.server.request("POST", "/runs", body)
        self.assertError(response, 422, "args.invalid")

    def test_uri_over_limit(self):
        response = self.server.request("GET", "/runs?job=" + "a" * 4100)
        self.assertError(response, 414, "request.invalid")

    def test_invalid_query(self):
        response = self.server.request("GET", "/runs?job=a&&=b")
        self.assertError(response, 400, "request.invalid")

    def test_headers_over_limit(self):
        response = self.server.request("GET", "/jobs", headers={"X-Padding": "a" * 20000})
        self.assertStatus(response, 400)

    def test_slow_client_disconnected(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
            data = sock.recv(4096)
            elapsed = time.monotonic() - start
        self.assertEqual(data, b"", "the server answered an incomplete request")
        self.assertGreaterEqual(elapsed, REQUEST_TIMEOUT - 0.5)
        self.assertLess(elapsed, REQUEST_TIMEOUT + 5)
        self.assertStatus(self.server.request("GET", "/healthz", token=None), 200)

    def test_connection_limit(self):
        conns = [self.server.connection() for _ in range(MAX_CONNECTIONS)]
        try:
            for conn in conns:
                self.assertStatus(self.server.request("GET", "/healthz", conn=conn), 200)
            response = self.server.request("GET", "/healthz", token=None)
            self.assertError(response, 503, "internal")
            self.assertEqual(response.header("Connection"), "close")
            # Open connections keep being served.
            self.assertStatus(self.server.request("GET", "/jobs", conn=conns[0]), 200)
        finally:
            for conn in conns:
                conn.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            response = self.server.request("GET", "/healthz", token=None)
            if response.status == 200:
                break
            time.sleep(0.1)
        self.assertStatus(response, 200)

    def test_constant_time_compare_accepts_only_exact_token(self):
        for token in (TOKEN + "\x00", TOKEN.upper(), "x" * 300, TOKEN * 20):
            with self.subTest(token=token[:40]):
                response = self.server.request("GET", "/jobs", token=token.replace("\x00", "%00"))
                self.assertError(response, 401, "auth.unauthorized")


if __name__ == "__main__":
    unittest.main()
