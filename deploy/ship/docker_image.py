"""The worker image: built from server/Dockerfile with the Docker SDK, tagged with the source label
(the git commit, plus a content hash when server/ differs from it), pushed to the stage's ECR
repository after a login with GetAuthorizationToken, with progress on stderr."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.errors import DeployError

if TYPE_CHECKING:
    from deploy.report import Reporter
    from deploy.stage import Stage

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class NoDockerEngine(DeployError):
    """No Docker engine answers: the build cannot run here."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(
            f"no Docker engine at {where} ({detail}): start Docker or set DOCKER_HOST, "
            "or deploy without a build: --skip-build (the image of the current commit, already pushed) "
            "or --image URI"
        )


class BuildFailed(DeployError):
    pass


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def docker_api() -> Any:
    """A low-level Docker API client that has answered a ping; NoDockerEngine when none does."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - the package is a dependency
        raise NoDockerEngine(engine_address(), "the docker package is not installed") from None
    where = engine_address()
    try:
        client = docker.APIClient(base_url=where, version="auto", timeout=60)
        client.ping()
    except (DockerException, OSError) as exc:
        raise NoDockerEngine(where, _first_line(exc)) from None
    return client


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


@dataclass(frozen=True)
class Registry:
    address: str  # host, no scheme
    username: str
    password: str


def registry_login(stage: Stage) -> Registry:
    """ECR's registry credentials (GetAuthorizationToken): a user and a 12-hour password."""
    data = stage.client("ecr").get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    address = data["proxyEndpoint"].removeprefix("https://").removeprefix("http://")
    return Registry(address, user, password)


def _progress(chunks: Iterable[dict[str, Any]], reporter: Reporter, what: str) -> None:
    """Print the engine's progress (build steps, per-layer push status); raise on its errors."""
    shown: dict[str, str] = {}
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
            raise BuildFailed(f"{what} failed: {str(detail).strip()}")
        if reporter.as_json:
            continue
        if "stream" in chunk and chunk["stream"].strip():
            reporter.err.print(f"  {chunk['stream'].rstrip()}", markup=False, highlight=False)
        elif "status" in chunk:
            layer = chunk.get("id", "")
            line = f"{layer}: {chunk['status']}".strip(": ")
            if shown.get(layer) != chunk["status"]:
                shown[layer] = chunk["status"]
                reporter.err.print(f"  {line}", markup=False, highlight=False)


def build_image(api: Any, source: Path, repository: str, tag: str, reporter: Reporter) -> str:
    """Build `source`/Dockerfile as repository:tag; returns that reference."""
    reference = f"{repository}:{tag}"
    reporter.message(f"building {reference} from {source}/Dockerfile")
    chunks = api.build(path=str(source), tag=reference, rm=True, pull=True, decode=True)
    _progress(chunks, reporter, f"docker build of {reference}")
    return reference


def push_image(api: Any, registry: Registry, repository: str, tag: str, reporter: Reporter) -> None:
    reporter.message(f"pushing {repository}:{tag}")
    auth = {"username": registry.username, "password": registry.password, "serveraddress": registry.address}
    chunks = api.push(repository, tag=tag, auth_config=auth, stream=True, decode=True)
    _progress(chunks, reporter, f"docker push of {repository}:{tag}")


def image_pushed(stage: Stage, tag: str) -> bool:
    """Whether the stage's repository already holds `tag` (tags are immutable: never push twice)."""
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    try:
        found = stage.client("ecr").describe_images(
            repositoryName=stage.config.ecs.repository, imageIds=[{"imageTag": tag}]
        )
    except ClientError as exc:
        if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
            return False
        raise
    return bool(found.get("imageDetails"))


def source_tag(source: Path) -> str:
    from deploy.ship.bundle import build_bundle

    return build_bundle(source).label


def build_and_push(stage: Stage, source: Path, reporter: Reporter, tag: str | None = None) -> str:
    """The image of `source` in the stage's repository (built and pushed unless already there)."""
    return ensure_image(stage, source, reporter, tag)[0]


def ensure_image(stage: Stage, source: Path, reporter: Reporter, tag: str | None = None) -> tuple[str, bool]:
    """The image of `source` in the stage's repository, and whether this call pushed it (False when
    the repository already had the tag: tags are immutable, nothing is built again)."""
    from deploy.areas.ecr import repository_uri

    repository = repository_uri(stage)
    tag = tag or source_tag(source)
    if image_pushed(stage, tag):
        reporter.message(f"{repository}:{tag} is already in the repository")
        return f"{repository}:{tag}", False
    api = docker_api()
    build_image(api, source, repository, tag, reporter)
    push_image(api, registry_login(stage), repository, tag, reporter)
    return f"{repository}:{tag}", True
