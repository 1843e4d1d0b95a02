"""Error types of the tool, and how each becomes an exit code and a one-line message."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_CHANGES_PENDING = 3
# From plan and status: nothing `up` can change, but something the operator must do by hand.
EXIT_ACTION_NEEDED = 4


class DeployError(Exception):
    """An expected failure: reported as one line, never as a traceback."""

    exit_code = EXIT_RUNTIME

    def one_line(self) -> str:
        return str(self)

    def lines(self) -> list[str]:
        """What the CLI prints, one `error:` line each."""
        return [self.one_line()]


class BadInput(DeployError):
    """Bad input from the user: a config file, an argument, a file to import. No AWS call was made."""

    exit_code = EXIT_BAD_INPUT


class BadLines(BadInput):
    """Several bad lines of one file, reported together, then a summary line."""

    def __init__(self, problems: list[str], summary: str) -> None:
        self.problems = problems
        super().__init__(summary)

    def lines(self) -> list[str]:
        return [*self.problems, self.one_line()]


class ConfigError(BadInput):
    def __init__(self, path: str, key: str, message: str) -> None:
        self.path, self.key, self.message = path, key, message
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


class ArgumentError(BadInput):
    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {message}")


class AwsError(DeployError):
    """An AWS call failed: carries the AWS error code and what the operator can do next."""

    def __init__(
        self, code: str, message: str, hint: str = "", operation: str = "", service: str = ""
    ) -> None:
        self.code, self.message, self.hint, self.operation = code, message, hint, operation
        self.service = service
        where = (
            f" ({service}:{operation})" if service and operation else f" ({operation})" if operation else ""
        )
        text = f"{code}{where}: {message}"
        super().__init__(f"{text}. {hint}" if hint else text)


class WaitTimeout(DeployError):
    def __init__(self, what: str, state: str, seconds: float) -> None:
        super().__init__(
            f"timed out after {seconds:.0f}s waiting for {what}: still {state}. "
            "Rerun the same task to keep waiting; it resumes from the current state."
        )


class SecretNotFound(DeployError, KeyError):
    def __init__(self, message: str) -> None:
        DeployError.__init__(self, message)

    def __str__(self) -> str:
        return self.args[0]


_PERMISSION = "The credentials in use lack this permission: check AWS_PROFILE and the IAM policy."
_THROTTLED = "AWS kept throttling after retries: wait a minute and rerun; the task resumes."
_NO_ANSWER = "The endpoint gave no answer after botocore's retries: check the network and rerun; it resumes."
_EXPIRED = "The session token expired: log in again (aws sso login) and rerun."
_HINTS = {
    "AccessDenied": _PERMISSION,
    "AccessDeniedException": _PERMISSION,
    "UnauthorizedOperation": _PERMISSION,
    "AuthorizationError": _PERMISSION,
    "InvalidClientTokenId": "The access key is not valid for this account or endpoint: check AWS_PROFILE.",
    "ExpiredToken": _EXPIRED,
    "ExpiredTokenException": _EXPIRED,
    "Throttling": _THROTTLED,
    "ThrottlingException": _THROTTLED,
    "RequestLimitExceeded": _THROTTLED,
    "SlowDown": _THROTTLED,
    "InternalError": "AWS kept failing after retries: wait a minute and rerun; the task resumes.",
    "ServiceUnavailable": "AWS kept failing after retries: wait a minute and rerun; the task resumes.",
    "BucketAlreadyExists": "Bucket names are global and another account owns this one: "
    "rename it in config (s3.buckets.*.name).",
    "ParameterNotFound": "Set it first with `inv secrets.set NAME --stage STAGE`.",
}


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def hint_for(code: str) -> str:
    return _HINTS.get(code, "See the AWS error above; fix it and rerun: every task resumes safely.")


def _where(exc: Exception) -> tuple[str, str]:
    """(operation, service) of a call that got no answer, as the stage's clients mark it."""
    return str(getattr(exc, "aws_operation", "")), str(getattr(exc, "aws_service", ""))


def from_botocore(exc: Exception) -> DeployError:
    """Turn a botocore exception into an AwsError with a code and a hint."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "Unknown")
        message = str(err.get("Message") or exc)
        service = str(err.get("Service") or "")
        return AwsError(code, message.rstrip("."), hint_for(code), exc.operation_name, service)
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return AwsError(
            "NoCredentials",
            "no AWS credentials found",
            "Set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), "
            "or use --stage local for the embedded emulator.",
        )
    if isinstance(exc, bex.TokenRetrievalError | bex.SSOError):
        return AwsError("ExpiredToken", str(exc), "Log in again (aws sso login) and rerun.")
    if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError):
        return AwsError(
            "EndpointUnreachable",
            str(exc),
            "Check the network, AWS_ENDPOINT_URL and the region; for --stage local run `inv local.start`.",
        )
    if isinstance(exc, bex.ReadTimeoutError):
        return AwsError("ReadTimeout", str(exc), _NO_ANSWER, *_where(exc))
    if isinstance(exc, bex.ConnectionClosedError):
        return AwsError("ConnectionClosed", str(exc), _NO_ANSWER, *_where(exc))
    if isinstance(exc, bex.ProfileNotFound):
        return AwsError("ProfileNotFound", str(exc), "Name a profile that is in ~/.aws/config.")
    if isinstance(exc, bex.NoRegionError):
        return AwsError("NoRegion", str(exc), "Set `region` in config/defaults.yaml.")
    if isinstance(exc, bex.BotoCoreError):
        return AwsError(type(exc).__name__, str(exc), "", *_where(exc))
    raise exc
