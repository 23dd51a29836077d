"""The warehouse client's DSN switch (embedded chdb vs a ClickHouse server) without a server, and
the busy error of an embedded path another process holds."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from core.settings import WarehouseSettings
from warehouse.client import WarehouseBusy, WarehouseError, parse_dsn, warehouse_session


def test_parse_dsn_chdb_path_is_embedded_with_the_settings_database(tmp_path):
    target = parse_dsn(WarehouseSettings(dsn=f"chdb://{tmp_path}/wh/", database="analytics"))
    assert target.kind == "chdb"
    assert target.path == (tmp_path / "wh").resolve()
    assert target.database == "analytics"
    assert target.client_args == {"dsn": f"chdb://{(tmp_path / 'wh').resolve()}"}


def test_parse_dsn_http_is_a_server_with_credentials_and_database():
    target = parse_dsn(WarehouseSettings(dsn="http://analyst:s%40cret@ch.example:8123/marts"))
    assert target.kind == "server" and target.path is None
    assert target.database == "marts"
    assert target.client_args == {
        "host": "ch.example", "port": 8123, "interface": "http", "username": "analyst", "password": "s@cret",
    }  # fmt: skip


def test_parse_dsn_https_defaults_port_and_database():
    target = parse_dsn(WarehouseSettings(dsn="https://ch.example", database="lakehouse"))
    assert target.client_args["port"] == 8443 and target.client_args["interface"] == "https"
    assert target.client_args["username"] == "default" and target.database == "lakehouse"


@pytest.mark.parametrize(
    "dsn", ["chdb://", "chdb://memory", "chdb:///", "postgres://x/y", "http:///nohost", "chdb:///tmp/x"]
)
def test_parse_dsn_refuses_what_it_cannot_use(dsn):
    settings = WarehouseSettings(dsn=dsn, database="bad-name" if dsn == "chdb:///tmp/x" else "lakehouse")
    with pytest.raises(WarehouseError):
        parse_dsn(settings)


def test_session_on_a_path_another_process_holds_fails_with_retry_advice(tmp_path):
    path = tmp_path / "warehouse"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); f.write('pid test-holder');"
         " f.flush(); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", f"{path}.lock"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with (
            pytest.raises(WarehouseBusy, match=r"warehouse busy: .* retry in \d+ s"),
            warehouse_session(WarehouseSettings(dsn=f"chdb://{path}"), wait_s=0.3),
        ):
            pass
        assert time.monotonic() - started < 3
    finally:
        holder.kill()
        holder.wait()
