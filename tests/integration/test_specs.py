"""`flwd validate` on valid and broken job specs.

Every broken spec must give exit status 1 and one line
"flwd: spec.invalid: FILE:LINE:COLUMN: FIELD: problem" on stderr, and must
never crash flwd.
"""

import os
import random
import signal
import subprocess
import unittest

import support

HEADER = (
    "id: bad\n"
    "executor: container\n"
    'interpreter: "container:localhost/flwd-busybox:latest"\n'
)


def nested_aliases():
    """Return a spec whose aliases would expand to 9**12 strings if copied."""
    text = HEADER + 'description: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, 12):
        text += f"x{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]\n"
    return text


def garbage():
    rng = random.Random(20240601)
    return bytes(rng.randrange(256) for _ in range(512))


# Name, spec text, expected line, column, field, and a word of the problem.
BROKEN_SPECS = [
    ("bad_yaml", HEADER + 'command: ["sh", "-c"\n', 5, 1, "spec", "flow sequence"),
    ("tab_indent", HEADER + "args:\n\t- name: x\n", 5, 1, "spec", "cannot start any token"),
    ("missing_id", 'executor: container\ninterpreter: "container:img"\n', 1, 1, "id", "missing required field"),
    ("missing_interpreter", "id: bad\nexecutor: container\n", 1, 1, "interpreter", "missing required field"),
    ("bad_id", 'id: Bad_ID\nexecutor: container\ninterpreter: "container:img"\n', 1, 5, "id", "invalid id 'Bad_ID'"),
    ("long_id", "id: " + "a" * 64 + '\nexecutor: container\ninterpreter: "container:img"\n', 1, 5, "id", "invalid id"),
    ("unknown_field", HEADER + "colour: red\n", 4, 1, "colour", "unknown field"),
    ("field_twice", HEADER + "id: again\n", 4, 1, "id", "field given twice"),
    ("unknown_executor", 'id: bad\nexecutor: shell\ninterpreter: "container:img"\n', 2, 11, "executor", "'shell'"),
    ("bad_interpreter", 'id: bad\nexecutor: container\ninterpreter: "docker:img"\n', 3, 14, "interpreter", "'docker:img'"),
    ("option_image", 'id: bad\nexecutor: container\ninterpreter: "container:-rm"\n', 3, 14, "interpreter", "'-rm'"),
    ("short_digest", 'id: bad\nexecutor: container\ninterpreter: "container:img@sha256:abc"\n', 3, 14, "interpreter", "invalid image reference"),
    ("bad_arg_type", HEADER + "args:\n  - name: x\n    type: float\n", 6, 11, "args[0].type", "'float'"),
    ("arg_without_type", HEADER + "args:\n  - name: n\n", 5, 5, "args[0].type", "missing required field"),
    ("bad_arg_name", HEADER + "args:\n  - name: 1x\n    type: string\n", 5, 11, "args[0].name", "'1x'"),
    ("enum_without_values", HEADER + "args:\n  - name: mode\n    type: enum\n", 5, 5, "args[0].values", "needs values"),
    ("values_on_string", HEADER + "args:\n  - name: x\n    type: string\n    values: [a]\n", 7, 13, "args[0].values", "only enum"),
    ("duplicate_arg", HEADER + "args:\n  - name: x\n    type: string\n  - name: x\n    type: integer\n", 7, 5, "args[1]", "'x'"),
    ("default_wrong_type", HEADER + "args:\n  - name: n\n    type: integer\n    default: abc\n", 7, 14, "args[0].default", "'abc'"),
    ("default_not_in_enum", HEADER + "args:\n  - name: m\n    type: enum\n    values: [a, b]\n    default: c\n", 8, 14, "args[0].default", "'c'"),
    ("required_with_default", HEADER + "args:\n  - name: n\n    type: string\n    required: true\n    default: x\n", 8, 14, "args[0].default", "cannot have a default"),
    ("required_not_boolean", HEADER + "args:\n  - name: n\n    type: string\n    required: yes\n", 7, 15, "args[0].required", "'yes'"),
    ("args_not_list", HEADER + "args: {name: x}\n", 4, 7, "args", "expected a list"),
    ("command_not_list", HEADER + 'command: "echo hi"\n', 4, 10, "command", "expected a list"),
    ("command_empty", HEADER + "command: []\n", 4, 10, "command", "must not be empty"),
    ("command_nested", HEADER + 'command: ["sh", ["x"]]\n', 4, 17, "command[1]", "expected a single value"),
    ("bad_duration", HEADER + "stop_timeout: 10 parsecs\n", 4, 15, "stop_timeout", "'10 parsecs'"),
    ("negative_timeout", HEADER + "timeout: -5s\n", 4, 10, "timeout", "'-5s'"),
    ("unknown_profile", HEADER + "profile: paranoid\n", 4, 10, "profile", "'paranoid'"),
    ("unknown_pull", HEADER + "pull: sometimes\n", 4, 7, "pull", "'sometimes'"),
    ("bad_memory", HEADER + "resources:\n  memory: lots\n", 5, 11, "resources.memory", "'lots'"),
    ("top_level_list", "- id: bad\n", 1, 1, "spec", "expected a mapping"),
    ("top_level_scalar", "just text\n", 1, 1, "spec", "expected a mapping"),
    ("empty", "", 1, 1, "spec", "empty"),
    ("comments_only", "# nothing here\n", 1, 1, "spec", "empty"),
    ("nul_in_value", HEADER + 'description: "a\\0b"\n', 4, 14, "description", "NUL"),
    ("deep_nesting", HEADER + "command: " + "[" * 1000 + "]" * 1000 + "\n", 4, 41, "spec", "nested deeper than 32 levels"),
    ("nested_aliases", nested_aliases(), 4, 14, "description", "expected a single value"),
    ("binary_garbage", garbage(), 1, 1, "spec", "UTF-8"),
]


