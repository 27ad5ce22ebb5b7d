"""Graph drawings: deterministic DOT/Mermaid, block clusters, folded params, SVG rendering."""

from __future__ import annotations

import re
import stat
import sys
import warnings
from pathlib import Path

import pydot
import pytest
from ir_samples import tiny_gpt, zoo

from sparkc.ir.graph import SPECIAL_OPS
from sparkc.pipeline import UsageError
from sparkc.viz import (
    GraphvizError,
    GraphvizNotFound,
    find_renderer,
    to_dot,
    to_mermaid,
    to_svg,
)
from sparkc.viz.view import build_view


def _parse(text: str) -> pydot.Dot:
    with warnings.catch_warnings():  # pydot's parser uses deprecated pyparsing names
        warnings.simplefilter("ignore", DeprecationWarning)
        (parsed,) = pydot.graph_from_dot_data(text)
    return parsed


def _drawn(g) -> int:
    return sum(
        1
        for n in g.topo_order()
        if n.op not in ("param", "const") and not (n.op == "aux_sum" and not n.inputs)
    )


def test_dot_is_deterministic_and_parses() -> None:
    g = zoo()
    text = to_dot(g)
    assert text == to_dot(g) == to_dot(g.copy())
    parsed = _parse(text)
    assert parsed.get_name() == "sparkc"
    ids = re.findall(r"^\s*(n\d+) \[label=", text, flags=re.MULTILINE)
    assert ids == [f"n{i}" for i in range(_drawn(g))]  # stable ids in print order


def test_params_and_consts_are_folded_into_labels() -> None:
    text = to_dot(tiny_gpt(2))
    assert "param" not in re.sub(r"\d+ params?", "", text)  # no parameter boxes
    assert "h_attention, 4 params (4.1K)" in text
    zoo_text = to_dot(zoo())
    assert "b = 0.5" in zoo_text and "<B>const</B>" not in zoo_text


def test_kinds_have_distinct_shapes() -> None:
    text = to_dot(zoo())
    line = {
        m.group(1): m.group(0) for m in re.finditer(r"(n\d+) \[label=<.*?<B>([^<]*)</B>.*", text)
    }
    by_title = {re.search(r"<B>([^<]*)</B>", v).group(1): v for v in line.values()}
    assert "shape=invhouse" in by_title["tokens"]
    assert "shape=house" in by_title["y"] and "#dcfce7" in by_title["y"]
    assert "shape=house" in by_title["loss ce"] and "#ffedd5" in by_title["loss ce"]
    assert "shape=ellipse" in by_title["aux_loss"]
    assert "#ede9fe" in by_title["attention"]  # sequence mixers share a colour
    assert re.search(r"n\d+ -> n\d+ \[label=\" loss\", style=dashed", text)
    assert "weight tied to tok" in text


def test_block_clusters_nest_by_instance_path() -> None:
    view = build_view(tiny_gpt(2))
    (outer,) = view.root.children
    assert outer.label == "h (repeat x2)" and not outer.nodes
    assert [c.label for c in outer.children] == ["h.0", "h.1"]
    titles = {v.vid: v.title for v in view.nodes}
    assert [titles[v] for v in outer.children[0].nodes] == [
        "rmsnorm",
        "attention",
        "add",
        "rmsnorm",
        "mlp",
        "add",
    ]
    top = [titles[v] for v in view.root.nodes]
    assert top[:4] == ["tokens", "targets", "embed", "pos_embed"]
    text = to_dot(tiny_gpt(2))
    assert text.count("subgraph cluster_") == 3


def test_clusters_sort_naturally() -> None:
    view = build_view(tiny_gpt(11))
    (outer,) = view.root.children
    assert [c.label for c in outer.children][-3:] == ["h.8", "h.9", "h.10"]


def test_every_fused_group_is_a_frame_of_its_own_colour() -> None:
    g = tiny_gpt(2)
    layer0 = [n for n in g.topo_order() if n.scope.startswith("h.0.") and n.op != "param"]
    norm_attn = {layer0[0].id: "g_attn", layer0[1].id: "g_attn"}
    across = {g.nodes_of("add")[1].id: "g_cross", g.nodes_of("rmsnorm")[2].id: "g_cross"}
    single = {g.nodes_of("mlp")[0].id: "g_one"}
    text = to_dot(g, groups={**norm_attn, **across, **single})
    for name in ("g_attn", "g_cross", "g_one"):
        # A frame for every group: one spanning two layers, and one of a single op, too.
        assert f'label="{name}"; style="rounded,dashed"' in text, name
    assert "fused:" not in text and text.count("penwidth=2") == 5
    # The group spanning h.0 and h.1 is drawn in their common block `h`, between the layers.
    view = build_view(g, groups={**norm_attn, **across, **single})
    crossing = [v for v in view.nodes if v.group == "g_cross"]
    assert {v.cluster for v in crossing} == {"h"}
    _parse(text)


