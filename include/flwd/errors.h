/* flwd: stable error codes.
 *
 * This table is the only definition of flwd's error codes: the enum, the
 * code strings and the default messages are all generated from it. Codes are
 * appended at the end and never renumbered or reused, because callers and
 * bindings store them.
 */
#ifndef FLWD_ERRORS_H
#define FLWD_ERRORS_H

/* X(NAME, "stable code string", "default message") */
#define FLWD_ERROR_MAP(X)                                                      \
  X(OK, "ok", "success")                                                       \
  X(SPEC_INVALID, "spec.invalid", "the job spec is invalid")                   \
  X(JOB_NOT_FOUND, "job.not_found", "no job with that id was found")           \
  X(ARGS_INVALID, "args.invalid", "the arguments do not match the job")        \
  X(POLICY_DENIED, "policy.denied", "the policy does not allow the request")   \
  X(RUNTIME_UNAVAILABLE, "container.runtime.unavailable",                      \
    "no usable container runtime was found")                                   \
  X(NAME_CONFLICT, "container.name.conflict",                                  \
    "a container that flwd does not own has the run's name")                   \
  X(OCI, "E_OCI", "the container runtime failed")                              \
  X(RUN_NOT_FOUND, "run.not_found", "no run with that id was found")           \
  X(RUN_FINISHED, "run.finished", "the run has already finished")              \
  X(AUTH_UNAUTHORIZED, "auth.unauthorized", "missing or invalid credentials")  \
  X(REQUEST_INVALID, "request.invalid", "the request is invalid")              \
  X(REQUEST_TOO_LARGE, "request.too_large", "the request is too large")        \
  X(INTERNAL, "internal", "internal error")                                    \
  X(CONFIG_INVALID, "config.invalid", "the configuration is invalid")          \
  X(STORE_FAILED, "store.failed", "the run store failed")                      \
  X(SECRET_NOT_FOUND, "secret.not_found", "a secret of the job has no value")

typedef enum {
#define FLWD_ERROR_ENUM_(name, code, message) FLWD_E_##name,
  FLWD_ERROR_MAP(FLWD_ERROR_ENUM_)
#undef FLWD_ERROR_ENUM_
      FLWD_E_COUNT_
} flwd_code;

#endif /* FLWD_ERRORS_H */
