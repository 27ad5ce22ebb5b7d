"""The documentation's pictures: each graph view renders to a PNG (`sparkc.viz.pictures`), and
the one README.md shows is committed, small, and drawn from the current drawing code's views."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sparkc.viz import find_renderer
from sparkc.viz.pictures import README_PICTURE, VIEWS, main, view_dot

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(find_renderer() is None, reason="no Graphviz renderer")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_every_view_renders_to_png(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    for view in VIEWS:
        width, height = _png_size((tmp_path / f"{view.name}.png").read_bytes())
        assert width > 300 and height > width, view.name  # a top-to-bottom drawing
    assert capsys.readouterr().out.count("wrote ") == len(VIEWS)


def test_fused_views_frame_every_group():
    for view in VIEWS:
        if view.after != "fuse":
            continue
        dot = view_dot(view)
        groups = {
            line.split("label=")[1].split(";")[0]
            for line in dot.splitlines()
            if 'style="rounded,dashed"' in line
        }
        assert len(groups) >= 8 and "fused:" not in dot, view.name


def test_readme_shows_the_committed_picture():
    picture = ROOT / "docs" / f"{README_PICTURE}.png"
    assert f"(docs/{README_PICTURE}.png)" in (ROOT / "README.md").read_text()
    data = picture.read_bytes()
    width, _ = _png_size(data)
    assert len(data) < 100_000 and width <= 800
