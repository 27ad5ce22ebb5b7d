"""Jinja rendering of the kernel and module templates in `codegen_templates/`.

`render(template_name, **context)` returns the rendered text. The environment is strict
(`StrictUndefined`: a missing context variable is an error, never an empty string), keeps a
trailing newline, and trims block lines so templates can be indented for reading.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sparkc.codegen_templates", "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
