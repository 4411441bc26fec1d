"""A DNS stand-in and a private /etc/resolv.conf, to show what the resolver's environment variables do.

``with DnsStandIn({"login.hpc.test.": "127.0.0.1", "login.hpc.test.attacker.test.": "127.0.0.2"}) as dns:``
answers A queries for those names (NOERROR without records for other types, NXDOMAIN for other
names) on UDP port 53 of 127.0.0.1 (another loopback address if it is taken); ``dns.command(argv)``
runs argv in a private mount namespace (``unshare -m``, root) whose /etc/resolv.conf names only this
server, so glibc's resolver (with LOCALDOMAIN, RES_OPTIONS ... if set) asks it. Nothing outside the namespace changes.
``queries`` lists the names asked, in order.
"""

from __future__ import annotations

import shlex
import socket
import struct
import threading

from ._util import InfraError, shared_tmpdir


class DnsStandIn:
    def __init__(self, answers: dict[str, str]):
        self.answers = {k.lower().rstrip(".") + ".": v for k, v in answers.items()}
        self.queries: list[str] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.address = ""
        self.workdir = shared_tmpdir("mlops-dns-")

    def __enter__(self) -> DnsStandIn:
        # resolv.conf cannot name a port: UDP 53 of 127.0.0.1, else of another loopback address
        for address in ["127.0.0.1", *(f"127.0.53.{i}" for i in range(1, 20))]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((address, 53))
            except OSError:
                sock.close()
                continue
            self._sock, self.address = sock, address
            break
        else:
            raise InfraError("no free UDP port 53 on 127.0.0.1 or 127.0.53.1-19")
        self._sock.settimeout(0.2)
        self.resolv_conf = self.workdir / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {self.address}\noptions timeout:2 attempts:1\n")
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        for p in self.workdir.iterdir():
            p.unlink()
        self.workdir.rmdir()

    def command(self, argv: list[str]) -> list[str]:
        """argv run in a private mount namespace where /etc/resolv.conf names this server only."""
        inner = f'mount --bind {shlex.quote(str(self.resolv_conf))} /etc/resolv.conf && exec "$@"'
        return ["unshare", "-m", "sh", "-c", inner, "sh", *argv]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                reply = self._answer(data)
            except (ValueError, IndexError, struct.error):
                continue
            self._sock.sendto(reply, peer)

    def _answer(self, query: bytes) -> bytes:
        (qid, _flags, qdcount) = struct.unpack(">HHH", query[:6])
        if qdcount != 1:
            raise ValueError("one question only")
        labels, pos = [], 12
        while query[pos]:
            labels.append(query[pos + 1 : pos + 1 + query[pos]].decode("ascii", "replace"))
            pos += 1 + query[pos]
        qtype, _qclass = struct.unpack(">HH", query[pos + 1 : pos + 5])
        question = query[12 : pos + 5]
        name = ".".join(labels).lower() + "."
        self.queries.append(name)
        address = self.answers.get(name)
        rcode = 0 if address is not None else 3  # NXDOMAIN
        records = b""
        if address is not None and qtype == 1:  # A
            records = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
        header = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, 1 if records else 0, 0, 0)
        return header + question + records
