"""A key-only login node that records every keyboard-interactive answer a client types at it.

``RecordingKeySshServer`` is TotpSshServer with ``auth='key'`` (publickey alone logs in), except that
it ALSO offers keyboard-interactive (``AuthenticationMethods any``, as sites do that take a key OR a
password + code). Its PAM stack asks "Password: " through pam_exec ``expose_authtok`` (record_answers.sh
appends each answer to ``answers_path``) and then denies: whatever a client types there never logs in
but is seen. A client that logs in with its key types nothing, so ``answers()`` stays as it was; the
test proves the observation point is live by typing a probe itself (``probe``).
"""

from __future__ import annotations

from pathlib import Path

import paramiko

from .sshd_totp import TotpSshServer

RECORDER = Path(__file__).with_name("record_answers.sh")


class RecordingKeySshServer(TotpSshServer):
    """``with RecordingKeySshServer(user=..., setenv=...) as srv``; ``srv.answers()``: the lines typed."""

    def __init__(self, **kwargs):
        super().__init__(auth="key", **kwargs)
        self.answers_path = self.workdir / "answers.log"

    def _auth_stack(self) -> list:
        self.answers_path.touch(mode=0o600)
        return [
            f"auth requisite pam_exec.so expose_authtok quiet {RECORDER} {self.answers_path}",
            "auth required pam_deny.so",
        ]

    def _write_config(self):
        super()._write_config()
        text = self.config_path.read_text()
        text = text.replace("KbdInteractiveAuthentication no", "KbdInteractiveAuthentication yes")
        self.config_path.write_text(text.replace("AuthenticationMethods publickey", "AuthenticationMethods any"))

    def answers(self) -> list[str]:
        """Every keyboard-interactive answer received so far, in order."""
        return self.answers_path.read_text(errors="replace").splitlines()

    def probe(self, answer: str) -> list[str]:
        """Type `answer` at the keyboard-interactive prompt (host key checked first; the login is denied);
        returns the prompts the server showed."""
        shown: list[str] = []
        t = paramiko.Transport((self.host, self.port))
        try:
            t.start_client(timeout=15)
            if t.get_remote_server_key() != self.host_public_key():
                raise paramiko.SSHException("host key mismatch")

            def handler(title, instructions, prompt_list):
                shown.extend(p for p, _ in prompt_list)
                return [answer for _ in prompt_list]

            try:
                t.auth_interactive(self.user, handler)
            except paramiko.AuthenticationException:
                pass  # denied, as intended
        finally:
            t.close()
        return shown
