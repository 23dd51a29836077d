"""Login, refresh rotation, revocation; expired, forged and wrong-type tokens."""

import time

import jwt
import pytest

from tests.integration.api.api_testkit import PASSWORD, sign_up

pytestmark = pytest.mark.integration


def _refresh(client, token: str):
    return client.post("/v1/auth/refresh", json={"refresh_token": token})


def test_login_refuses_a_wrong_password_and_an_unknown_email_alike(client):
    account = sign_up(client)
    wrong = client.post("/v1/auth/login", json={"email": account.email, "password": "not the password"})
    unknown = client.post("/v1/auth/login", json={"email": "nobody-here@example.com", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_refresh_rotates_and_a_revoked_refresh_token_is_refused(client, api_settings):
    account = sign_up(client)
    me = client.get("/v1/users/me", headers=account.headers)
    assert me.status_code == 200 and me.json()["email"] == account.email

    rotated = _refresh(client, account.refresh_token)
    assert rotated.status_code == 200
    new_refresh = rotated.json()["refresh_token"]
    assert new_refresh != account.refresh_token
    assert (
        client.get("/v1/users/me", headers={"Authorization": f"Bearer {rotated.json()['access_token']}"}).status_code
        == 200
    )

    access = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
    logout = client.post("/v1/auth/logout", json={"refresh_token": new_refresh})
    assert logout.status_code == 204
    # the access tokens of the ended session stop working at once, not after their 15 minutes
    after = client.get("/v1/users/me", headers=access)
    assert after.status_code == 401 and "session" in after.json()["detail"]
    assert client.get("/v1/users/me", headers=account.headers).status_code == 401
    refused = _refresh(client, new_refresh)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The refresh token has been revoked."
    assert refused.headers["content-type"] == "application/problem+json"


def test_reusing_an_old_refresh_token_revokes_the_session(client, api_settings):
    from core.redis import redis_client

    account = sign_up(client)
    current = _refresh(client, account.refresh_token).json()["refresh_token"]
    assert _refresh(client, account.refresh_token).status_code == 401  # the old one came back: theft
    assert _refresh(client, current).status_code == 401  # ... so the whole session is gone
    assert client.get("/v1/users/me", headers=account.headers).status_code == 401  # its access tokens too
    sid = jwt.decode(current, options={"verify_signature": False})["sid"]
    redis = redis_client(api_settings.redis)
    try:
        assert not redis.exists(f"{api_settings.redis.key_prefix}session:{sid}")
    finally:
        redis.close()


def _token(settings, *, secret=None, **claims) -> str:
    now = int(time.time())
    base = {
        "sub": "00000000-0000-7000-8000-000000000000",
        "role": "admin",
        "sid": "x",
        "typ": "access",
        "iss": "lakehouse-api",
        "iat": now,
        "exp": now + 600,
    }
    base.update(claims)
    return jwt.encode(base, secret or settings.api.jwt_secret.get_secret_value(), "HS256")


def test_expired_forged_and_wrong_type_tokens_are_401(client, api_settings):
    account = sign_up(client)
    real = jwt.decode(account.access_token, options={"verify_signature": False})
    cases = {
        "expired": _token(api_settings, sub=real["sub"], iat=int(time.time()) - 4000, exp=int(time.time()) - 60),
        "forged": _token(api_settings, secret="an-attacker-guessed-this-key-0123456789", sub=real["sub"]),
        "refresh as access": account.refresh_token,
        "alg none": jwt.encode({**real, "role": "admin"}, None, algorithm="none"),
        "tampered": account.access_token[:-4] + ("AAAA" if not account.access_token.endswith("AAAA") else "BBBB"),
        "garbage": "not-a-jwt",
    }
    for name, token in cases.items():
        response = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.json()["status"] == 401
    wrong_type = client.get("/v1/users/me", headers={"Authorization": f"Bearer {cases['refresh as access']}"})
    assert wrong_type.json()["detail"] == "An access token is required."
    expired = client.get("/v1/users/me", headers={"Authorization": f"Bearer {cases['expired']}"})
    assert "expired" in expired.json()["detail"]
    missing = client.get("/v1/users/me")
    assert missing.status_code == 401 and "Bearer" in missing.json()["detail"]
    assert _refresh(client, cases["forged"]).status_code == 401


def test_admin_role_is_not_self_service(client):
    response = client.post(
        "/v1/auth/signup",
        json={"email": "wants-admin@example.com", "password": PASSWORD, "display_name": "x", "role": "admin"},
    )
    assert response.status_code == 422


def test_a_token_signed_with_the_published_development_key_is_refused(client):
    account = sign_up(client)
    real = jwt.decode(account.access_token, options={"verify_signature": False})
    forged = jwt.encode({**real, "role": "admin"}, "dev-only-secret-change-me", "HS256")
    assert client.get("/v1/users/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_other_sessions_of_the_user_survive_a_logout(client):
    account = sign_up(client)
    second = client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD}).json()
    client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    other = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.get("/v1/users/me", headers=other).status_code == 200
