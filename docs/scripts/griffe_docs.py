"""A griffe extension for the API pages: the sources' documentation conventions, as griffe reads them.

- ``#:`` comments right above a module or class attribute are its docstring
  (the Sphinx convention the sources use for constants, e.g.
  ``MAX_MODEL_EVALUATIONS``);
- Sphinx roles in docstrings (``:class:`~saliencykit.core.XRAI```,
  ``:func:`compute_sic```, ``:data:``, ``:meth:``, ``:mod:``, ``:attr:``)
  become code spans of the name (its last part with ``~``), since mkdocstrings
  renders Markdown;
- an ``Args:`` entry that describes several parameters at once
  (``img, saliency_map, random_mask: as for compute_pic_metric``) becomes one
  entry per parameter with the same text, as the Google style that griffe
  parses wants.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any

import griffe

SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters):\s*$")
SHARED_ENTRY = re.compile(r"^(\s+)(\**\w+(?:,\s*\**\w+)+):(.*)$")
ROLE = re.compile(r":(?:meth|func|class|data|mod|attr|exc|obj):`(~?)([^`]+)`")


@functools.cache
def _lines(path: str) -> tuple[str, ...]:
    return tuple(Path(path).read_text(encoding="utf-8").splitlines())


def code_spans(text: str) -> str:
    def span(match: re.Match[str]) -> str:
        tilde, target = match.groups()
        titled = re.fullmatch(r"(.+?)\s*<(.+)>", target)  # :meth:`title <target>`
        if titled:
            return f"`{titled.group(1)}`"
        return f"`{target.split('.')[-1] if tilde else target}`"

    return ROLE.sub(span, text).replace("``", "`")


def _split_shared_entries(text: str) -> str:
    """One ``Args:`` entry per parameter where an entry names several (see the module docstring)."""
    lines, out, index, in_args = text.split("\n"), [], 0, None
    while index < len(lines):
        line = lines[index]
        section = SECTION.match(line)
        if section:
            in_args = len(section.group(1))
        elif in_args is not None and line.strip() and len(line) - len(line.lstrip()) <= in_args:
            in_args = None
        shared = SHARED_ENTRY.match(line) if in_args is not None else None
        if shared:
            indent, names, first = shared.groups()
            continuation = []
            while index + 1 < len(lines) and (
                not lines[index + 1].strip()
                or len(lines[index + 1]) - len(lines[index + 1].lstrip()) > len(indent)
            ):
                if not lines[index + 1].strip():
                    break
                continuation.append(lines[index + 1])
                index += 1
            for name in (part.strip() for part in names.split(",")):
                out.extend([f"{indent}{name}:{first}", *continuation])
        else:
            out.append(line)
        index += 1
    return "\n".join(out)


class SourceConventions(griffe.Extension):
    """``#:`` comments as attribute docstrings; Sphinx roles as code spans."""

    def on_attribute_instance(
        self, *, node: ast.AST | Any, attr: griffe.Attribute, agent: Any, **kwargs: Any
    ) -> None:
        if attr.docstring is not None or attr.lineno is None or not isinstance(attr.filepath, Path):
            return
        lines = _lines(str(attr.filepath))
        comment: list[str] = []
        index = attr.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#:"):
            comment.insert(0, lines[index].strip()[2:].strip())
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(code_spans(" ".join(comment)), lineno=index + 2, parent=attr)

    def on_instance(self, *, node: ast.AST | Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _split_shared_entries(code_spans(obj.docstring.value))
