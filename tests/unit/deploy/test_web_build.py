"""The web build: hashed names that follow the content, gzip twins, an index that references them."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from core.settings import Settings
from deploy.web_build import SOURCE, build_web


def test_build_writes_hashed_assets_with_gzip_twins_and_an_index_that_references_them(tmp_path):
    build = build_web(Settings(environment="test", stack={"state_dir": tmp_path}))
    html = build.index.read_text()
    for asset, hashed in build.assets.items():
        assert hashed != asset and f'"/assets/{hashed}"' in html
        path = build.root / "assets" / hashed
        assert gzip.decompress(path.with_name(hashed + ".gz").read_bytes()) == (SOURCE / asset).read_bytes()
    assert '"app.js"' not in html and '"style.css"' not in html


def test_changed_content_gets_a_new_name_and_the_same_content_the_same_name(tmp_path: Path):
    settings = Settings(environment="test", stack={"state_dir": tmp_path / "state"})
    source = tmp_path / "web"
    shutil.copytree(SOURCE, source)
    first = build_web(settings, source=source)
    assert build_web(settings, source=source).assets == first.assets
    (source / "app.js").write_text((source / "app.js").read_text() + "\n// changed\n")
    second = build_web(settings, source=source)
    assert second.assets["app.js"] != first.assets["app.js"]
    assert second.assets["style.css"] == first.assets["style.css"]
    assert (second.root / "assets" / first.assets["app.js"]).exists()  # an old page still finds its assets
