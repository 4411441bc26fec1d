"""Free TCP port on the loopback interface."""
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free *now* on ``host``.

    The kernel picks it (bind to port 0); there is a small race until the
    caller's server binds it, which is acceptable for tests.  Never binds to
    0.0.0.0: every server here listens on loopback only.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
