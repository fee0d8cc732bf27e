#!/usr/bin/env python3
"""Time runs of one job through flwd against the same container run directly.

bench/run-bench.sh calls this once per runtime. Each iteration runs, in this
order and one at a time:

  flwd     flwd --runtime R --jobs DIR --state-dir DIR JOB
  direct   the runtime command line that `flwd plan` prints, with a fresh
           run id and the run directory, env file and args file that flwd
           would create (made before the clock starts)
  inspect  the image inspect command that flwd runs before each container
  plan     flwd plan JOB, which starts flwd, loads the spec and chooses the
           runtime but runs no container

Interleaving the four cancels slow drift of the host (page cache, daemon
state, thermal). Every command is spawned from an argv list, with no shell,
and timed from spawn to reaped exit. Peak RSS of the flwd process itself is
sampled from /proc/PID/status (VmHWM) in separate runs after the timing
loop, because the rusage of wait4() includes the runtime processes that
flwd waits for.
"""

import argparse
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time


def spawn(argv, env=None):
    """Start ARGV with stdin, stdout and stderr on /dev/null; return its pid."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    return os.posix_spawn(argv[0], argv, env or os.environ, file_actions=actions)


def timed_run(argv, env=None):
    """Run ARGV to its end; return (milliseconds, exit status, rusage)."""
    start = time.perf_counter_ns()
    pid = spawn(argv, env)
    _, status, usage = os.wait4(pid, 0)
    elapsed_ms = (time.perf_counter_ns() - start) / 1e6
    return elapsed_ms, os.waitstatus_to_exitcode(status), usage


def read_hwm_kib(pid):
    """Return VmHWM of PID in KiB, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def sampled_peak_rss(argv, env, interval_s=0.002):
    """Run ARGV and return (max VmHWM seen in KiB, wait4 ru_maxrss in KiB)."""
    pid = spawn(argv, env)
    peak = 0
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            break
        hwm = read_hwm_kib(pid)
        if hwm is not None:
            peak = max(peak, hwm)
        time.sleep(interval_s)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"measure: {argv[0]} exited with status "
                 f"{os.waitstatus_to_exitcode(status)} in the RSS runs")
    return peak, usage.ru_maxrss


