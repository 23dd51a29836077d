"""Attacks on the real API: forged and tampered tokens, refresh-token reuse, SQL-injection and
control-character strings on every string parameter, path-traversal file names, and secrets in
the logs of the run. Each test prints how many attacks it tried."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from core.settings import Settings
from processing.samples import short_pdf
from tests.integration.api.api_testkit import PASSWORD, Account, sign_up
from tests.integration.security.conftest import World

PUBLISHED_KEY = "dev-only-secret-change-me"
SQL_INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE documents; --",
    "1; SELECT pg_sleep(5)--",
    '" OR ""="',
    "admin'--",
    "') UNION SELECT id, email, password_hash FROM users --",
    "%27%20OR%201%3D1",
    "\\'; COPY users TO '/tmp/x'; --",
]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _key(settings: Settings) -> str:
    assert settings.api.jwt_secret is not None, "the test API runs with an explicit signing key"
    return settings.api.jwt_secret.get_secret_value()


def _sign(claims: dict, key: str) -> str:
    return jwt.encode(claims, key, "HS256")


def test_forged_tokens_are_refused(world: World) -> None:
    student = world.accounts["student_member"]
    assert student is not None
    real = jwt.decode(student.access_token, options={"verify_signature": False})
    header, payload, signature = student.access_token.split(".")
    now = int(time.time())
    admin_claims = {**real, "role": "admin"}
    attacks = {
        "alg none": jwt.encode(admin_claims, None, algorithm="none"),  # type: ignore[arg-type]
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(admin_claims)}.{signature}",
        "alg None (case)": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(admin_claims)}.",
        "HS512 with a guessed key": jwt.encode(admin_claims, "x" * 64, "HS512"),
        "wrong key": _sign(admin_claims, "an-attacker-guessed-this-key-0123456789"),
        "published default key": _sign(admin_claims, PUBLISHED_KEY),
        "published default key, own claims": _sign(real, PUBLISHED_KEY),
        "expired": _sign({**real, "iat": now - 4000, "exp": now - 60}, _key(world.settings)),
        "tampered role, original signature": f"{header}.{_b64(admin_claims)}.{signature}",
        "tampered subject, original signature": f"{header}.{_b64({**real, 'sub': str(uuid.uuid4())})}.{signature}",
        "signature stripped": f"{header}.{payload}.",
        "refresh token as access": student.refresh_token,
        "empty": "",
        "garbage": "a.b.c",
    }
    other_course = world.other.id
    for name, token in attacks.items():
        me = world.client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401, (name, me.status_code, me.text)
        # the forged admin token must not reach another course either
        course = world.client.get(f"/v1/courses/{other_course}", headers={"Authorization": f"Bearer {token}"})
        assert course.status_code == 401, (name, course.status_code)
        patch = world.client.patch(
            f"/v1/courses/{other_course}", json={"title": "pwned"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert patch.status_code == 401, (name, patch.status_code)
    print(f"JWT attacks: {len(attacks)} tokens x 3 requests, all 401")


def test_settings_refuse_the_published_key_outside_tests(api_settings: Settings) -> None:
    data = api_settings.model_dump()
    data["api"]["jwt_secret"] = PUBLISHED_KEY
    with pytest.raises(ValueError, match="published key"):
        Settings(**{**data, "environment": "development"})


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(world: World) -> None:
    client = world.client
    account = sign_up(client)
    first = client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    second = client.post("/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
    assert second.status_code == 200
    newest = second.json()
    replay = client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})  # stolen, reused
    assert replay.status_code == 401
    # every token of the family is dead now: the newest refresh token and all access tokens
    assert client.post("/v1/auth/refresh", json={"refresh_token": newest["refresh_token"]}).status_code == 401
    for access in (account.access_token, first.json()["access_token"], newest["access_token"]):
        assert client.get("/v1/users/me", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    # another login of the same user is a new family and works
    again = client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert again.status_code == 200


def test_sql_injection_strings_on_string_parameters_give_4xx_or_plain_data(world: World) -> None:
    """Every string a client controls, with each injection string: never a 5xx; where the value is
    stored it comes back verbatim (data, not SQL)."""
    client = world.client
    owner, student = world.accounts["instructor_owner"], world.accounts["student_member"]
    assert owner is not None and student is not None
    course = world.own.id
    tried = 0
    for text in SQL_INJECTIONS:
        requests: list[tuple[str, str, dict[str, Any], Account | None]] = [
            ("POST", "/v1/auth/login", {"json": {"email": text, "password": text}}, None),
            ("POST", "/v1/auth/login", {"json": {"email": f"{uuid.uuid4().hex}@example.com", "password": text}}, None),
            ("POST", "/v1/auth/signup", {"json": {"email": text, "password": PASSWORD, "display_name": "x"}}, None),
            ("POST", "/v1/auth/refresh", {"json": {"refresh_token": text}}, None),
            ("POST", "/v1/auth/logout", {"json": {"refresh_token": text}}, None),
            ("POST", "/v1/courses/join", {"json": {"join_code": text}}, student),
            ("GET", f"/v1/courses/{text}", {}, student),
            ("GET", f"/v1/courses/{course}/documents/{text}", {}, student),
            ("GET", f"/v1/documents/{text}/notes", {}, student),
            ("GET", f"/v1/jobs/{text}", {}, student),
            ("POST", f"/v1/quizzes/{text}/attempts", {"json": {"answers": [{"item_id": text, "option_id": text}]}},
             student),
            ("POST", f"/v1/quizzes/{world.own.quiz_id}/attempts",
             {"json": {"answers": [{"item_id": text, "option_id": text}]}}, student),
            ("POST", f"/v1/cards/{text}/reviews", {"json": {"rating": "good"}}, student),
            ("POST", f"/v1/cards/{world.own.card_id}/reviews", {"json": {"rating": text}}, student),
            ("GET", f"/v1/courses/{course}/reviews/due", {"params": {"limit": text}}, student),
        ]  # fmt: skip
        for method, path, kwargs, account in requests:
            headers = account.headers if account else {}
            response = client.request(method, path, headers=headers, **kwargs)
            tried += 1
            assert 400 <= response.status_code < 500, (method, path, text, response.status_code, response.text[:200])
        search = client.get(f"/v1/courses/{course}/search", params={"q": text}, headers=student.headers)
        tried += 1
        assert search.status_code == 200 and search.json()["query"] == text, search.text[:200]  # searched as text
        # stored strings come back as sent
        created = client.post("/v1/courses", json={"title": text, "description": text}, headers=owner.headers)
        patched = client.patch(f"/v1/courses/{course}", json={"description": text}, headers=owner.headers)
        tried += 2
        assert created.status_code == 201 and created.json()["title"] == text, created.text
        assert patched.status_code == 200 and patched.json()["description"] == text, patched.text
    print(f"SQL injection: {tried} requests ({len(SQL_INJECTIONS)} strings), no 5xx")


def test_control_characters_in_strings_are_4xx(world: World) -> None:
    """NUL and other control characters in text that reaches PostgreSQL: a 422, never a 500."""
    client = world.client
    owner = world.accounts["instructor_owner"]
    assert owner is not None
    tried = 0
    for bad in ("a\x00b", "\x00", "x\x1by", "line\x0bbreak"):
        cases = [
            client.post("/v1/auth/signup", json={"email": f"n{uuid.uuid4().hex[:6]}@example.com", "password": PASSWORD,
                                                 "display_name": bad}),
            client.post("/v1/courses", json={"title": bad, "description": "d"}, headers=owner.headers),
            client.post("/v1/courses", json={"title": "t", "description": bad}, headers=owner.headers),
            client.patch(f"/v1/courses/{world.own.id}", json={"title": bad}, headers=owner.headers),
            client.post("/v1/auth/login", json={"email": f"x{bad}@example.com", "password": bad}),
        ]  # fmt: skip
        for response in cases:
            tried += 1
            assert 400 <= response.status_code < 500, (repr(bad), response.status_code, response.text[:200])
    print(f"control characters: {tried} requests, all 4xx")


def _orphans(settings: Settings) -> list[str]:
    """Stored objects no ``documents`` row owns (the object store of this package is private)."""
    from tests.integration.api.api_testkit import shard_conn

    root = settings.object_store.local_root
    stored = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    owned: set[str] = set()
    for shard in range(settings.postgres.shards):
        with shard_conn(settings, shard) as conn:
            owned |= {row[0] for row in conn.execute("SELECT object_key FROM documents").fetchall()}
    return sorted(stored - owned)


def _raw_upload(world: World, names: list[str]) -> tuple[int, dict]:
    """A multipart body built by hand: a client library would percent-encode a NUL, an attacker
    sends it raw."""
    owner = world.accounts["instructor_owner"]
    assert owner is not None
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/pdf\r\n\r\n".encode()
        + short_pdf(f"name {uuid.uuid4()}", pages=1)
        + b"\r\n"
        for name in names
    ]
    response = world.client.post(
        f"/v1/courses/{world.own.id}/documents",
        content=b"".join(parts) + f"--{boundary}--\r\n".encode(),
        headers={**owner.headers, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    return response.status_code, response.json()


def test_nul_and_traversal_file_names_store_nothing_outside_or_orphaned(world: World) -> None:
    """Raw NUL, control, bidi and traversal file names: never a 5xx; the display name is a plain
    file name; every stored object stays under raw/uploads/ and is owned by a documents row."""
    names = ["bad\x00name.pdf", "\x00.pdf", "a.pdf\x00.exe.pdf", "../../etc/passwd.pdf", "..\\..\\win.ini.pdf",
             "/etc/shadow.pdf", "%2e%2e%2fescape.pdf", "sub/../../x.pdf", "\u202eevil\u202dfdp.pdf",
             "....//....//y.pdf", "tab\tand\x1bescape.pdf"]  # fmt: skip
    root = world.settings.object_store.local_root.resolve()
    outcomes = []
    for name in names:
        status, body = _raw_upload(world, [name])
        outcomes.append(status)
        assert status == 202 or 400 <= status < 500, (repr(name), status, body)
        if status == 202:
            [job] = body["jobs"]
            shown = job["filename"]
            assert not any(c in shown for c in "/\\\x00\x1b\t\u202e\u202d"), repr(shown)
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root), path
        if path.is_file():
            assert str(path.relative_to(root)).startswith("raw/uploads/"), path
    assert _orphans(world.settings) == []
    print(f"file names: {len(names)} hostile names ({outcomes.count(202)} stored under a clean display name, "
          f"{len(names) - outcomes.count(202)} refused), no object outside raw/uploads/, no orphan object")  # fmt: skip


def test_secrets_never_reach_the_logs(world: World) -> None:
    """The configured secrets (signing key, passwords of the stores, account passwords) do not
    appear in any log record of this test session's API."""
    s = world.settings
    secrets = {
        "api.jwt_secret": _key(s),
        "postgres.password": s.postgres.password.get_secret_value(),
        "object_store.secret_key": s.object_store.secret_key.get_secret_value(),
        "account password": PASSWORD,
    }
    # make sure the log has something to say: a failed login, a login, a refresh, an error
    client = world.client
    account = sign_up(client)
    client.post("/v1/auth/login", json={"email": account.email, "password": "wrong " + PASSWORD})
    client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    text = "\n".join(world.log)
    assert len(world.log) > 50, "the capture saw no API log records"
    leaked = [name for name, value in secrets.items() if value and len(value) >= 8 and value in text]
    leaked += [name for name in ("refresh token",) if account.refresh_token in text]
    print(f"secrets: {len(secrets) + 1} checked against {len(world.log)} log records, leaked: {leaked}")
    assert not leaked
