from workspaces.runtime.base import RuntimeDriver
from workspaces.runtime.docker.archive import DockerArchive
from workspaces.runtime.docker.lifecycle import DockerLifecycle


class DockerDriver(DockerLifecycle, DockerArchive, RuntimeDriver):
    """The Docker Engine driver: lifecycle plus operations mixins."""


__all__ = ["DockerDriver"]
