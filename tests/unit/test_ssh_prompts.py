"""The keyboard-interactive prompt table (mlops.ssh.prompts.RULES) and what is typed into each prompt.

Every example in the table is classified by its own row; more real prompts below (German sites, OpenSSH's
PAM bridge putting info messages before the question). Over a real sshd with these prompts:
tests/infra/test_ssh_login.py."""

from __future__ import annotations

import pytest

from mlops.ssh import codes, prompts

EXAMPLES = [(example, rule.kind) for rule in prompts.RULES for example in rule.examples]


@pytest.mark.parametrize("prompt, kind", EXAMPLES)
def test_every_example_of_the_table_is_classified_by_its_row(prompt, kind):
    assert prompts.classify(prompt) == kind


@pytest.mark.parametrize(
    "prompt, kind",
    [
        ("Einmalpasswort: ", prompts.CODE),  # German "one-time password": never the password
        ("Einmal-Kennwort:", prompts.CODE),
        ("Passwort:", prompts.PASSWORD),
        ("Kennwort für alice:", prompts.PASSWORD),
        ("Password + OTP: ", prompts.PASSWORD_CODE),  # NERSC
        ("Password+Token: ", prompts.PASSWORD_CODE),
        ("PIN+Token: ", prompts.REFUSE),
        ("PIN: ", prompts.REFUSE),
        ("Verification code: ", prompts.CODE),
        ("Your OTP: ", prompts.CODE),
        ("Token:", prompts.CODE),
        ("TOTP: ", prompts.CODE),
        ("Enter PASSCODE:", prompts.CODE),
        ("One-time password (OATH) for `jdoe': ", prompts.CODE),
        (
            "Duo two-factor login for jdoe\n\nEnter a passcode or select one of the following options:\n\n"
            " 1. Duo Push to XXX-XXX-1234\n\nPasscode or option (1-3): ",
            prompts.CODE,
        ),  # fmt: skip
        ("Your password will expire in 3 days.\nVerification code: ", prompts.CODE),  # info line before the question
        ("Service password: ", prompts.PASSWORD),
        ("jdoe@hpc's password:", prompts.PASSWORD),
        ("You are required to change your password immediately\nNew password: ", prompts.REFUSE),
        ("Do you accept the terms? (yes/no)", prompts.REFUSE),
        ("", prompts.REFUSE),
    ],
)
def test_real_prompts(prompt, kind):
    assert prompts.classify(prompt) == kind


class FixedCodes(codes.Codes):
    kind, retryable = "secret", True

    def code(self):
        return "123456"


def answerer(password="pw", auth="totp+password"):
    return prompts.Answerer(lambda: FixedCodes("test"), password, auth, "hpc")


def test_each_secret_goes_only_into_its_prompt():
    ok = answerer()
    assert ok("", "", [("Einmalpasswort: ", False), ("Passwort: ", False)]) == ["123456", "pw"]
    assert ok("", "", []) == [] and ok.answered == [prompts.CODE, prompts.PASSWORD]
    combined = answerer()
    assert combined("", "", [("Password + OTP: ", False)]) == ["pw123456"]  # password immediately followed by code
    assert combined.typed_code and combined.typed_password


@pytest.mark.parametrize(
    "auth, password, rounds, match",
    [
        ("totp", None, [("Your OTP: ", False), ("Password:\x1b[31m ", False)], "asked for the account password"),
        ("totp", None, [("Password + OTP: ", False)], "password followed by the one-time code"),
        ("totp+password", "pw", [("PIN+Token: ", False)], "otppin policy"),
        ("totp+password", "pw", [("PIN: ", False)], "a PIN"),
        ("totp", None, [("Enter your mother's maiden name " + "x" * 500, False)], "neither a one-time code"),
        ("key", None, [("Verification code: ", False)], "clusters.NAME.auth is 'key'"),
        ("totp+password", None, [("Password: ", False)], "HPC_PASSWORD is not set"),
        ("totp+password", "pw", [("New password: ", False)], "password change"),
    ],
)
def test_refusals_happen_before_anything_is_typed(auth, password, rounds, match):
    a = answerer(password, auth)
    with pytest.raises(prompts.PromptRefused, match=match) as info:
        a("", "", rounds)
    assert a.answered == [] and "\x1b" not in str(info.value) and len(str(info.value)) < 600
    assert "pw" not in str(info.value).replace("pwd", "")


def test_a_second_code_prompt_in_one_login_is_refused():
    """A site that asks again after a wrong code would get the same code (or spend an attempt): stop."""
    a = answerer(auth="totp")
    assert a("", "", [("Verification code: ", False)]) == ["123456"]
    with pytest.raises(prompts.PromptRefused, match="again in the same login"):
        a("", "", [("Verification code: ", False)])
    assert a.answered == [prompts.CODE]
