"""`compile_for_target(..., divisible=...)`: arguments named there are compiled as a launch with
16-byte-aligned pointers and multiples of 16 would specialise them, which the resource probes
(bench/probe_basis_barriers.py) rely on to read real register counts. A flat elementwise kernel
vectorises its loads only when its pointers are known aligned; an unknown argument name is a
KeyError. Runs in a subprocess without TRITON_INTERPRET (the file doubles as its script)."""

import re

import pytest
from compile_harness import run_in_subprocess


def _ptx(divisible):
    from sparkc.runtime.launch import compile_for_target
    from sparkc.runtime.loader import load_source

    from sparkc.codegen.render import render

    text = render("prelude.py.jinja", version="t", source_name="t") + render(
        "primitives_pointwise.py.jinja",
        name="pw",
        inputs=["a", "b"],
        body=["t0 = a + b"],
        outputs=[("y", "t0")],
    )
    fn = load_source("pw_divisible", text).pw_kernel
    sig = {"a_ptr": "*fp32", "b_ptr": "*fp32", "y_ptr": "*fp32", "numel": "i32"}
    sig.update({k: "i32" for k in ("size1", "size2", "size3")})
    sig.update({f"{x}_st{i}": "i32" for x in "ab" for i in range(4)})
    consts = {"a_UNIT": True, "b_UNIT": True, "NDIM": 1, "BLOCK": 1024, "INT64": False}
    return compile_for_target(fn, sig, consts, divisible=divisible)["ptx"]


def test_divisible_arguments_vectorise_and_unknown_names_fail():
    plain, aligned = (int(x) for x in run_in_subprocess(__file__).split()[-2:])
    assert plain == 0 < aligned


if __name__ == "__main__":
    vec = re.compile(r"ld\.global(?:\.\w+)*\.v[24]")
    plain = len(vec.findall(_ptx(())))
    aligned = len(vec.findall(_ptx(("a_ptr", "b_ptr", "y_ptr", "numel"))))
    with pytest.raises(KeyError, match="no argument"):
        _ptx(("not_an_argument",))
    print("compiled", plain, aligned)
