"""What AWS accepts as a resource name, checked before any call so a bad name fails as bad input."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

_IP = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def _rule(pattern: str, low: int, high: int, what: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not low <= len(value) <= high:
            raise ValueError(f"{what} {value!r} must be {low} to {high} characters")
        if not compiled.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not a valid name ({pattern})")
        return value

    return check


def _bucket(value: str) -> str:
    _rule(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", 3, 63, "bucket name")(value)
    if ".." in value or _IP.match(value) or value.startswith("xn--"):
        raise ValueError(f"bucket name {value!r} is not allowed by S3")
    return value


def _hyphenated(what: str, high: int, lower: bool) -> Callable[[str], str]:
    first = "[a-z]" if lower else "[a-zA-Z]"
    rest = "[a-z0-9-]" if lower else "[a-zA-Z0-9-]"
    check = _rule(f"{first}{rest}*", 1, high, what)

    def run(value: str) -> str:
        check(value)
        if "--" in value or value.endswith("-"):
            raise ValueError(f"{what} {value!r} must not hold '--' or end with '-'")
        return value

    return run


BucketName = Annotated[str, AfterValidator(_bucket)]
TopicName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_-]+", 1, 256, "topic name"))]
QueueName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_-]+", 1, 76, "queue name"))]
TableName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_.-]+", 3, 255, "table name"))]
IamName = Annotated[str, AfterValidator(_rule(r"[\w+=,.@-]+", 1, 64, "IAM name"))]
RuleName = Annotated[str, AfterValidator(_rule(r"[.\-_A-Za-z0-9]+", 1, 64, "schedule name"))]
FunctionName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_-]+", 1, 64, "function name"))]
GroupName = Annotated[str, AfterValidator(_rule(r"[\w .\-:/()#,@\[\]+=&;{}!$*]+", 1, 255, "group"))]
DbIdentifier = Annotated[str, AfterValidator(_hyphenated("DB identifier", 63, lower=False))]
RedshiftIdentifier = Annotated[str, AfterValidator(_hyphenated("cluster identifier", 63, True))]
CacheIdentifier = Annotated[str, AfterValidator(_hyphenated("replication group id", 40, True))]
SearchDomain = Annotated[str, AfterValidator(_rule(r"[a-z][a-z0-9-]+", 3, 28, "search domain"))]
EbEnvironment = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9][A-Za-z0-9-]*", 4, 40, "env"))]
EbApplication = Annotated[str, AfterValidator(_rule(r"[^/]+", 1, 100, "application name"))]
EcsName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_-]+", 1, 255, "ECS name"))]
EcrRepository = Annotated[
    str,
    AfterValidator(
        _rule(
            r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
            2,
            256,
            "repository name",
        )
    ),
]
StreamName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_.-]+", 1, 64, "stream name"))]
SecretName = Annotated[str, AfterValidator(_rule(r"[A-Za-z0-9_.-]+", 1, 200, "secret name"))]
ParameterPrefix = Annotated[str, AfterValidator(_rule(r"(/[A-Za-z0-9_.-]+)+", 2, 900, "parameter prefix"))]


def check_secret_name(name: str) -> str:
    """Validate a secret's short name (the part after the stage prefix)."""
    return _rule(r"[A-Za-z0-9_.-]+", 1, 200, "secret name")(name)


def check_stage_name(name: str) -> str:
    return _rule(r"[a-z][a-z0-9]*", 1, 16, "stage name")(name)
