#!/bin/sh
# Runs flwd under valgrind's memcheck for a successful run, a failing run
# and a cancelled run, and fails on any memory error or definite leak.
# Needs FLWD_BIN, FLWD_INIT and a runtime with FLWD_TEST_IMAGE.
set -eu
image=${FLWD_TEST_IMAGE:-localhost/flwd-busybox:latest}
runtime=${FLWD_TEST_RUNTIMES:-podman}
runtime=${runtime%%,*}
if ! command -v valgrind >/dev/null; then
  echo "valgrind is not installed" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/jobs"
cat >"$work/jobs/vg.yaml" <<SPEC
id: vg
executor: container
interpreter: "container:$image"
command: ["sh", "-c", "\${args.script}"]
args:
  - name: script
    type: string
    required: true
stop_timeout: 2s
SPEC

status=0
run_case() {
  name=$1
  shift
  set +e
  FLWD_STATE_DIR="$work/state" valgrind --quiet --leak-check=full \
    --errors-for-leak-kinds=definite --error-exitcode=99 \
    "$FLWD_BIN" -q --runtime "$runtime" --jobs "$work/jobs" vg "$@" \
    >"$work/$name.out" 2>"$work/$name.err"
  code=$?
  set -e
  echo "$name: exit $code"
  if [ "$code" -eq 99 ] || grep -q "^==[0-9]*==" "$work/$name.err"; then
    echo "$name: valgrind found errors:" >&2
    cat "$work/$name.err" >&2
    status=1
  fi
}

run_case success --script 'echo hello'
run_case failure --script 'exit 3'

# A cancel: SIGTERM to flwd while the job sleeps.
FLWD_STATE_DIR="$work/state" valgrind --quiet --leak-check=full \
  --errors-for-leak-kinds=definite --error-exitcode=99 \
  "$FLWD_BIN" -q --runtime "$runtime" --jobs "$work/jobs" vg \
  --script 'sleep 60' >"$work/cancel.out" 2>"$work/cancel.err" &
pid=$!
sleep 6
kill -TERM "$pid"
set +e
wait "$pid"
code=$?
set -e
echo "cancel: exit $code"
if [ "$code" -eq 99 ] || grep -q "^==[0-9]*==" "$work/cancel.err"; then
  echo "cancel: valgrind found errors:" >&2
  cat "$work/cancel.err" >&2
  status=1
fi
exit $status
