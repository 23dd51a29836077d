"""The nginx config the edge renders is valid for nginx itself (``nginx -t``), and says what it must."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from core.settings import Settings
from deploy.edge import NGINX, Edge, settings_environment
from deploy.stack import Stack


def _edge(tmp_path: Path) -> Edge:
    settings = Settings(
        environment="test",
        stack={"state_dir": tmp_path},
        api={"port": 18100, "max_upload_bytes": 12345678},
        edge={"port": 18180, "max_fails": 3, "fail_timeout_s": 7},
    )
    return Edge(Stack(settings))


def test_render_config_lists_each_instance_with_passive_checks_and_the_api_body_limit(tmp_path):
    config = _edge(tmp_path).render_config((18100, 18101), tmp_path / "web")
    servers = re.findall(r"server 127\.0\.0\.1:(\d+) max_fails=3 fail_timeout=7s;", config)
    assert servers == ["18100", "18101"]
    assert "client_max_body_size 12345678;" in config
    assert "listen 127.0.0.1:18180;" in config
    assert "proxy_set_header Upgrade $http_upgrade;" in config
    assert "proxy_set_header X-Request-ID $req_id;" in config
    retries = re.findall(r"^\s*proxy_next_upstream (.*);$", config, flags=re.M)
    assert retries and all("non_idempotent" not in r for r in retries)  # a POST is never sent twice
    assert "escape=json" in config and "{{" not in config


@pytest.mark.skipif(not NGINX.exists(), reason="Debian's nginx is not installed")
def test_rendered_config_passes_nginx_syntax_check(tmp_path):
    edge = _edge(tmp_path)
    for folder in ("logs", "tmp"):
        (edge.prefix / folder).mkdir(parents=True)
    (edge.prefix / "nginx.conf").write_text(edge.render_config((18100, 18101), tmp_path / "web"))
    checked = subprocess.run(
        [str(NGINX), "-t", "-p", str(edge.prefix), "-c", str(edge.prefix / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_settings_environment_rebuilds_the_same_settings(tmp_path, monkeypatch):
    settings = Settings(environment="test", stack={"state_dir": tmp_path}, api={"trusted_proxies": ("127.0.0.1",)})
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings
