"""Argument values on their way into the container.

A job receives each argument three ways: as FLWD_ARG_<NAME> in its environment,
in /run/flwd/args.json, and where its command has a ${args.NAME}
placeholder. Values must arrive byte for byte through all three.
"""

import json
import unittest

import support
from support import job_yaml, sh_job

# Values that a shell, an env file or a JSON encoder could alter. None may
# contain a NUL byte, which the command line cannot carry, or a line break,
# which flwd rejects (see test_newline_rejected).
VALUES = [
    "hello world",
    "  two spaces around  ",
    "it's",
    'say "hi"',
    '"double quoted"',
    "'single quoted'",
    "$HOME",
    "${HOME}",
    "*",
    "a,b,c",
    "tab\tinside",
    "\tleading tab",
    "trailing tab\t",
    "",
    " ",
    "Grüße, 世界 🚀",
    "C:\\path\\n\\x41\\\\",
    "\\",
    "--name",
    "-",
    "a=b",
    "=",
    "#hash",
    "%s %d %%",
    "`id` $(id)",
    "; exit 3",
    "\x01\x1b[31m\x7f",
    "x" * 4096,
]

NAMES = [f"v{i}" for i in range(len(VALUES))]


def env_job(job):
    # printf separates the values with NUL bytes, which no value contains.
    references = " ".join(f'"$FLWD_ARG_V{i}"' for i in range(len(VALUES)))
    return sh_job(
        job,
        f"printf '%s\\0' {references}; cat /run/flwd/args.json >&2",
        [{"name": name, "type": "string", "required": True} for name in NAMES],
    )


def placeholder_job(job):
    return job_yaml(
        job,
        ["sh", "-c", "printf '%s\\0' \"$@\"", "sh"] + [f"${{args.{name}}}" for name in NAMES],
        [{"name": name, "type": "string", "required": True} for name in NAMES],
    )


def echo_job(job):
    return sh_job(
        job,
        'printf %s "$FLWD_ARG_VALUE"; cat /run/flwd/args.json >&2',
        [{"name": "value", "type": "string", "required": True}],
    )


def typed_job(job):
    return sh_job(
        job,
        "cat /run/flwd/args.json >&2; env | grep '^FLWD_' | sort",
        [
            {"name": "count", "type": "integer", "default": 3},
            {"name": "ratio", "type": "number"},
            {"name": "verbose", "type": "boolean"},
            {"name": "mode", "type": "enum", "values": ["fast", "slow"], "default": "fast"},
            {"name": "tags", "type": "list"},
            {"name": "dry-run", "type": "boolean", "default": False},
            {"name": "label", "type": "string", "required": True},
        ],
    )


def env_lines(result):
    """Return the FLWD_* variables that the typed job printed, as a dict."""
    variables = {}
    for line in result.out.splitlines():
        name, _, value = line.partition("=")
        variables[name] = value
    return variables


