"""HS256 session tokens: what `api.redirect.encode_token` signs and `validate_token` checks.

Pure functions over PyJWT. Time is always passed in (`now_ms`), never read from the clock, so a run
is deterministic. Every failure of `validate_token` is one `TokenInvalid` whose `check` names the
check that failed; `sandbox.api_redirect` turns it into the tenant-visible ApiError.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import jwt

ALGORITHM = "HS256"

# PyJWT checks exp/iat/nbf against the host clock; we check exp ourselves against `now_ms`.
_DECODE_OPTIONS: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


class TokenInvalid(Exception):
    """A session token failed one check.

    `check` is one of "missing", "malformed", "signature", "expired", "state", "subject"; the
    message says what was wrong in words a tenant can act on.
    """

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        super().__init__(message)


def encode_token(secret: str, claims: Mapping[str, Any]) -> str:
    """Sign `claims` (JSON data) as an HS256 JWT with `secret` (any length, as tenants choose).

    Raises TypeError when a claim is not JSON-serialisable.
    """
    with warnings.catch_warnings():
        # Short HMAC keys are the tenant's choice (the hosted product accepts them).
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(dict(claims), secret, algorithm=ALGORITHM)


def validate_token(
    token: Any, secret: str, *, now_ms: int, state: str | None, subject: str | None
) -> dict[str, Any]:
    """The claims of `token` after every check passes, in this order: present, well-formed, HS256
    signature by `secret`, `exp` (seconds) after `now_ms` (milliseconds), `state` claim equal to
    `state`, `sub` claim equal to `subject`.

    Raises TokenInvalid naming the first check that failed.
    """
    if token is None or token == "":
        raise TokenInvalid("missing", "missing token (none was sent)")
    if not isinstance(token, str):
        raise TokenInvalid("malformed", f"the token must be a string, got {type(token).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=_DECODE_OPTIONS)
    except jwt.InvalidSignatureError:
        raise TokenInvalid("signature", "bad signature (not signed with this secret)") from None
    except jwt.InvalidAlgorithmError:
        raise TokenInvalid(
            "signature", f"bad signature (the token is not signed with {ALGORITHM})"
        ) from None
    except jwt.InvalidTokenError as exc:
        raise TokenInvalid("malformed", f"malformed token ({exc})") from None
    if not isinstance(claims, dict):
        raise TokenInvalid("malformed", "malformed token (the payload is not a JSON object)")
    _check_expiry(claims.get("exp"), now_ms)
    if state is None or claims.get("state") != state:
        raise TokenInvalid("state", "state mismatch (the token's state is not this flow's state)")
    if subject is None or claims.get("sub") != subject:
        raise TokenInvalid("subject", "subject mismatch (the token's sub claim is not this user)")
    return claims


def _check_expiry(exp: Any, now_ms: int) -> None:
    """Raise TokenInvalid unless `exp` is a finite number of seconds later than `now_ms`."""
    if exp is None:
        raise TokenInvalid("malformed", "malformed token (no exp claim)")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        raise TokenInvalid("malformed", "malformed token (its exp is not a number of seconds)")
    if exp * 1000 <= now_ms:
        raise TokenInvalid("expired", "expired (its exp claim is in the past)")
