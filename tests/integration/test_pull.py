"""Image pull policies: never, missing (the default) and always, by tag and
by digest.

The registry tests need FLWD_TEST_REGISTRY, a plain-HTTP registry that
contains flwd/busybox:latest. They are skipped when it is unset or does not
respond. Each of them removes the registry image from the runtime's store
first, so that flwd must pull it.
"""

import os
import socket
import unittest

import support
from support import event_types, job_yaml

REMOTE_IMAGE = support.REGISTRY_IMAGE
ABSENT_LOCAL_IMAGE = f"localhost/flwd-absent-{support.RUN_TOKEN}:latest"
ABSENT_REMOTE_IMAGE = f"{support.REGISTRY}/flwd/absent-{support.RUN_TOKEN}:latest"


def echo_job(image):
    return lambda job: job_yaml(job, ["echo", "pulled"], image=image)


def closed_port():
    """Return a port on 127.0.0.1 that nothing listens on, most likely."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Pull:
    JOBS = {
        "local": echo_job(support.TEST_IMAGE),
        "absent": echo_job(ABSENT_LOCAL_IMAGE),
        "absent-never": lambda job: job_yaml(job, ["echo", "pulled"], image=ABSENT_LOCAL_IMAGE, pull="never"),
        "remote": echo_job(REMOTE_IMAGE),
        "remote-absent": echo_job(ABSENT_REMOTE_IMAGE),
        "unreachable": echo_job(f"127.0.0.1:{closed_port()}/flwd/busybox:latest"),
    }

    def require_registry(self):
        address = support.registry_address()
        if address is None:
            self.skipTest(
                f"no registry answers at FLWD_TEST_REGISTRY={os.environ.get('FLWD_TEST_REGISTRY', '(unset)')}"
            )
        return address

    def forget_remote_images(self, *references):
        """Remove REFERENCES from the runtime's store now and after the test."""
        for reference in references:
            support.remove_image(self.runtime, reference)
            self.addCleanup(support.remove_image, self.runtime, reference)

    def run_with_digest_job(self, image, *flags):
        """Run a job of IMAGE written for this test only."""
        jobs_dir = os.path.join(self.state_dir, "jobs")
        os.makedirs(jobs_dir, exist_ok=True)
        job = support.job_id("digest")
        with open(os.path.join(jobs_dir, f"{job}.yaml"), "w", encoding="utf-8") as spec:
            spec.write(job_yaml(job, ["echo", "pulled"], image=image))
        self.job_ids.append(job)
        self.addCleanup(self.job_ids.remove, job)
        return self.flwd("--jobs", jobs_dir, *flags, job, runtime=self.runtime)

    def assertPulled(self, result, image):
        self.assertExit(result, 0)
        self.assertEqual(result.out, "pulled\n")
        events = result.events()
        types = event_types(events)
        self.assertEqual(types.count("image.pull_started"), 1, types)
        self.assertNotIn("image.cached", types)
        finished = [e["data"] for e in events if e["type"] == "image.pull_finished"]
        self.assertEqual(finished, [{"image": image, "ok": True}])

    def assertCached(self, result, image):
        self.assertExit(result, 0)
        self.assertEqual(result.out, "pulled\n")
        events = result.events()
        self.assertNotIn("image.pull_started", event_types(events))
        cached = [e["data"] for e in events if e["type"] == "image.cached"]
        self.assertEqual(cached, [{"image": image}])

    def test_never_absent(self):
        result = self.run_job("absent", flags=("-q", "--pull", "never", "--events"))
        self.assertError(result, "E_OCI")
        self.assertIn(ABSENT_LOCAL_IMAGE, result.err)
        self.assertIn("never", result.err)
        self.assertNotIn("image.pull_started", event_types(result.events()))
        self.assertEqual(result.out, "")

    def test_spec_never_absent(self):
        result = self.run_job("absent-never", flags=("-q", "--events"))
        self.assertError(result, "E_OCI")
        self.assertIn(ABSENT_LOCAL_IMAGE, result.err)
        self.assertNotIn("image.pull_started", event_types(result.events()))

    def test_never_present(self):
        result = self.run_job("local", flags=("-q", "--pull", "never", "--events"))
        self.assertCached(result, support.TEST_IMAGE)

    def test_absent_local_image(self):
        # Nothing serves localhost/ images, so the pull fails with the reason.
        result = self.run_job("absent", flags=("-q", "--events"))
        self.assertError(result, "E_OCI")
        self.assertIn(f"cannot pull image '{ABSENT_LOCAL_IMAGE}'", result.err)

    def test_pull_then_cached(self):
        self.require_registry()
        self.forget_remote_images(REMOTE_IMAGE)
        self.assertFalse(support.image_present(self.runtime, REMOTE_IMAGE), "the image is still present")
        first = self.run_job("remote", flags=("-q", "--events"))
        self.assertPulled(first, REMOTE_IMAGE)
        self.assertTrue(support.image_present(self.runtime, REMOTE_IMAGE))
        second = self.run_job("remote", flags=("-q", "--events"))
        self.assertCached(second, REMOTE_IMAGE)

    def test_pull_always(self):
        self.require_registry()
        self.forget_remote_images(REMOTE_IMAGE)
        for attempt in (1, 2):
            with self.subTest(attempt=attempt):
                result = self.run_job("remote", flags=("-q", "--pull", "always", "--events"))
                self.assertPulled(result, REMOTE_IMAGE)

    def test_digest(self):
        address = self.require_registry()
        digest = support.registry_digest(address, support.REGISTRY_REPOSITORY, "latest")
        image = f"{address}/{support.REGISTRY_REPOSITORY}@{digest}"
        self.forget_remote_images(image, REMOTE_IMAGE)
        # Pull always, because a runtime may find the digest on an image it
        # already has under another name.
        result = self.run_with_digest_job(image, "-q", "--pull", "always", "--events")
        self.assertPulled(result, image)
        again = self.run_with_digest_job(image, "-q", "--events")
        self.assertCached(again, image)

    def test_missing_in_registry(self):
        self.require_registry()
        self.forget_remote_images(ABSENT_REMOTE_IMAGE)
        result = self.run_job("remote-absent", flags=("-q", "--events"))
        self.assertError(result, "E_OCI")
        self.assertIn(f"cannot pull image '{ABSENT_REMOTE_IMAGE}'", result.err)
        self.assertLess(result.elapsed, 20, result.describe())
        finished = [e["data"] for e in result.events() if e["type"] == "image.pull_finished"]
        self.assertEqual(len(finished), 1, result.describe())
        self.assertIs(finished[0]["ok"], False)
        self.assertTrue(finished[0]["message"], "the pull's message is empty")
        self.assertEqual(result.events()[-1]["data"]["state"], "error")

    def test_unreachable_registry(self):
        # Nothing listens on the port, so every connection is refused. The
        # runtime's own retries take a few seconds.
        result = self.run_job("unreachable", flags=("-q",))
        self.assertError(result, "E_OCI")
        self.assertIn("cannot pull image '127.0.0.1:", result.err)
        self.assertLess(result.elapsed, 60, result.describe())


support.runtime_classes(Pull, globals())

if __name__ == "__main__":
    unittest.main()
