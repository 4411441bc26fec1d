"""Keyboard-interactive over real PAM stacks, and one-time codes across logins (tier infra; needs root).

* PAM stacks with real sites' wording (tests/support/infra/sshd_totp.py `prompts`): code then password
  (bwHPC "Your OTP:", "Password:"), password then code, German ("Einmalpasswort:", "Passwort:"), SSSD
  ("First Factor:", "Second Factor:"), ONE prompt for both (pam_google_authenticator forward_pass, as NERSC's
  "Password + OTP:"), and a PIN-worded combined prompt that mlops refuses before typing anything.
* Two logins of one account in one 30 s step with the secret; a runner whose clock is a step ahead (the one
  retry still succeeds; sent at once, the next step's code is outside the server's window); a wrong secret;
  a typed code.
* 50 logins under CPU load with the e2e fixture's codes and the product's code choice: none refused.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pyotp
import pytest

from mlops.ssh import Endpoint, LoginFailed, Session, codes, prompts
from support.infra.sshd_totp import CodeBook, TotpSshServer

pytestmark = [pytest.mark.timeout(900)]


def login_env(srv, **extra) -> dict:
    return {"HPC_SSH_PRIVATE_KEY": str(srv.client_key_path), "HPC_TOTP_SECRET": srv.totp_secret, **extra}


def session(srv, tmp: Path, auth: str = "totp", **kw) -> Session:
    known = tmp / "known_hosts"
    srv.write_known_hosts(known)
    kw.setdefault("env", login_env(srv))
    return Session(Endpoint(srv.host, srv.port, srv.user), auth, known=known, **kw)


# ------------------------------------------------------------------ PAM stacks with real prompts

C, P, B = prompts.CODE, prompts.PASSWORD, prompts.PASSWORD_CODE
STACKS = [  # (server auth, the site's prompts, what mlops types, in order)
    ("totp+password", None, [C, P]),  # bwHPC: "Your OTP:" then pam_unix "Password:"
    ("password+totp", None, [P, C]),  # pam_unix, then pam_google_authenticator "Verification code:"
    ("totp+password", ("Einmalpasswort: ", "Passwort: "), [C, P]),
    ("password+totp", ("First Factor: ", "Second Factor: "), [P, C]),  # SSSD's 2FA wording
    ("password&totp", None, [B]),  # forward_pass: "Password & verification code: "
    ("password&totp", ("Password + OTP: ",), [B]),  # NERSC's wording
]


@pytest.mark.parametrize("auth, texts, typed", STACKS, ids=[f"{a}:{t}" for a, t, _ in STACKS])
def test_each_secret_goes_into_its_own_prompt(auth, texts, typed, tmp_path):
    with TotpSshServer(auth=auth, prompts=texts) as srv:
        env = login_env(srv, HPC_PASSWORD=srv.password)
        with session(srv, tmp_path, "totp+password", env=env) as s:
            assert s.run("whoami")[1].strip() == srv.user
            assert s.answerers[0].answered == typed
            assert [n for n in s.answerers[0].rounds if n] == [1] * len(typed)  # OpenSSH's PAM bridge: one per round
        assert srv.count_failed() == 0 and srv.count_logins() == 1

        # cluster.auth "totp" (no HPC_PASSWORD): the code never goes into a password prompt
        s = session(srv, tmp_path, "totp", env=login_env(srv))
        with pytest.raises(prompts.PromptRefused, match="asked for the account password") as info:
            s.open()
        message = str(info.value)
        assert 'auth = "totp+password" in the [clusters.NAME] block' in message and "HPC_PASSWORD" in message
        assert srv.totp_secret not in message and srv.password not in message
        assert s.answerers[0].answered == typed[: typed.index(P)] if P in typed else s.answerers[0].answered == []
        time.sleep(0.5)
        assert srv.count_failed() == 0, srv.log_text()[-2000:]  # mlops left before answering: no failed attempt


def test_a_pin_plus_code_prompt_is_refused_before_typing(tmp_path):
    """Whether a site's "PIN" is the account password depends on its otppin policy: nothing is typed."""
    with TotpSshServer(auth="password&totp", prompts=("PIN+Token: ",)) as srv:
        s = session(srv, tmp_path, "totp+password", env=login_env(srv, HPC_PASSWORD=srv.password))
        with pytest.raises(prompts.PromptRefused, match=r"asked 'PIN\+Token:'.*otppin policy.*nothing was typed"):
            s.open()
        assert s.answerers[0].answered == [] and s.attempts == 0
        time.sleep(0.5)
        assert srv.count_failed() == 0 and srv.count_logins() == 0
        with pytest.raises(Exception, match=r"HPC_PASSWORD \(not set\)"):  # refused before connecting
            session(srv, tmp_path, "totp+password").open()


# ------------------------------------------------------------------ codes across logins of one account


