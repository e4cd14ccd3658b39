from workspaces.runtime.base import RuntimeDriver
from workspaces.runtime.docker.archive import DockerArchive
from workspaces.runtime.docker.exec import DockerExec
from workspaces.runtime.docker.images import DockerImages
from workspaces.runtime.docker.lifecycle import DockerLifecycle
from workspaces.runtime.docker.stats import DockerStats
from workspaces.runtime.docker.system import DockerSystem


class DockerDriver(
    DockerLifecycle,
    DockerStats,
    DockerArchive,
    DockerExec,
    DockerSystem,
    DockerImages,
    RuntimeDriver,
):
    """The Docker Engine driver: lifecycle plus operations mixins."""


__all__ = ["DockerDriver"]
