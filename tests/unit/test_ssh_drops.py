"""Connections dropped by the server, during and after the login: reported as drops, never as a refused
code, never as a traceback. The server is an in-process paramiko SSH server on 127.0.0.1 (a real sshd
cannot be told to hang up in the middle of keyboard-interactive); the client is mlops.ssh.Session."""

from __future__ import annotations

import io
import socket
import threading
import time

import paramiko
import pytest

from mlops.ssh import ConnectionLost, Endpoint, LoginFailed, Session, known_hosts


class DroppingServer(paramiko.ServerInterface):
    """publickey (any key), then keyboard-interactive; `drop` says when to hang up."""

    def __init__(self, drop: str):
        self.drop, self.transport = drop, None

    def get_allowed_auths(self, username):
        return "publickey,keyboard-interactive"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_PARTIALLY_SUCCESSFUL

    def check_auth_interactive(self, username, submethods):
        if self.drop == "prompt":
            self.transport.close()
        return paramiko.server.InteractiveQuery("", "", ("Verification code: ", False))

    def check_auth_interactive_response(self, responses):
        if self.drop == "answer":
            self.transport.close()
            return paramiko.AUTH_FAILED
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        if self.drop == "after":
            threading.Timer(0.05, self.transport.close).start()
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command):
        return True


@pytest.fixture
def serve(tmp_path):
    key = paramiko.ECDSAKey.generate()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    threads = []

    def start(drop: str) -> dict:
        def run():
            conn, _ = listener.accept()
            t = paramiko.Transport(conn)
            t.add_server_key(key)
            server = DroppingServer(drop)
            server.transport = t
            t.start_server(server=server)
            if drop == "after":
                t.accept(10)
            for _ in range(100):  # bounded: until the transport is closed by either side
                if not t.is_active():
                    break
                time.sleep(0.05)
            t.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        client = paramiko.ECDSAKey.generate()
        known = known_hosts.parse(f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n")
        return {
            "endpoint": Endpoint("127.0.0.1", port, "u"),
            "env": {"HPC_OTP": "123456"},
            "key": client,
            "known": known,
        }

    yield start
    listener.close()
    for thread in threads:
        thread.join(5)


@pytest.mark.parametrize("drop", ["prompt", "answer"])
def test_drop_during_keyboard_interactive_is_not_a_refused_code(serve, drop):
    s = serve(drop)
    with pytest.raises(LoginFailed) as info:
        Session(s["endpoint"], "totp", key=s["key"], env=s["env"], known=s["known"]).open()
    message = str(info.value)
    assert "connection closed by the server during" in message and "refused" not in message.split(";")[0], message


def test_drop_after_login_is_a_clean_error(serve):
    s = serve("after")
    session = Session(s["endpoint"], "totp", key=s["key"], env=s["env"], known=s["known"])
    with pytest.raises(ConnectionLost, match="closed by the server|lost"), session:
        session.run("true", timeout=20)
        session.run("true", timeout=20)


def test_key_text_is_read_from_memory(serve, tmp_path):
    key = paramiko.ECDSAKey.generate()
    buf = io.StringIO()
    key.write_private_key(buf)
    s = serve("answer")
    env = {**s["env"], "HPC_SSH_PRIVATE_KEY": buf.getvalue()}
    with pytest.raises(LoginFailed, match="connection closed by the server during"):
        Session(
            s["endpoint"], "totp", env=env, known=s["known"]
        ).open()  # the key text was accepted: the login got to the code
    assert not list(tmp_path.iterdir())
