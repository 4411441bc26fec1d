"""Where to log in: host, port and user of the login node or the jump host (mlops.toml cluster.*)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadInput
from . import sources
from .known_hosts import host_name


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 22
    user: str = ""

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names the host in known_hosts: `host`, or `[host]:port` off port 22."""
        return host_name(self.host, self.port)

    @property
    def who(self) -> str:
        return f"{self.user}@{self.host}"

    @classmethod
    def parse(cls, spec: str, default_user: str) -> Endpoint:
        """`[user@]host[:port]` or `[user@][host]:port`, as written in mlops.toml cluster.jump_host.

        BadInput naming the field when the host is empty or the port is not 1-65535.
        """
        user, _, hostport = spec.strip().rpartition("@")
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port = hostport.partition(":")
        if not host or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
            raise BadInput(
                f"clusters.NAME.jump_host: {sources.sanitize(spec, 80)!r} is not [user@]host[:port] with a "
                "port from 1 to 65535. Fix: correct it in mlops.toml"
            )
        return cls(host, int(port or 22), user or default_user)
