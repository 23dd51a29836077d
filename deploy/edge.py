"""The edge, locally: N API processes on loopback and nginx in front of them.

``Edge(stack).up(instances=N)`` builds the web page, starts ``api-0 .. api-{N-1}`` (uvicorn
on ``api.port + i``, forwarded headers believed only from nginx's address) and nginx (Debian's
binary, not daemonised, its own prefix under ``<state_dir>/nginx``) with the config rendered
from ``deploy/nginx/nginx.conf.template``. Each process is recorded by the stack like any other
service (PID + start time), so ``stack down`` stops them. Instances beyond N are stopped.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, SecretStr

from core.settings import PROJECT_ROOT, Settings
from deploy.service import LOOPBACK, Service
from deploy.stack import Stack
from deploy.web_build import build_web

NGINX = Path("/usr/sbin/nginx")
TEMPLATE = Path(__file__).with_name("nginx") / "nginx.conf.template"
# Headers of the page itself (the API's web_assets router sends the same).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none';"
    " base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class EdgeStatus:
    url: str
    api_ports: tuple[int, ...]
    started: tuple[str, ...]


def settings_environment(settings: Settings) -> dict[str, str]:
    """``LAKEHOUSE_*`` variables that rebuild ``settings`` in a child process (secrets included)."""

    def text(value: object) -> str:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (tuple, list, dict)):
            return json.dumps(value, default=str)
        return str(value)

    env: dict[str, str] = {"LAKEHOUSE_ENVIRONMENT": settings.environment}
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        if not isinstance(section, BaseModel):
            continue
        for name in type(section).model_fields:
            value = getattr(section, name)
            if value is not None:
                env[f"LAKEHOUSE_{section_name.upper()}__{name.upper()}"] = text(value)
    return env


def api_ports(settings: Settings, instances: int) -> tuple[int, ...]:
    return tuple(settings.api.port + index for index in range(instances))


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a loopback URL we built
        if response.status != 200:
            raise ConnectionError(f"{url} answered {response.status}")


class Edge:
    """Starts and stops the API instances and nginx of one stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.prefix = stack.data_dir("nginx")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.edge.port}"

    def api_service(self, index: int, port: int) -> Service:
        env = {
            **settings_environment(self.settings),
            "PYTHONPATH": str(PROJECT_ROOT),
            # Believe X-Forwarded-For only from nginx, which connects from loopback.
            "LAKEHOUSE_API__TRUSTED_PROXIES": json.dumps([LOOPBACK]),
            "LAKEHOUSE_API__PORT": str(port),
        }
        return Service(
            name=f"api-{index}",
            ports=(port,),
            argv=[sys.executable, "-m", "cli", "api", "--host", LOOPBACK, "--port", str(port)],
            env=env,
            health=lambda: _get(f"http://{LOOPBACK}:{port}/healthz"),
        )

    def render_config(self, ports: tuple[int, ...], web_root: Path) -> str:
        """nginx.conf for ``ports`` (the API instances) and the web build at ``web_root``."""
        edge = self.settings.edge
        servers = "\n".join(
            f"        server {LOOPBACK}:{port} max_fails={edge.max_fails} fail_timeout={edge.fail_timeout_s}s;"
            for port in ports
        )
        # As root, nginx's workers would run as nobody, who may not read a private state dir (pytest's
        # tmp dirs are 0700): they run as the state dir's owner instead. Not root: nginx keeps its user.
        owner = pwd.getpwuid(self.prefix.parent.stat().st_uid).pw_name if os.geteuid() == 0 else None
        page_headers = "\n".join(f'            add_header {k} "{v}" always;' for k, v in PAGE_HEADERS.items())
        values = {
            "PREFIX": str(self.prefix),
            "USER": f"user {owner};" if owner else "",
            "SERVERS": servers,
            "PORT": str(edge.port),
            "MAX_BODY": str(self.settings.api.max_upload_bytes),
            "WEB_ROOT": str(web_root),
            "PAGE_HEADERS": page_headers,
        }
        config = TEMPLATE.read_text()
        for name, value in values.items():
            config = config.replace("{{" + name + "}}", value)
        if "{{" in config:
            raise ValueError(f"{TEMPLATE} has a placeholder the renderer does not fill")
        return config

    def nginx_service(self) -> Service:
        return Service(
            name="nginx",
            ports=(self.settings.edge.port,),
            argv=[
                str(NGINX),
                "-p",
                str(self.prefix),
                "-c",
                str(self.prefix / "nginx.conf"),
                "-e",
                "stderr",
                "-g",
                "daemon off;",
            ],
            health=lambda: _get(f"{self.url}/healthz"),
        )

    def up(self, *, instances: int) -> EdgeStatus:
        """Builds the page, starts ``instances`` API processes and nginx (idempotent)."""
        if instances < 1:
            raise ValueError("--api-instances must be at least 1")
        if not NGINX.exists():
            raise FileNotFoundError(f"{NGINX} is missing: install Debian's nginx (`stack up` does)")
        build = build_web(self.settings)
        ports = api_ports(self.settings, instances)
        started = [
            service.name
            for service in (self.api_service(index, port) for index, port in enumerate(ports))
            if self.stack.start(service)
        ]
        for extra in self._instance_names()[instances:]:
            self.stack.stop(extra)
        for folder in ("logs", "tmp"):
            (self.prefix / folder).mkdir(parents=True, exist_ok=True)
        config = self.render_config(ports, build.root)
        path = self.prefix / "nginx.conf"
        changed = not path.exists() or path.read_text() != config
        path.write_text(config)
        pid = self.stack.running_pid("nginx")
        if pid is not None and changed:
            os.kill(pid, signal.SIGHUP)  # nginx reloads its config without dropping connections
        if self.stack.start(self.nginx_service()):
            started.append("nginx")
        return EdgeStatus(url=self.url, api_ports=ports, started=tuple(started))

    def _instance_names(self) -> list[str]:
        pids = self.stack.state_dir / "pids"
        names = [p.stem for p in pids.glob("api-*.pid")] if pids.exists() else []
        return sorted(names, key=lambda name: int(name.split("-")[1]))

    def down(self) -> list[str]:
        """Stops nginx, then the API instances."""
        return [name for name in ("nginx", *self._instance_names()) if self.stack.stop(name)]