def load_plan(args, env):
    """Return the plan of `flwd plan` and the run id inside its argv."""
    argv = [args.flwd, "--runtime", args.runtime, "--jobs", args.jobs,
            "--state-dir", args.state_dir, "plan", args.job]
    result = subprocess.run(argv, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        sys.exit(f"measure: flwd plan failed with status {result.returncode}: "
                 f"{result.stderr.strip()}")
    plan = json.loads(result.stdout)
    prefix = "--label=io.flwd.run-id="
    run_id = next(a[len(prefix):] for a in plan["argv"] if a.startswith(prefix))
    return plan, run_id


def prepare_direct_run(plan, planned_id, state_dir):
    """Create what flwd creates for a run; return (argv, run directory)."""
    run_id = secrets.token_hex(8)
    argv = [a.replace(planned_id, run_id) for a in plan["argv"]]
    run_dir = os.path.join(state_dir, "runs", run_id)
    os.makedirs(run_dir, mode=0o700)
    for name in ("work", "out", "status"):
        path = os.path.join(run_dir, name)
        os.mkdir(path)
        os.chmod(path, 0o777)
    with open(os.path.join(run_dir, "args.json"), "w", encoding="utf-8") as f:
        json.dump(plan["args"], f)
    env_lines = [
        f"FLWD_RUN_ID={run_id}",
        f"FLWD_JOB_ID={plan['job']}",
        "FLWD_ARGS_FILE=/run/flwd/args.json",
        "FLWD_WORKDIR=/work",
        "FLWD_OUTPUT_DIR=/run/flwd/out",
        "FLWD_SECRETS_DIR=/run/secrets",
    ]
    env_path = os.path.join(run_dir, "env")
    with open(env_path, "w", encoding="utf-8") as f:
        f.write("\n".join(env_lines) + "\n")
    os.chmod(env_path, 0o600)
    return argv, run_dir


def percentile(sorted_values, fraction):
    """Return the nearest-rank percentile of SORTED_VALUES."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(samples):
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "mean_ms": statistics.fmean(samples),
        "median_ms": statistics.median(samples),
        "p95_ms": percentile(ordered, 0.95),
        "stdev_ms": statistics.stdev(samples) if len(samples) > 1 else 0.0,
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
    }


def check_status(command_label, status):
    if status != 0:
        sys.exit(f"measure: {command_label} exited with status {status}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flwd", required=True, help="path of the flwd binary")
    parser.add_argument("--runtime", required=True, choices=["podman", "docker"])
    parser.add_argument("--jobs", required=True, help="directory of the job spec")
    parser.add_argument("--job", required=True, help="id of the job to run")
    parser.add_argument("--state-dir", required=True,
                        help="absolute state directory for flwd and the direct runs")
    parser.add_argument("--runs", type=int, default=30,
                        help="measured iterations (default 30)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="iterations run first and discarded (default 3)")
    parser.add_argument("--rss-runs", type=int, default=5,
                        help="extra flwd runs that sample its peak RSS (default 5)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2")

    env = dict(os.environ)
    plan, planned_id = load_plan(args, env)
    flwd_argv = [args.flwd, "--runtime", args.runtime, "--jobs", args.jobs,
                 "--state-dir", args.state_dir, args.job]
    inspect_argv = [plan["runtime_path"], "image", "inspect",
                    "--format={{json .Config}}", "--", plan["image"]]
    plan_argv = flwd_argv[:-1] + ["plan", args.job]

    samples = {"flwd": [], "direct": [], "inspect": [], "plan": []}
    for i in range(args.warmup + args.runs):
        direct_argv, run_dir = prepare_direct_run(plan, planned_id,
                                                  args.state_dir)

        flwd_ms, status, _ = timed_run(flwd_argv, env)
        check_status("flwd", status)
        direct_ms, status, _ = timed_run(direct_argv, env)
        check_status(f"{args.runtime} run", status)
        inspect_ms, status, _ = timed_run(inspect_argv, env)
        check_status(f"{args.runtime} image inspect", status)
        plan_ms, status, _ = timed_run(plan_argv, env)
        check_status("flwd plan", status)

        shutil.rmtree(run_dir)
        if i >= args.warmup:
            samples["flwd"].append(flwd_ms)
            samples["direct"].append(direct_ms)
            samples["inspect"].append(inspect_ms)
            samples["plan"].append(plan_ms)

    peaks = [sampled_peak_rss(flwd_argv, env) for _ in range(args.rss_runs)]

    stats = {name: summarize(values) for name, values in samples.items()}
    flwd, direct = stats["flwd"], stats["direct"]
    # The two commands of one iteration ran back to back, so their
    # difference is less disturbed by load that changes during the
    # benchmark than the difference of the two means.
    paired = [a - b for a, b in zip(samples["flwd"], samples["direct"])]
    result = {
        "runtime": args.runtime,
        "runtime_path": plan["runtime_path"],
        "image": plan["image"],
        "runs": args.runs,
        "warmup": args.warmup,
        "stats": stats,
        "ratio_mean": flwd["mean_ms"] / direct["mean_ms"],
        "ratio_median": flwd["median_ms"] / direct["median_ms"],
        "overhead_mean_ms": flwd["mean_ms"] - direct["mean_ms"],
        "overhead_paired_median_ms": statistics.median(paired),
        "flwd_peak_rss_kib": max(p[0] for p in peaks),
        "flwd_tree_maxrss_kib": max(p[1] for p in peaks),
    }

    print(f"runtime {args.runtime} ({plan['runtime_path']}), image "
          f"{plan['image']}, {args.runs} runs after {args.warmup} warm-ups")
    print(f"  {'command':<34} {'mean':>8} {'median':>8} {'p95':>8} "
          f"{'stdev':>7} {'min':>8}  (ms)")
    labels = {
        "flwd": "flwd JOB",
        "direct": f"{args.runtime} run (flwd's argv)",
        "inspect": f"{args.runtime} image inspect",
        "plan": "flwd plan JOB",
    }
    for name, label in labels.items():
        s = stats[name]
        print(f"  {label:<34} {s['mean_ms']:8.1f} {s['median_ms']:8.1f} "
              f"{s['p95_ms']:8.1f} {s['stdev_ms']:7.1f} {s['min_ms']:8.1f}")
    print(f"  flwd / {args.runtime} run: mean {result['ratio_mean']:.3f}, "
          f"median {result['ratio_median']:.3f} "
          f"(+{result['overhead_mean_ms']:.1f} ms mean)")
    print(f"  flwd - {args.runtime} run within each iteration: median "
          f"{result['overhead_paired_median_ms']:+.1f} ms, "
          f"{100 * result['overhead_paired_median_ms'] / direct['median_ms']:+.1f}% "
          f"of the {args.runtime} run median")
    print(f"  flwd peak RSS (VmHWM, sampled): "
          f"{result['flwd_peak_rss_kib'] / 1024:.1f} MiB; wait4 maxrss of "
          f"flwd and its children: {result['flwd_tree_maxrss_kib'] / 1024:.1f} MiB")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
