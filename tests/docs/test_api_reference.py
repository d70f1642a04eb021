"""Every public name of the library has an entry with a docstring in the API reference.

The public names are each module's ``__all__``, read statically by griffe (as mkdocstrings reads
them; nothing imports TensorFlow here) and, for the modules that import quickly, compared with
the ``__all__`` Python sees. A docstring is a docstring griffe finds, or the ``#:`` comment above a
constant (docs/scripts/griffe_docs.py).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from .conftest import DOCS, ROOT, BuiltSite, require_docs_packages

#: Module -> its API page.
MODULES = {
    "saliencykit.core": "api/core.html",
    "saliencykit.metrics": "api/metrics.html",
    "saliencykit.tf1": "api/tf1.html",
    "saliencykit.torch": "api/torch.html",
    "saliencykit.keras": "api/keras.html",
    "saliencykit.jax": "api/jax.html",
    "saliencykit.runs": "api/runs.html",
    "saliencykit.allocator": "api/runs.html",
}
#: Modules whose import needs no deep-learning framework.
LIGHT_MODULES = ("saliencykit.core", "saliencykit.metrics", "saliencykit.runs", "saliencykit.allocator")


def package() -> Any:
    require_docs_packages()
    import griffe

    extensions = griffe.load_extensions(str(DOCS / "scripts" / "griffe_docs.py"))
    return griffe.load(
        "saliencykit", search_paths=[str(ROOT / "src")], extensions=extensions, resolve_aliases=True
    )


def public_names(module: Any) -> list[str]:
    return sorted(name if isinstance(name, str) else name.name for name in module.exports or ())


@pytest.mark.parametrize("module_name", LIGHT_MODULES)
def test_griffe_sees_the_same_public_names_as_python(module_name: str) -> None:
    module = package()[module_name.removeprefix("saliencykit.")]
    assert public_names(module) == sorted(importlib.import_module(module_name).__all__)


def test_every_public_name_has_an_api_entry_with_a_docstring(built_site: BuiltSite) -> None:
    loaded = package()
    problems = []
    for module_name, page in MODULES.items():
        module = loaded[module_name.removeprefix("saliencykit.")]
        names = public_names(module)
        assert names, f"{module_name} has no __all__"
        text = (built_site.path / page).read_text(encoding="utf-8")
        for name in names:
            member = module[name]
            target = member.final_target if member.is_alias else member
            if not (target.docstring and target.docstring.value.strip()):
                problems.append(f"{module_name}.{name}: no docstring (nor #: comment above it)")
            if f'id="{module_name}.{name}"' not in text:
                problems.append(f"{module_name}.{name}: no entry on {page}")
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_missing_docstring(tmp_path: Any) -> None:
    """The docstring check can fail: a module whose public constant has no comment and no docstring."""
    require_docs_packages()
    import griffe

    (tmp_path / "demo_pkg").mkdir()
    (tmp_path / "demo_pkg" / "__init__.py").write_text(
        '__all__ = ["DOCUMENTED", "UNDOCUMENTED"]\n'
        "#: A constant with a comment.\nDOCUMENTED = 1\nUNDOCUMENTED = 2\n"
    )
    extensions = griffe.load_extensions(str(DOCS / "scripts" / "griffe_docs.py"))
    module = griffe.load("demo_pkg", search_paths=[str(tmp_path)], extensions=extensions)
    assert module["DOCUMENTED"].docstring.value == "A constant with a comment."
    assert module["UNDOCUMENTED"].docstring is None
