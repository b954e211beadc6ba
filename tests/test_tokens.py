"""HS256 session tokens: round trip, and each check of validate_token failing on its own."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from sandbox.tokens import TokenInvalid, encode_token, validate_token

NOW_MS = 1_767_225_600_000
NOW_S = NOW_MS // 1000
SECRET = "shared-secret"
LONG_SECRET = "k" * 64  # long enough that PyJWT itself does not warn in these tests
CLAIMS = {"sub": "auth0|1", "state": "st-1", "iat": NOW_S, "exp": NOW_S + 60, "answer": 42}


def check(token, secret: str = SECRET, **overrides) -> dict:
    kwargs = {"now_ms": NOW_MS, "state": "st-1", "subject": "auth0|1"} | overrides
    return validate_token(token, secret, **kwargs)


def failed_check(token, secret: str = SECRET, **overrides) -> TokenInvalid:
    with pytest.raises(TokenInvalid) as info:
        check(token, secret, **overrides)
    return info.value


def test_a_token_round_trips_to_its_claims() -> None:
    assert check(encode_token(SECRET, CLAIMS)) == CLAIMS


def test_a_token_is_a_standard_hs256_jwt() -> None:
    token = encode_token(LONG_SECRET, CLAIMS)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    options = {"verify_exp": False, "verify_iat": False}
    assert jwt.decode(token, LONG_SECRET, algorithms=["HS256"], options=options) == CLAIMS


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(token) -> None:
    assert failed_check(token).check == "missing"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", 12])
def test_malformed_token(token) -> None:
    assert failed_check(token).check == "malformed"


def test_wrong_secret_is_a_bad_signature() -> None:
    error = failed_check(encode_token("other-secret", CLAIMS))
    assert error.check == "signature" and "bad signature" in str(error)


def test_tampered_payload_is_a_bad_signature() -> None:
    header, _, signature = encode_token(SECRET, CLAIMS).split(".")
    other_claims = json.dumps(CLAIMS | {"sub": "auth0|2"}).encode()
    forged = base64.urlsafe_b64encode(other_claims).rstrip(b"=").decode()
    assert failed_check(f"{header}.{forged}.{signature}", subject="auth0|2").check == "signature"


def test_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode(CLAIMS, None, algorithm="none")
    assert failed_check(unsigned).check == "signature"


def test_other_hmac_algorithm_is_refused() -> None:
    token = jwt.encode(CLAIMS, LONG_SECRET, algorithm="HS512")
    assert failed_check(token, LONG_SECRET).check == "signature"


def test_expiry_is_checked_against_the_given_clock() -> None:
    token = encode_token(SECRET, CLAIMS)
    assert failed_check(token, now_ms=(NOW_S + 60) * 1000).check == "expired"
    assert check(token, now_ms=(NOW_S + 59) * 1000)["answer"] == 42


@pytest.mark.parametrize("exp", [None, "soon"])
def test_missing_or_non_numeric_exp_is_malformed(exp) -> None:
    claims = {k: v for k, v in CLAIMS.items() if k != "exp"} | ({} if exp is None else {"exp": exp})
    assert failed_check(encode_token(SECRET, claims)).check == "malformed"


def test_state_must_match_the_continue_request() -> None:
    token = encode_token(SECRET, CLAIMS)
    assert failed_check(token, state="st-other").check == "state"
    assert failed_check(token, state=None).check == "state"


def test_subject_must_be_the_user() -> None:
    assert failed_check(encode_token(SECRET, CLAIMS), subject="auth0|2").check == "subject"


def test_short_secrets_work_without_warnings(recwarn) -> None:
    assert check(encode_token("k", CLAIMS), "k") == CLAIMS
    assert not recwarn.list