class Validate(support.FlwdTestCase):
    def write_spec(self, name, text):
        path = os.path.join(self.state_dir, f"{name}.yaml")
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        with open(path, "wb") as spec:
            spec.write(data)
        return path

    def test_valid_spec(self):
        path = self.write_spec("good", support.sh_job("good", "true", stop_timeout="2s"))
        result = self.flwd("validate", path)
        self.assertExit(result, 0)
        self.assertEqual(result.out, f"{path}: ok (job good)\n")
        self.assertEqual(result.err, "")

    def test_full_spec(self):
        text = (
            "id: demo.full_1\n"
            "description: Every field that this version accepts.\n"
            "executor: container\n"
            'interpreter: "container:127.0.0.1:5000/flwd/busybox@sha256:' + "0" * 64 + '"\n'
            'command: ["sh", "-c", "echo ${args.name} ${run.id}"]\n'
            "args:\n"
            "  - name: name\n"
            "    type: string\n"
            "    required: true\n"
            "    description: Who.\n"
            "  - {name: n, type: integer, default: 2}\n"
            "  - {name: r, type: number, default: 0.5}\n"
            "  - {name: b, type: boolean, default: false}\n"
            "  - {name: e, type: enum, values: [x, y], default: y}\n"
            "  - {name: l, type: list, default: [p, q]}\n"
            "secrets: []\n"
            "profile: secure\n"
            "requests:\n"
            "  writable_rootfs: false\n"
            "  capabilities: []\n"
            "  network: none\n"
            "  secrets_as_env: []\n"
            "resources:\n"
            "  memory: 256Mi\n"
            "  cpus: 0.5\n"
            "  pids: 64\n"
            "timeout: 10m\n"
            "stop_timeout: 1500ms\n"
            "pull: never\n"
        )
        path = self.write_spec("full", text)
        result = self.flwd("validate", path)
        self.assertExit(result, 0)
        self.assertEqual(result.out, f"{path}: ok (job demo.full_1)\n")

    def test_broken_specs(self):
        for name, text, line, column, field, problem in BROKEN_SPECS:
            with self.subTest(spec=name):
                path = self.write_spec(name, text)
                result = self.flwd("validate", path, timeout=30)
                self.assertGreaterEqual(result.returncode, 0, f"flwd died of a signal{result.describe()}")
                self.assertExit(result, 1)
                self.assertEqual(result.out, "", result.describe())
                lines = result.err.splitlines()
                self.assertEqual(len(lines), 1, result.describe())
                prefix = f"flwd: spec.invalid: {path}:{line}:{column}: {field}: "
                self.assertTrue(lines[0].startswith(prefix), f"expected the prefix {prefix!r}{result.describe()}")
                self.assertIn(problem, lines[0][len(prefix):])

    def test_broken_and_valid_together(self):
        good = self.write_spec("good", support.sh_job("good", "true"))
        bad = self.write_spec("bad", HEADER + "colour: red\n")
        result = self.flwd("validate", good, bad)
        self.assertExit(result, 1)
        self.assertEqual(result.out, f"{good}: ok (job good)\n")
        self.assertIn(f"{bad}:4:1: colour: unknown field", result.err)

    def test_missing_file(self):
        path = os.path.join(self.state_dir, "absent.yaml")
        result = self.flwd("validate", path)
        self.assertExit(result, 1)
        self.assertIn(f"'{path}'", result.err)

    def test_directory_instead_of_file(self):
        result = self.flwd("validate", self.state_dir)
        self.assertGreaterEqual(result.returncode, 0, result.describe())
        self.assertExit(result, 1)
        self.assertIn(self.state_dir, result.err)

    def test_oversized_spec(self):
        # The part after the first MiB contains an unknown field. A spec that
        # large must be rejected whole, never read in part.
        text = HEADER + "#" + "x" * (1024 * 1024) + "\ncolour: red\n"
        path = self.write_spec("oversized", text)
        result = self.flwd("validate", path)
        self.assertExit(result, 1)
        self.assertIn(f"flwd: spec.invalid: {path}:1:1: spec: ", result.err)

    def test_deep_nesting_time(self):
        # 200 KB of nested brackets, far below the size limit of a spec.
        depth = 100000
        path = self.write_spec("deep", HEADER + "command: " + "[" * depth + "]" * depth + "\n")
        limit = 5
        try:
            result = self.flwd("validate", path, timeout=limit)
        except subprocess.TimeoutExpired:
            self.fail(f"flwd validate took more than {limit}s on a spec nested {depth} levels deep")
        self.assertExit(result, 1)
        self.assertIn(f"flwd: spec.invalid: {path}:4:", result.err)

    def test_no_files(self):
        result = self.flwd("validate")
        self.assertExit(result, 2)
        self.assertIn("validate", result.err)

    def test_run_reports_spec_error(self):
        jobs_dir = os.path.join(self.state_dir, "jobs")
        os.mkdir(jobs_dir)
        path = os.path.join(jobs_dir, "bad.yaml")
        with open(path, "w", encoding="utf-8") as spec:
            spec.write(HEADER + "profile: paranoid\n")
        result = self.flwd("--jobs", jobs_dir, "bad")
        self.assertError(result, "spec.invalid")
        self.assertIn(":4:10: profile: ", result.err)
        self.assertNotEqual(result.returncode, -signal.SIGSEGV)


if __name__ == "__main__":
    unittest.main()
