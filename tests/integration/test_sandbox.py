"""The secure profile, checked from inside the job's container."""

import json
import re
import unittest

import support
from support import sh_job


def script_job(job, **fields):
    return sh_job(
        job,
        "${args.script}",
        [{"name": "script", "type": "string", "required": True}],
        stop_timeout="2s",
        **fields,
    )


def proc_status_fields(text):
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


class Sandbox:
    JOBS = {
        "script": script_job,
        "limited": lambda job: script_job(job, resources={"pids": 100, "memory": "64Mi"}),
    }

    def script(self, text, job="script"):
        return self.run_job(job, "--script", text)

    def plan(self, job="script"):
        result = self.flwd("plan", self.job(job), "--script", "true", runtime=self.runtime)
        self.assertExit(result, 0)
        return json.loads(result.stdout)

    def test_tmp_writable(self):
        result = self.script("echo data > /tmp/file && cat /tmp/file")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "data\n")

    def test_root_read_only(self):
        for path in ("/file", "/etc/file", "/bin/file"):
            with self.subTest(path=path):
                result = self.script(f"echo data > {path}")
                self.assertNotEqual(result.returncode, 0, result.describe())
                self.assertIn("Read-only file system", result.err)

    def test_work_writable(self):
        result = self.script("cd /work && echo data > file && mkdir dir && cat file && pwd")
        self.assertExit(result, 0)
        self.assertEqual(result.out, "data\n/work\n")

    def test_work_empty_per_run(self):
        first = self.script("test -z \"$(ls -A /work)\" && echo data > /work/file && echo written")
        self.assertExit(first, 0)
        self.assertEqual(first.out, "written\n")
        second = self.script("ls -A /work")
        self.assertExit(second, 0)
        self.assertEqual(second.out, "", "the second run saw the first run's /work")

    def test_args_file_read_only(self):
        result = self.script("echo '{}' > /run/flwd/args.json")
        self.assertNotEqual(result.returncode, 0, result.describe())
        self.assertIn("Read-only file system", result.err)

    def test_identity(self):
        # The image's default user is root, inside its user namespace where
        # the runtime gives one.
        result = self.script("id -u; id -g; cat /proc/self/uid_map")
        self.assertExit(result, 0)
        lines = result.out.splitlines()
        self.assertEqual(lines[:2], ["0", "0"])
        identity_map = [line.split() for line in lines[2:]] == [["0", "0", "4294967295"]]
        user_namespace = self.plan()["guarantees"]["user_namespace"]
        self.assertEqual(
            not identity_map,
            user_namespace,
            f"the plan says user_namespace={user_namespace} but the uid map is:\n" + "\n".join(lines[2:]),
        )

    def test_no_capabilities(self):
        result = self.script("cat /proc/self/status")
        self.assertExit(result, 0)
        status = proc_status_fields(result.out)
        for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(status.get(field), "0000000000000000", f"{field} in:\n{result.out}")
        self.assertEqual(status.get("NoNewPrivs"), "1")
        # 2 means a seccomp filter is in place, the runtime's default one.
        self.assertEqual(status.get("Seccomp"), "2")

    def test_no_network(self):
        result = self.script("cat /proc/net/dev; echo ---; ip -o link")
        self.assertExit(result, 0)
        dev, _, links = result.out.partition("---\n")
        interfaces = [line.split(":")[0].strip() for line in dev.splitlines()[2:]]
        self.assertEqual(interfaces, ["lo"])
        link_names = [line.split(":")[1].strip() for line in links.splitlines()]
        self.assertEqual(link_names, ["lo"])

    def test_no_host_paths(self):
        result = self.script("ls /run/flwd; test -e /var/run/docker.sock && echo docker-socket; test -e /run/podman/podman.sock && echo podman-socket; true")
        self.assertExit(result, 0)
        self.assertEqual(sorted(result.out.split()), ["args.json", "init", "out", "status"])

    def test_resource_limits(self):
        plan = self.plan("limited")
        self.assertEqual(plan["resources"]["pids"], 100)
        self.assertEqual(plan["resources"]["memory_bytes"], 64 * 1024 * 1024)
        result = self.script(
            "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; echo ---; "
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; true",
            job="limited",
        )
        self.assertExit(result, 0)
        pids, _, memory = result.out.partition("---\n")
        if not plan["guarantees"]["resource_limits"]:
            missing = " ".join(plan["guarantees_missing"])
            self.assertIn("resource limits", missing)
            self.skipTest(f"{self.runtime} cannot set resource limits here: {missing}")
        self.assertEqual(pids.split(), ["100"])
        self.assertEqual(memory.split(), [str(64 * 1024 * 1024)])

    def test_default_pids_limit(self):
        plan = self.plan()
        if not plan["guarantees"]["resource_limits"]:
            self.skipTest(f"{self.runtime} cannot set resource limits here")
        result = self.script("cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; true")
        self.assertExit(result, 0)
        self.assertEqual(result.out.split(), [str(plan["resources"]["pids"])])

    def test_guarantees_reported(self):
        result = self.run_job("script", "--script", "true", flags=("--events",))
        self.assertExit(result, 0)
        plan = self.plan()
        missing_events = [
            e["data"]["guarantee"] for e in result.events() if e["type"] == "profile.guarantee_missing"
        ]
        self.assertEqual(missing_events, plan["guarantees_missing"])
        warnings = [line for line in result.err.splitlines() if re.match(r"^flwd: warning: .*guarantee missing", line)]
        self.assertEqual(len(warnings), len(plan["guarantees_missing"]), result.describe())


support.runtime_classes(Sandbox, globals())

if __name__ == "__main__":
    unittest.main()
