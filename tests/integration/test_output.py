"""Large and unusual output of a job, which must reach flwd's stdout and
stderr whole and in order."""

import hashlib
import os
import subprocess
import unittest

import support
from support import sh_job

MIB = 1024 * 1024
FIRST = 10000000


def numbers(size, separator, first=FIRST):
    """Return the first SIZE bytes of the numbers from FIRST up, each followed
    by SEPARATOR: the same bytes as `seq FIRST ... | tr -d` in the job."""
    width = len(str(first)) + len(separator)
    count = size // width + 2
    data = separator.join(b"%d" % n for n in range(first, first + count)) + separator
    return data[:size]


def generator(size, newlines=True, first=FIRST, stream=1):
    """Return the shell command that writes numbers(size, ...) to STREAM."""
    last = first + size // 8 + 2
    command = f"seq {first} {last}"
    if not newlines:
        command += " | tr -d '\\n'"
    command += f" | head -c {size}"
    if stream == 2:
        command += " >&2"
    return command


def digest(data):
    return hashlib.sha256(data).hexdigest()


class Output:
    JOBS = {
        "script": lambda job: sh_job(
            job,
            "${args.script}",
            [{"name": "script", "type": "string", "required": True}],
            stop_timeout="2s",
        )
    }

    def script(self, text):
        return self.run_job("script", "--script", text)

    def assertWhole(self, received, expected, stream):
        self.assertEqual(len(received), len(expected), f"{stream}: byte count")
        self.assertEqual(digest(received), digest(expected), f"{stream}: content differs")

    def test_stdout_8mib(self):
        result = self.script(generator(8 * MIB))
        self.assertExit(result, 0)
        self.assertWhole(result.stdout, numbers(8 * MIB, b"\n"), "stdout")
        self.assertEqual(result.stderr, b"")

    def test_stderr_8mib(self):
        result = self.script(generator(8 * MIB, stream=2))
        self.assertExit(result, 0)
        self.assertWhole(result.stderr, numbers(8 * MIB, b"\n"), "stderr")
        self.assertEqual(result.stdout, b"")

    def test_stdout_long_line(self):
        size = MIB + 76543
        result = self.script(generator(size, newlines=False))
        self.assertExit(result, 0)
        self.assertWhole(result.stdout, numbers(size, b""), "stdout")

    def test_stderr_long_line(self):
        size = MIB + 76543
        result = self.script(generator(size, newlines=False, stream=2))
        self.assertExit(result, 0)
        self.assertWhole(result.stderr, numbers(size, b""), "stderr")

    def test_both_streams_at_once(self):
        size = 4 * MIB
        other = 50000000
        result = self.script(
            f"({generator(size)}) & ({generator(size, first=other, stream=2)}) & wait"
        )
        self.assertExit(result, 0)
        self.assertWhole(result.stdout, numbers(size, b"\n"), "stdout")
        self.assertWhole(result.stderr, numbers(size, b"\n", first=other), "stderr")

    def test_output_then_failure(self):
        size = MIB
        result = self.script(f"{generator(size)}; exit 9")
        self.assertExit(result, 9)
        self.assertWhole(result.stdout, numbers(size, b"\n"), "stdout")

    def test_binary_output(self):
        result = self.script("printf 'a\\000b\\377\\r\\n\\033[0m'")
        self.assertExit(result, 0)
        self.assertEqual(result.stdout, b"a\x00b\xff\r\n\x1b[0m")

    def test_reader_closes_stdout(self):
        # A reader that stops early, as `flwd ... | head -c 10` does, must
        # not kill flwd with SIGPIPE: the job runs to its end.
        read_end, write_end = os.pipe()
        proc = subprocess.Popen(
            self.flwd_argv(["-q", self.job("script"), "--script", generator(8 * MIB) + "; exit 4"], self.runtime),
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        self.addCleanup(self._reap, proc)
        os.close(write_end)
        head = os.read(read_end, 10)
        os.close(read_end)
        _, stderr = proc.communicate(timeout=support.COMMAND_TIMEOUT)
        self.assertEqual(head, b"10000000\n1")
        self.assertEqual(proc.returncode, 4, stderr.decode(errors="replace"))


support.runtime_classes(Output, globals())

if __name__ == "__main__":
    unittest.main()
