"""The resume token: signed, tamper-evident, expiring; and the key every worker shares."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from sandbox.errors import InvalidInput, ResumeRefused
from sandbox.resume import ResumeSigner, ResumeState, load_key, new_resume_id

KEY = b"k" * 32
NOW = 1_800_000_000.0


def a_state(**changes: object) -> ResumeState:
    data: dict[str, object] = dict(
        id=new_resume_id(), tenant="acme", user_id="auth0|1", state="st-1",
        actions=[("first", 3, "a" * 64), ("second", None, "b" * 64)], index=1, kind="prompt",
        prompt_id="ap_1", prompt_vars={"n": 1}, issued_at=NOW, expires_at=NOW + 3600,
    )
    data.update(changes)
    return ResumeState.model_validate(data)


def test_a_signed_state_verifies_to_the_same_state() -> None:
    signer = ResumeSigner(KEY)
    state = a_state()
    assert signer.verify(signer.sign(state), now_s=NOW + 10) == state


def test_each_state_gets_its_own_random_id() -> None:
    assert a_state().id != a_state().id


def test_a_token_signed_with_another_key_is_refused_as_forged() -> None:
    token = ResumeSigner(b"x" * 32).sign(a_state())
    with pytest.raises(ResumeRefused, match="forged"):
        ResumeSigner(KEY).verify(token, now_s=NOW)


def test_an_altered_body_is_refused_as_forged() -> None:
    signer = ResumeSigner(KEY)
    body, mac = signer.sign(a_state()).split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["index"] = 0  # try to rerun an action that already ran
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(ResumeRefused, match="forged"):
        signer.verify(f"{forged}.{mac}", now_s=NOW)


def test_an_expired_token_is_refused() -> None:
    signer = ResumeSigner(KEY)
    token = signer.sign(a_state())
    with pytest.raises(ResumeRefused, match="expired"):
        signer.verify(token, now_s=NOW + 3600)


@pytest.mark.parametrize("token", ["", "no-dot", "a.b.c", "%%%.%%%", "x" * (2 * 1024 * 1024)])
def test_garbage_is_refused_as_malformed_or_forged(token: str) -> None:
    with pytest.raises(ResumeRefused, match="malformed|forged"):
        ResumeSigner(KEY).verify(token, now_s=NOW)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(InvalidInput, match="32 bytes"):
        ResumeSigner(b"short")


def test_the_key_comes_from_the_environment_as_hex_or_raw_text() -> None:
    assert load_key({"ACTIONRUNNER_SECRET_KEY": "ab" * 32}) == b"\xab" * 32
    assert load_key({"ACTIONRUNNER_SECRET_KEY": "r" * 40}) == b"r" * 40
    with pytest.raises(InvalidInput, match="ACTIONRUNNER_SECRET_KEY"):
        load_key({"ACTIONRUNNER_SECRET_KEY": "too-short"})


def test_without_the_variable_a_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    env = {"ACTIONRUNNER_HOME": str(tmp_path / "home")}
    first = load_key(env)
    assert load_key(env) == first and len(first) >= 32
    key_file = tmp_path / "home" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"]  # no temp file left


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    env = {"ACTIONRUNNER_HOME": str(tmp_path)}
    load_key(env)
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(InvalidInput, match="chmod 600"):
        load_key(env)