class Args:
    JOBS = {
        "env": env_job,
        "placeholder": placeholder_job,
        "echo": echo_job,
        "typed": typed_job,
        "contract": lambda job: sh_job(job, "env | grep '^FLWD_' | sort"),
    }

    def separate_form(self):
        args = []
        for name, value in zip(NAMES, VALUES):
            args += [f"--{name}", value]
        return args

    def joined_form(self):
        return [f"--{name}={value}" for name, value in zip(NAMES, VALUES)]

    def assertValues(self, result, with_json):
        self.assertExit(result, 0)
        received = result.stdout.split(b"\0")
        self.assertEqual(received[-1], b"", "output does not end with a NUL byte")
        self.assertEqual(len(received) - 1, len(VALUES), result.describe())
        for value, raw in zip(VALUES, received):
            with self.subTest(value=value):
                self.assertEqual(raw, value.encode("utf-8"))
        if with_json:
            self.assertEqual(json.loads(result.stderr), dict(zip(NAMES, VALUES)))

    def test_values_env_and_json(self):
        self.assertValues(self.run_job("env", *self.separate_form()), with_json=True)

    def test_values_equals_form(self):
        self.assertValues(self.run_job("env", *self.joined_form()), with_json=True)

    def test_values_placeholder(self):
        self.assertValues(self.run_job("placeholder", *self.separate_form()), with_json=False)

    def test_value_with_equals_sign(self):
        # Only the first '=' separates the name from the value.
        result = self.run_job("echo", "--value==a=b=")
        self.assertExit(result, 0)
        self.assertEqual(result.stdout, b"=a=b=")

    def test_newline_rejected(self):
        for value in ("line\nbreak", "carriage\rreturn", "\n"):
            with self.subTest(value=value):
                result = self.run_job("echo", "--value", value)
                self.assertError(result, "args.invalid")
                self.assertIn("'value'", result.err)
                self.assertEqual(result.stdout, b"")

    def test_long_value(self):
        # More than the 64 KiB line that the runtimes' env-file readers take.
        value = "".join(chr(ord("a") + i % 26) for i in range(70000))
        result = self.run_job("echo", "--value", value)
        if result.returncode == 0:
            self.assertEqual(result.stdout, value.encode())
            self.assertEqual(json.loads(result.stderr), {"value": value})
        else:
            # A value that flwd cannot deliver must be rejected before any
            # container starts, never reach the runtime and fail there.
            self.assertError(result, "args.invalid")

    def test_typed_values(self):
        result = self.run_job(
            "typed",
            "--label", "x",
            "--count", "-7",
            "--ratio", "2.5",
            "--verbose",
            "--mode", "slow",
            "--tags", "a",
            "--tags", "b c",
            "--tags", "",
            "--dry_run",
        )
        self.assertExit(result, 0)
        self.assertEqual(
            json.loads(result.stderr),
            {
                "label": "x",
                "count": -7,
                "ratio": 2.5,
                "verbose": True,
                "mode": "slow",
                "tags": ["a", "b c", ""],
                "dry-run": True,
            },
        )
        variables = env_lines(result)
        self.assertEqual(variables["FLWD_ARG_LABEL"], "x")
        self.assertEqual(variables["FLWD_ARG_COUNT"], "-7")
        self.assertEqual(variables["FLWD_ARG_RATIO"], "2.5")
        self.assertEqual(variables["FLWD_ARG_VERBOSE"], "true")
        self.assertEqual(variables["FLWD_ARG_MODE"], "slow")
        self.assertEqual(json.loads(variables["FLWD_ARG_TAGS"]), ["a", "b c", ""])
        self.assertEqual(variables["FLWD_ARG_DRY_RUN"], "true")

    def test_typed_defaults(self):
        result = self.run_job("typed", "--label", "x", "--no-verbose")
        self.assertExit(result, 0)
        self.assertEqual(
            json.loads(result.stderr),
            {"label": "x", "count": 3, "verbose": False, "mode": "fast", "dry-run": False},
        )
        variables = env_lines(result)
        self.assertEqual(variables["FLWD_ARG_COUNT"], "3")
        self.assertEqual(variables["FLWD_ARG_VERBOSE"], "false")
        self.assertEqual(variables["FLWD_ARG_DRY_RUN"], "false")
        # An optional argument without a default is not set at all.
        self.assertNotIn("FLWD_ARG_RATIO", variables)
        self.assertNotIn("FLWD_ARG_TAGS", variables)

    def test_contract_variables(self):
        result = self.run_job("contract", flags=("-q", "--events"))
        self.assertExit(result, 0)
        variables = env_lines(result)
        run_id = result.events()[0]["data"]["run"]
        self.assertEqual(variables["FLWD_RUN_ID"], run_id)
        self.assertEqual(variables["FLWD_JOB_ID"], self.job("contract"))
        self.assertEqual(variables["FLWD_ARGS_FILE"], "/run/flwd/args.json")
        self.assertEqual(variables["FLWD_WORKDIR"], "/work")
        self.assertEqual(variables["FLWD_OUTPUT_DIR"], "/run/flwd/out")

    def test_number_short_form(self):
        # 0.1 has no exact binary form, but the job must still receive the text typed.
        result = self.run_job("typed", "--label", "x", "--ratio", "0.1")
        self.assertExit(result, 0)
        self.assertEqual(json.loads(result.stderr)["ratio"], 0.1)
        self.assertEqual(env_lines(result)["FLWD_ARG_RATIO"], "0.1")


