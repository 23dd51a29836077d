"""Stateless token checks and password hashing (no Redis needed for these paths)."""

import time
import uuid

import jwt
import pytest

from api.auth import ISSUER, TokenService, hash_password, verify_password
from api.errors import Unauthorized
from core.settings import APISettings

SECRET = "unit-test-secret-that-is-long-enough-0123"


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(APISettings(access_token_ttl_s=60), redis=None, secret=SECRET)


def test_access_token_round_trips_to_a_principal(tokens):
    user_id = uuid.uuid4()
    principal = tokens.principal(tokens.access_token(user_id=user_id, role="instructor", session_id="s1"))
    assert (principal.user_id, principal.role, principal.session_id) == (user_id, "instructor", "s1")


@pytest.mark.parametrize(
    "claims, key, detail",
    [
        ({"exp": int(time.time()) - 1}, SECRET, "expired"),
        ({}, "another-secret-of-sufficient-length-xyz", "invalid"),
        ({"typ": "refresh"}, SECRET, "access token is required"),
        ({"iss": "someone-else"}, SECRET, "invalid"),
        ({"sub": "not-a-uuid"}, SECRET, "invalid"),
    ],
)
def test_bad_access_tokens_are_refused(tokens, claims, key, detail):
    now = int(time.time())
    base = {"sub": str(uuid.uuid4()), "role": "student", "sid": "s", "typ": "access", "iss": ISSUER, "iat": now}
    token = jwt.encode({**base, "exp": now + 60, **claims}, key, "HS256")
    with pytest.raises(Unauthorized, match=detail):
        tokens.principal(token)


def test_unsigned_token_is_refused(tokens):
    now = int(time.time())
    token = jwt.encode(
        {"sub": str(uuid.uuid4()), "role": "admin", "typ": "access", "iss": ISSUER, "iat": now, "exp": now + 60},
        None,
        algorithm="none",
    )
    with pytest.raises(Unauthorized):
        tokens.principal(token)


def test_passwords_are_argon2_hashed_and_verified():
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "wrong")
    assert not verify_password(None, "not-a-real-password")  # unknown user: never true


def test_short_jwt_secrets_are_refused_in_settings():
    with pytest.raises(ValueError, match="32 bytes"):
        APISettings(jwt_secret="too-short")
