"""The resume state: what a suspended flow hands out, signed so that nobody can forge or alter it.

A suspended execution returns `ResumeInfo(state, token)`. The token is
`base64url(canonical JSON of ResumeState) + "." + base64url(HMAC-SHA256(key, that JSON))`: readable by
anyone (it holds no secret), trusted only after the MAC checks out. The key is shared by every worker
(`load_key`). Checks that need the caller's context (tenant, bound actions, the continue request's
`state`) are made by `sandbox.flow.resume_flow`; `ResumeSigner.verify` checks the MAC, the shape and
the expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sandbox.errors import InvalidInput, ResumeRefused

KEY_MIN_BYTES = 32
# A token bigger than this is refused before any decoding: the prompt vars it carries are bounded by
# the result document (256 KiB), so no honest token comes near it.
TOKEN_MAX_CHARS = 1024 * 1024
_FORMAT = 1
# SECURITY: a domain tag in the MAC, so a MAC made with the same key for another purpose can never
# pass as a resume token.
_DOMAIN = b"actionrunner/resume/v1\x00"

SuspendKind = Literal["redirect", "prompt", "challenge"]


class ResumeState(BaseModel):
    """Everything needed to resume a suspended flow, exactly as signed.

    `actions` lists the bound actions as [name, version, sha256 of source]; `index` is the position of
    the action that suspended; `issued_at` and `expires_at` are seconds since the epoch; `id` is random
    and lets a store make each token single-use.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = _FORMAT
    id: str
    tenant: str
    user_id: str
    state: str | None
    actions: list[tuple[str, int | None, str]]
    index: int
    kind: SuspendKind
    prompt_id: str | None = None
    prompt_vars: dict[str, Any] | None = None
    issued_at: float
    expires_at: float


def new_resume_id() -> str:
    """A fresh random id for a ResumeState (128 bits, hex)."""
    return secrets.token_hex(16)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def _canonical(state: ResumeState) -> bytes:
    data = state.model_dump(mode="json")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class ResumeSigner:
    """Signs and verifies resume tokens with one HMAC-SHA256 key (at least 32 bytes)."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < KEY_MIN_BYTES:
            raise InvalidInput(f"the resume key must be at least {KEY_MIN_BYTES} bytes")
        self._key = key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + body, hashlib.sha256).digest()

    def sign(self, state: ResumeState) -> str:
        """The opaque token for `state` (URL-safe ASCII)."""
        body = _canonical(state)
        return f"{_b64encode(body)}.{_b64encode(self._mac(body))}"

    def verify(self, token: str, *, now_s: float) -> ResumeState:
        """The state inside `token`, after checking its MAC and that it has not expired at `now_s`
        (seconds since the epoch).

        Raises ResumeRefused saying why: malformed, forged (signature does not match) or expired.
        """
        if not isinstance(token, str) or len(token) > TOKEN_MAX_CHARS:
            raise ResumeRefused("the resume token is malformed: not a string of a sane length")
        body_text, dot, mac_text = token.partition(".")
        if not dot:
            raise ResumeRefused("the resume token is malformed: no signature part")
        try:
            body = _b64decode(body_text)
            mac = _b64decode(mac_text)
        except (binascii.Error, ValueError):
            raise ResumeRefused("the resume token is malformed: not base64url") from None
        # SECURITY: constant-time comparison, and nothing of the body is parsed before the MAC checks
        # out; without it anyone could resume any flow at any action with any prompt vars.
        if not hmac.compare_digest(mac, self._mac(body)):
            raise ResumeRefused("the resume token is forged: its signature does not match")
        try:
            state = ResumeState.model_validate_json(body)
        except ValidationError:
            raise ResumeRefused("the resume token is malformed: unknown format") from None
        if now_s >= state.expires_at:
            raise ResumeRefused(
                f"the resume token expired {now_s - state.expires_at:.0f} s ago "
                f"(it was valid for {state.expires_at - state.issued_at:.0f} s)"
            )
        return state


def state_home(environ: dict[str, str] | None = None) -> Path:
    """The directory for local state: `$ACTIONRUNNER_HOME`, default ~/.local/state/actionrunner."""
    env = os.environ if environ is None else environ
    home = env.get("ACTIONRUNNER_HOME")
    return Path(home) if home else Path.home() / ".local" / "state" / "actionrunner"


def _key_from_text(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode("utf-8")
    if len(key) < KEY_MIN_BYTES:
        raise InvalidInput(
            f"must be at least {KEY_MIN_BYTES} bytes (hex-encoded or raw), got {len(key)}",
            source="ACTIONRUNNER_SECRET_KEY",
        )
    return key


def load_key(environ: dict[str, str] | None = None) -> bytes:
    """The resume-signing key every worker shares.

    From `ACTIONRUNNER_SECRET_KEY` (hex or raw text, >= 32 bytes) when set; otherwise from
    `state_home()/secret.key`, generated once (32 random bytes, hex, mode 0600). Raises InvalidInput
    for a short key, or a key file that others can read.
    """
    env = os.environ if environ is None else environ
    text = env.get("ACTIONRUNNER_SECRET_KEY")
    if text:
        return _key_from_text(text)
    path = state_home(env) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(KEY_MIN_BYTES) + "\n")
        try:
            os.link(tmp, path)  # atomic, and loses cleanly to a concurrent first run
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    # SECURITY: whoever reads the key can forge resume tokens for every tenant.
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise InvalidInput("readable by other users; run chmod 600 on it", source=str(path))
    return _key_from_text(path.read_text(encoding="utf-8").strip())