class ArgsBinding(support.FlwdTestCase):
    """Binding errors, which flwd reports before it chooses a runtime."""

    JOBS = {"typed": typed_job, "echo": echo_job}

    def plan_args(self, *args):
        result = self.flwd("plan", self.job("typed"), *args, runtime=support.test_runtimes()[0])
        self.assertExit(result, 0)
        return json.loads(result.stdout)["args"]

    def test_integer_forms(self):
        for text, value in (("0", 0), ("-12", -12), ("+5", 5), ("007", 7), ("9223372036854775807", 2**63 - 1)):
            with self.subTest(text=text):
                self.assertEqual(self.plan_args("--label", "x", "--count", text)["count"], value)

    def test_number_forms(self):
        for text, value in (("1", 1), ("-0.5", -0.5), ("1e3", 1000.0), ("2.5", 2.5)):
            with self.subTest(text=text):
                self.assertEqual(self.plan_args("--label", "x", "--ratio", text)["ratio"], value)

    def test_boolean_forms(self):
        for args, value in ((["--verbose"], True), (["--no-verbose"], False), (["--verbose=true"], True), (["--verbose=false"], False)):
            with self.subTest(args=args):
                self.assertIs(self.plan_args("--label", "x", *args)["verbose"], value)

    def test_list_keeps_order(self):
        args = self.plan_args("--label", "x", "--tags", "b", "--tags", "a", "--tags", "b")
        self.assertEqual(args["tags"], ["b", "a", "b"])

    def test_invalid_arguments(self):
        cases = [
            ("missing required", [], "'label'"),
            ("unknown argument", ["--label", "x", "--bogus", "1"], "'--bogus'"),
            ("positional", ["--label", "x", "stray"], "'stray'"),
            ("integer text", ["--label", "x", "--count", "x"], "'x'"),
            ("integer fraction", ["--label", "x", "--count", "1.5"], "'1.5'"),
            ("integer overflow", ["--label", "x", "--count", "99999999999999999999"], "'99999999999999999999'"),
            ("integer spaces", ["--label", "x", "--count", " 1"], "' 1'"),
            ("integer empty", ["--label", "x", "--count", ""], "''"),
            ("number text", ["--label", "x", "--ratio", "abc"], "'abc'"),
            ("number nan", ["--label", "x", "--ratio", "nan"], "'nan'"),
            ("number infinite", ["--label", "x", "--ratio", "inf"], "'inf'"),
            ("boolean word", ["--label", "x", "--verbose=yes"], "'yes'"),
            ("enum value", ["--label", "x", "--mode", "medium"], "'medium'"),
            ("enum case", ["--label", "x", "--mode", "FAST"], "'FAST'"),
            ("value missing", ["--label"], "'--label'"),
            ("given twice", ["--label", "x", "--label", "y"], "'label'"),
        ]
        for name, args, mention in cases:
            with self.subTest(case=name):
                result = self.flwd(self.job("typed"), *args)
                self.assertError(result, "args.invalid")
                self.assertIn(mention, result.err)
                self.assertIn(f"see 'flwd {self.job('typed')} --help'", result.err)
                self.assertEqual(result.out, "")


support.runtime_classes(Args, globals())

if __name__ == "__main__":
    unittest.main()
