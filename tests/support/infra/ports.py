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


def listening_addresses(port: int) -> list:
    """IPv4/IPv6 addresses with a LISTEN socket on ``port`` (from /proc/net),
    so tests can assert a server is bound to loopback only."""
    import ipaddress

    addrs = []
    for table, _v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            hexip, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:
                continue
            raw = bytes.fromhex(hexip)
            # /proc stores the address as host-order 32-bit words
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
            addrs.append(str(ipaddress.ip_address(b"".join(words))))
    return addrs