def test_group_colours_never_repeat() -> None:
    from sparkc.viz.dot import group_colors

    colours = group_colors(40)
    assert len(set(colours)) == 40 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    g = tiny_gpt(4)
    ops = [
        n for n in g.topo_order() if n.op not in ("param", "const", "input", "output", "aux_sum")
    ]
    text = to_dot(g, groups={n.id: f"k{i}" for i, n in enumerate(ops)})
    frames = re.findall(r'label="(k\d+)"; style="rounded,dashed"; color="(#[0-9a-f]{6})"', text)
    assert len(frames) == len(ops) > len(set(colours[:8]))
    assert len({c for _, c in frames}) == len(frames)  # distinct colours for 8+ groups


def test_title_is_a_node_and_wraps() -> None:
    text = to_dot(
        tiny_gpt(2), title="M(vocab=50, d=128, heads=4, layers=2, max_len=64, beta=0.3, hops=5)"
    )
    # A node (the layout makes room for it), not a graph label (clipped when wider than the
    # drawing); the hyperparameters wrap.
    assert "labelloc" not in text and re.search(r"^  title \[shape=plaintext", text, re.MULTILINE)
    assert ">M</B>" in text and "max_len=64, beta=0.3,</FONT>" in text
    assert "hops=5</FONT>" in text


def test_mermaid_structure() -> None:
    g = tiny_gpt(2)
    text = to_mermaid(g)
    assert text == to_mermaid(g.copy())
    lines = text.splitlines()
    assert lines[:4] == ["---", "title: TinyGPT(vocab=64, d=32, layers=2)", "---", "flowchart TD"]
    assert (
        sum(1 for x in lines if x.strip().startswith("subgraph "))
        == sum(1 for x in lines if x.strip() == "end")
        == 3
    )
    declared = set(re.findall(r"^\s*(n\d+)[\[\(\{]", text, flags=re.MULTILINE))
    used = set(re.findall(r"^\s*(n\d+) -", text, flags=re.MULTILINE)) | set(
        re.findall(r"(n\d+)$", text, flags=re.MULTILINE)
    )
    assert used <= declared and len(declared) == _drawn(g)
    assert 'subgraph c1["h.0"]' in text and "<b>attention</b>" in text


def test_mermaid_escapes_labels() -> None:
    g = zoo()
    g.update(g.inputs()[0].id, attrs=(("name", 'to"k<ens>'), ("source_dtype", "i64")))
    text = to_mermaid(g)
    assert "to#quot;k#lt;ens#gt;" in text


def _fake_renderer(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-dot"
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_svg_through_a_renderer_process(tmp_path: Path) -> None:
    prog = _fake_renderer(
        tmp_path,
        "dot = sys.stdin.read()\n"
        "assert sys.argv[1:] == ['-Tsvg'], sys.argv\n"
        "sys.stdout.write('<svg>' + str(dot.count('->')) + '</svg>')",
    )
    g = tiny_gpt(1)
    svg = to_svg(g, program=prog)
    assert svg == f"<svg>{to_dot(g).count('->')}</svg>".encode()


def test_renderer_failure_and_timeout(tmp_path: Path) -> None:
    bad = _fake_renderer(tmp_path, "sys.stderr.write('syntax error in line 3'); sys.exit(1)")
    with pytest.raises(GraphvizError, match="syntax error in line 3"):
        to_svg(tiny_gpt(1), program=bad)
    slow = _fake_renderer(tmp_path, "import time; time.sleep(30)")
    with pytest.raises(GraphvizError, match="did not finish"):
        to_svg(tiny_gpt(1), program=slow, timeout=0.5)


def test_missing_graphviz_is_a_clear_usage_error() -> None:
    with pytest.raises(GraphvizNotFound) as info:
        to_svg(tiny_gpt(1), program="sparkc-no-such-renderer")
    assert isinstance(info.value, UsageError)
    assert str(info.value) == (
        "Graphviz 'dot' not found; install graphviz (apt-get install graphviz) or use --format dot"
    )


def test_real_renderer_draws_every_node() -> None:
    exe = find_renderer()
    g = zoo()
    if exe is None:  # this machine has neither dot nor graphviz-pure: the message path
        with pytest.raises(GraphvizNotFound):
            to_svg(g)
        return
    svg = to_svg(g, groups={g.nodes_of("mul")[0].id: "tail", g.nodes_of("softmax")[0].id: "tail"})
    text = svg.decode()
    assert text.lstrip().startswith("<?xml") and "</svg>" in text
    titles = set(re.findall(r"<title>(n\d+)</title>", text))
    assert titles == {f"n{i}" for i in range(_drawn(g))}
    assert ">tail<" in text and "spd_router" in text
    # Labels are measured with DejaVu Sans and name narrower fonts as fallbacks.
    assert 'font-family="DejaVu Sans,Arial,Helvetica,sans-serif"' in text


def test_view_has_no_special_ops_but_io() -> None:
    view = build_view(zoo())
    kinds = {v.kind for v in view.nodes}
    assert kinds == {"input", "output", "loss", "aux", "op"}
    assert all(v.title not in SPECIAL_OPS for v in view.nodes if v.kind == "op")


def test_block_scoped_nodes_have_no_instance_note() -> None:
    g = tiny_gpt(1)
    last_add = g.nodes_of("add")[-1]
    g.update(last_add.id, scope="h.0")  # how lowering scopes a block's `return a + b`
    view = build_view(g)
    (v,) = [v for v in view.nodes if v.node_id == last_add.id]
    assert v.cluster == "h.0" and v.note == ""