@pytest.fixture
def totp_server():
    with TotpSshServer(auth="totp") as srv:  # DISALLOW_REUSE, RATE_LIMIT 10 30, WINDOW_SIZE 3
        yield srv


def fake_clock(at: float):
    """A clock that reads `at` now and runs at the real rate (a runner's clock off by a fixed amount)."""
    t0 = time.monotonic()
    return lambda: at + (time.monotonic() - t0)


def wait_for_phase(low: float, high: float) -> float:
    """Wait (at most 30 s) until the real clock is `low`..`high` s into its 30 s step; returns the time."""
    now = time.time()
    if not low <= now % 30 <= high:
        time.sleep((low - now % 30) % 30)
    return time.time()


def test_two_logins_in_one_step_both_succeed(totp_server, tmp_path):
    srv = totp_server
    key = codes.decode_secret(srv.totp_secret)
    step = int(time.time() // 30)
    clock = fake_clock(step * 30 + 0.5)  # both first codes in step `step` (29.5 s for two logins)
    sessions = [
        session(srv, tmp_path, code=codes.SecretCodes(key, "HPC_TOTP_SECRET", clock=clock)).open() for _ in range(2)
    ]
    try:
        assert [s.attempts for s in sessions] == [1, 2]  # the second's first code is refused as reused
        first, retry = (a.codes for a in sessions[1].answerers)
        assert first is retry and retry.sent_step == step + 1  # the next step's code ...
        assert retry.sent_at >= sessions[0].answerers[0].codes.sent_at + 30  # ... typed 30 s after the refused one
        assert all(s.run("true")[0] == 0 for s in sessions)
    finally:
        for s in sessions:
            s.close()
    time.sleep(0.5)
    assert srv.count_logins() == 2 and srv.count_failed() == 1


def test_retry_succeeds_when_the_runners_clock_is_a_step_ahead(totp_server, tmp_path):
    """Runner clock one step ahead (s = t+1) and that step already used by another login: the old retry sent
    step t+2 at once (outside the server's window t-1..t+1: a second failure); the retry now waits until the
    next step is inside the window (30 s after the refused code) and succeeds."""
    srv = totp_server
    now = wait_for_phase(1, 8)  # >= 21 s left in the server's step t for the first attempt
    t = int(now // 30)
    srv.transport(code=pyotp.TOTP(srv.totp_secret).at((t + 1) * 30)).close()  # another login used step t+1
    ahead = codes.SecretCodes(codes.decode_secret(srv.totp_secret), "test", clock=fake_clock((t + 1) * 30 + 1))
    with session(srv, tmp_path, code=ahead) as s:
        assert s.attempts == 2 and ahead.sent_step == t + 2
        assert s.run("true")[0] == 0
    time.sleep(0.5)
    assert srv.count_failed() == 1 and srv.count_logins() == 2


def test_wrong_secret_one_attempt_and_one_retry_typed_code_never(totp_server, tmp_path):
    srv = totp_server
    env = login_env(srv, HPC_TOTP_SECRET=pyotp.random_base32())
    with pytest.raises(LoginFailed, match="refused the one-time code .* twice") as info:
        session(srv, tmp_path, env=env).open()
    assert "wrong secret or this machine's clock" in str(info.value) and env["HPC_TOTP_SECRET"] not in str(info.value)
    time.sleep(0.5)
    assert srv.count_failed() == 2 and srv.count_logins() == 0

    typed = {"HPC_SSH_PRIVATE_KEY": str(srv.client_key_path), "HPC_OTP": srv.wrong_otp()}
    with pytest.raises(LoginFailed, match="Not retrying a typed code"):
        session(srv, tmp_path, env=typed).open()
    time.sleep(0.5)
    assert srv.count_failed() == 3


# ------------------------------------------------------------------ no clock dependence under load


def _busy(stop):
    while not stop.is_set():
        pass


def test_fifty_logins_under_cpu_load_refuse_no_code(tmp_path):
    """The e2e fixture's codes (CodeBook) and the product's choice (SecretCodes), 25 logins each, with two
    busy-loop processes on the 2 cores. The server has no DISALLOW_REUSE (50 logins with it would need 50
    distinct steps, 25 minutes): what is tested is that no handed-out code expires before it is used."""
    with TotpSshServer(auth="totp", disallow_reuse=False) as srv:
        book = CodeBook(srv.totp_secret, distinct=False)
        stop = multiprocessing.Event()
        load = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(2)]
        for p in load:
            p.start()
        try:
            for i in range(50):
                code = codes.TypedCode(book.next(), "the e2e fixture") if i % 2 else None
                with session(srv, tmp_path, code=code) as s:
                    assert s.attempts == 1
        finally:
            stop.set()
            for p in load:
                p.join(10)
        time.sleep(0.5)
        assert srv.count_failed() == 0 and srv.count_logins() == 50
