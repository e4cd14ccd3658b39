from workspaces.runtime.base import RuntimeDriver
from workspaces.runtime.docker.lifecycle import DockerLifecycle
from workspaces.runtime.docker.stats import DockerStats
from workspaces.runtime.docker.system import DockerSystem


class DockerDriver(DockerLifecycle, DockerStats, DockerSystem, RuntimeDriver):
    """The Docker Engine driver: lifecycle plus operations mixins."""


__all__ = ["DockerDriver"]
