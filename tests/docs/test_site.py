"""``mkdocs build --strict`` passes, and the generated parts of the site say what the code says."""

from __future__ import annotations

import argparse
import html
import re

from .conftest import DOCS, BuiltSite, load_docs_module


def page_text(site: BuiltSite, page: str) -> str:
    return html.unescape((site.path / page).read_text(encoding="utf-8"))


def test_strict_build_has_every_page(built_site: BuiltSite) -> None:
    """Every page of docs/, every method of the registry, the notebooks and the API pages are built."""
    registry = load_docs_module("registry")
    expected = [path.relative_to(DOCS).with_suffix(".html") for path in DOCS.rglob("*.md")]
    expected += [
        f"examples/{name}.html" for name in ("core_keras", "core_pytorch", "tf1_graphs", "pic_metrics")
    ]
    expected += [method.page.replace(".md", ".html") for method in registry.METHODS]
    missing = [str(page) for page in expected if not (built_site.path / page).is_file()]
    assert not missing, f"pages not built: {missing}"
    assert "WARNING" not in built_site.log


def test_every_registry_method_is_in_the_nav(built_site: BuiltSite) -> None:
    registry = load_docs_module("registry")
    index = page_text(built_site, "index.html")
    for method in registry.METHODS:
        assert f'href="{method.page.replace(".md", ".html")}"' in index, f"{method.slug} is not in the nav"


def test_cli_page_lists_every_option_of_the_parser(built_site: BuiltSite) -> None:
    """The command-line page is generated from the argparse parser: no option can be missing."""
    from saliencykit.cli import build_parser

    text = page_text(built_site, "cli.html")
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in subparsers.choices.items():
        assert f"saliencykit {name}" in text
        for action in command._actions:
            for option in action.option_strings:
                assert f"<code>{option}</code>" in text, f"{name} {option} is not on the CLI page"


def test_method_pages_have_figure_parameters_and_cost(built_site: BuiltSite) -> None:
    """Each available method's page shows its figure, a parameter table and its model inputs."""
    registry = load_docs_module("registry")
    for method in registry.METHODS:
        text = page_text(built_site, method.page.replace(".md", ".html"))
        if not registry.is_available(method):
            assert "Not in this version yet" in text
            continue
        assert f'src="../{method.figure}"' in text, f"{method.slug}: no figure"
        assert "From the docstring of" in text, f"{method.slug}: no parameter table"
        assert "Counted by the method" in text, f"{method.slug}: no cost table"
        for variant in method.variants:
            assert variant.label in text


def test_formulas_are_mathml(built_site: BuiltSite) -> None:
    text = page_text(built_site, "methods/integrated-gradients.html")
    assert re.search(r'<math[^>]*display="block"', text)
    assert "$$" not in text


def test_available_methods_have_committed_figures() -> None:
    """A method whose class exists has its figure: run make_figures.py --only SLUG when this fails."""
    registry = load_docs_module("registry")
    missing = [
        m.slug for m in registry.METHODS if registry.is_available(m) and not (DOCS / m.figure).is_file()
    ]
    assert not missing, f"run: python docs/scripts/make_figures.py --only {','.join(missing)}"
