"""MkDocs hooks: the parts of the site generated from the library, so that they cannot drift.

Pages hold markers, ``<!-- sk:NAME -->`` or ``<!-- sk:NAME ARGUMENT -->``, that
these hooks replace when the site is built (an unknown marker stops the build):

- ``method-figure``, ``method-parameters``, ``method-cost``: on a method page
  (an entry of ``registry.py``), its figure (drawn by ``make_figures.py``), the
  parameter table of its ``GetMask`` from the docstring, and the model inputs
  of each of the figure's variants, asked of the method itself;
- ``methods-table``: every method with its page, class and paper;
- ``figure FILE CAPTION``: a picture of ``docs/figures``; ``pic-aucs``: the AUCs
  of the evaluation figure;
- ``cli``: every option of the ``saliencykit`` command, read from its argparse parser;
- ``errors``: every exception class of the public modules with its bases;
- ``compatibility``: ``COMPATIBILITY.md``, the list of differences from ``saliency`` 0.2.1;
- ``benchmark-scripts``: each script of ``benchmarks/`` with the first paragraph of its docstring;
  ``benchmark-results``: the Markdown files of ``benchmarks/results/``, when there are any.

A picture that has not been drawn yet is replaced by a note, never a broken
image. The hooks also add the notebooks of ``examples/`` to the site (rendered
by mkdocs-jupyter), build the Methods section of the nav from the registry,
turn ``$$ ... $$`` blocks and ``\\( ... \\)`` spans into MathML (no script
from a CDN: the site works offline), and remove scripts that notebook pages
would load from the network.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent
ROOT = DOCS.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import griffe_docs  # noqa: E402 (docs/scripts is not a package)
import registry  # noqa: E402

MARKER = re.compile(r"<!--\s*sk:([a-z-]+)(?:\s+(.*?))?\s*-->")
#: Modules whose exception classes the ``errors`` marker lists.
ERROR_MODULES = ("core", "metrics", "tf1", "torch", "keras", "jax", "runs")
#: The input a cost table is computed for.
COST_SHAPE = (224, 224, 3)


# --- the nav and the files -----------------------------------------------------------------------


def on_config(config: Any) -> Any:
    """Replaces the nav's ``Methods`` entry with the overview and the registry's pages, by group."""
    section: list[Any] = [{"Overview": "methods/index.md"}]
    for group in registry.GROUPS:
        pages = [{m.title: m.page} for m in registry.METHODS if m.group == group]
        if pages:
            section.append({group: pages})
    nav = config["nav"] or []
    for index, entry in enumerate(nav):
        if isinstance(entry, dict) and "Methods" in entry:
            nav[index] = {"Methods": section}
    for watched in (ROOT / "src", ROOT / "examples", ROOT / "COMPATIBILITY.md"):
        if str(watched) not in config["watch"]:
            config["watch"].append(str(watched))
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebooks
def on_files(files: Files, config: Any) -> Files:
    """Adds ``examples/*.ipynb`` as ``examples/<name>.ipynb`` pages."""
    for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
        files.append(
            File(
                f"examples/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


# --- markers --------------------------------------------------------------------------------------


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Replaces the markers and the formulas of a page."""
    method = next((m for m in registry.METHODS if m.page == page.file.src_uri), None)
    depth = page.file.src_uri.count("/")

    def replace(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2) or ""
        if name.startswith("method-"):
            if method is None:
                raise ValueError(f"{page.file.src_uri}: <!-- sk:{name} --> is only for method pages")
            return {
                "method-figure": method_figure,
                "method-parameters": method_parameters,
                "method-cost": method_cost,
            }[name](method, depth)
        producers = {
            "methods-table": lambda: methods_table(depth),
            "figure": lambda: figure(argument, depth),
            "pic-aucs": pic_aucs,
            "cli": cli_reference,
            "errors": error_table,
            "compatibility": compatibility,
            "benchmark-scripts": benchmark_scripts,
            "benchmark-results": benchmark_results,
        }
        if name not in producers:
            raise ValueError(f"{page.file.src_uri}: unknown marker <!-- sk:{name} -->")
        return producers[name]()

    return formulas(MARKER.sub(replace, markdown))


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Drops the scripts of notebook pages that would load from the network, or from nowhere.

    nbconvert's template adds a MathJax loader (from a CDN, or with an empty ``src`` under
    mkdocs-jupyter) and its configuration; the notebooks hold no LaTeX, and the site must work
    offline without a failed request on every notebook page.
    """
    output = re.sub(r"<script[^>]*\bsrc=\"(?:https?://[^\"]*)?\"[^>]*>\s*</script>", "", output)
    return re.sub(r"<script type=\"text/x-mathjax-config\">.*?</script>", "", output, flags=re.S)


def _relative(path: str, depth: int) -> str:
    return "../" * depth + path


def _missing(what: str, command: str) -> str:
    return (
        f'!!! note "{what} not drawn yet"\n\n'
        f"    This picture is drawn from the library by `{command}`; it has not been run for it yet.\n"
    )


@functools.cache
def figure_records() -> dict[str, Any]:
    path = DOCS / "figures" / "figures.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def method_figure(method: registry.Method, depth: int) -> str:
    record = figure_records().get(method.slug)
    if not registry.is_available(method):
        return (
            f'!!! note "Not in this version yet"\n\n    `saliencykit.core.{method.class_name}` is added by '
            f"issue {method.issue}; its example maps are drawn once it is there "
            f"(`python docs/scripts/make_figures.py --only {method.slug}`).\n"
        )
    if not (DOCS / method.figure).is_file() or record is None:
        return _missing("Example maps", f"python docs/scripts/make_figures.py --only {method.slug}")
    photos = ", ".join(f"`{p['photo']}` ({p['label']}, p = {p['probability']:.2f})" for p in record["photos"])
    columns = "; ".join(v["label"] for v in record["variants"])
    return (
        f"![{method.title} on three photos]({_relative(method.figure, depth)})\n\n"
        f"*The pretrained EfficientNet-Lite0 on {photos}, each explained through its top class. "
        f"Columns: {columns}. Drawn by `docs/scripts/make_figures.py`.*\n"
    )


def figure(argument: str, depth: int) -> str:
    name, _, caption = argument.partition(" ")
    if not (DOCS / "figures" / name).is_file():
        return _missing(caption or name, "python docs/scripts/make_figures.py")
    return f"![{caption}]({_relative('figures/' + name, depth)})\n\n*{caption}*\n"


def pic_aucs() -> str:
    record = figure_records().get("pic")
    if not record:
        return ""
    rows = ["| map | SIC AUC (median curve) | AIC AUC (mean curve) |", "|---|---|---|"]
    sic, aic = record["auc"]["SIC"], record["auc"]["AIC"]
    for name in sic:
        rows.append(f"| {name} | {sic[name]:.3f} | {aic.get(name, float('nan')):.3f} |")
    return "\n".join(rows) + "\n"


# --- from the docstrings (griffe reads the sources; nothing is imported) ----------------------------


@functools.cache
def package() -> Any:
    import griffe

    extensions = griffe.load_extensions(str(HERE / "griffe_docs.py"))
    return griffe.load(
        "saliencykit", search_paths=[str(ROOT / "src")], extensions=extensions, resolve_aliases=True
    )


def _target(obj: Any) -> Any:
    return obj.final_target if obj.is_alias else obj


def _docstring_parameters(function: Any) -> dict[str, str]:
    import griffe

    if function.docstring is None:
        return {}
    found: dict[str, str] = {}
    for section in function.docstring.parse(griffe.Parser.google):
        if section.kind is griffe.DocstringSectionKind.parameters:
            for parameter in section.value:
                found[parameter.name] = parameter.description
    return found


def _cell(text: str) -> str:
    """Text for a table cell: Sphinx roles as code spans, on one line, ``|`` escaped."""
    return " ".join(griffe_docs.code_spans(text).split()).replace("|", "\\|")


def method_parameters(method: registry.Method, depth: int) -> str:
    if registry.method_class(method.class_name) is None:
        return (
            "The table of parameters is generated from the docstring of "
            f"`{method.class_name}.GetMask` once the class is in the library.\n"
        )
    cls = _target(package()["core"][method.class_name])
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for function_name in ("GetSmoothedMask", "GetMask") if method.smoothed else ("GetMask",):
        function = _target(cls.all_members[function_name])
        described = _docstring_parameters(function)
        for parameter in function.parameters:
            if parameter.name in ("self", "x_value", "call_model_function", "call_model_args", "kwargs"):
                continue
            default = "" if parameter.default is None else f"`{parameter.default}`"
            rows.append(f"| `{parameter.name}` | {default} | {_cell(described.get(parameter.name, ''))} |")
    source = "GetSmoothedMask and GetMask" if method.smoothed else "GetMask"
    return "\n".join(rows) + f"\n\n*From the docstring of `{method.class_name}.{source}`.*\n"


def method_cost(method: registry.Method, depth: int) -> str:
    if not registry.is_available(method):
        return ""
    rows = ["| variant | model inputs for a 224 x 224 x 3 image | inputs per call |", "|---|---|---|"]
    for variant in method.variants:
        cls = registry.method_class(variant.class_name or method.class_name)
        assert cls is not None
        kwargs = method.method_kwargs(variant)
        smoothed = method.smoothed if variant.smoothed is None else variant.smoothed
        try:
            count_inputs = cls().n_smoothed_model_inputs if smoothed else cls().n_model_inputs
            count = count_inputs(COST_SHAPE, **kwargs, **variant.cost_kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"registry entry {method.slug!r}, {variant.label!r}: {error}") from error
        per_call = variant.kwargs.get("batch_size", 1)
        rows.append(f"| {variant.label} | {count} | at most {per_call} |")
    return (
        "\n".join(rows) + "\n\n*Counted by the method's own `n_model_inputs` for the figure's parameters.*\n"
    )


def methods_table(depth: int) -> str:
    rows = ["| method | class | needs from the model | paper |", "|---|---|---|---|"]
    for method in registry.METHODS:
        cls = registry.method_class(method.class_name)
        keys = (
            ", ".join(f"`{key}`" for key in getattr(cls, "expected_keys", ()))
            if cls
            else f"(issue {method.issue})"
        )
        paper = (
            method.paper.split(",")[0]
            + " "
            + re.sub(r".*?(\d{4}).*", r"\1", method.paper.split("*")[0]).strip()
        )
        rows.append(
            f"| [{method.title}]({_relative(method.page, depth)}) | `{method.class_name}` | {keys} | "
            f"{' '.join(paper.split())} |"
        )
    return "\n".join(rows) + "\n"


def error_table() -> str:
    rows = ["| error | module | is also | raised when |", "|---|---|---|---|"]
    seen: set[str] = set()
    for module_name in ERROR_MODULES:
        module = package()[module_name]
        for name in module.exports or ():
            name = name if isinstance(name, str) else name.name
            member = module[name]
            target = _target(member)
            if not target.is_class or target.path in seen:
                continue
            bases = [str(base) for base in target.bases]
            if not any(b.endswith(("Error", "Exception")) for b in bases):
                continue
            seen.add(target.path)
            summary = target.docstring.value.split("\n\n")[0] if target.docstring else ""
            also = ", ".join(f"`{base}`" for base in bases)
            rows.append(f"| `{name}` | `saliencykit.{module_name}` | {also} | {_cell(summary)} |")
    return "\n".join(rows) + "\n"


# --- the command line -------------------------------------------------------------------------------


def cli_reference() -> str:
    from saliencykit.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = [f"```text\n{parser.format_usage().strip()}\n```\n"]
    for name, command in subparsers.choices.items():
        parts.append(f"## `saliencykit {name}`\n")
        parts.append(f"```text\n{command.format_usage().strip()}\n```\n")
        parts.append(f"```text\n{(command.description or '').strip()}\n```\n")
        formatter = command._get_formatter()
        for group in command._action_groups:
            actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS]
            if not actions:
                continue
            title = "arguments" if group.title in ("positional arguments",) else group.title
            parts.append(f"### {title}\n")
            rows = ["| option | value | default | meaning |", "|---|---|---|---|"]
            for action in actions:
                options = (
                    ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
                )
                value = (
                    "" if action.nargs == 0 else f"`{formatter._format_args(action, action.dest.upper())}`"
                )
                default = (
                    ""
                    if action.default in (None, argparse.SUPPRESS, False) or action.nargs == 0
                    else f"`{action.default}`"
                )
                rows.append(f"| {options} | {value} | {default} | {_cell(formatter._expand_help(action))} |")
            parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


# --- migrating and benchmarks -------------------------------------------------------------------------


def compatibility() -> str:
    text = (ROOT / "COMPATIBILITY.md").read_text(encoding="utf-8")
    body = text.split("\n", 1)[1] if text.startswith("# ") else text
    return body.strip() + "\n"


def benchmark_scripts() -> str:
    rows = ["| script | what it measures |", "|---|---|"]
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
        rows.append(f"| `benchmarks/{script.name}` | {_cell(docstring.split(chr(10) * 2)[0])} |")
    return "\n".join(rows) + "\n"


def benchmark_results() -> str:
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    return "\n".join(path.read_text(encoding="utf-8") for path in results)


# --- formulas -----------------------------------------------------------------------------------------


def formulas(markdown: str) -> str:
    """``$$`` blocks (the ``$$`` lines alone) and ``\\( ... \\)`` spans become MathML, outside code."""
    from latex2mathml.converter import convert

    lines, out, fence, block = markdown.split("\n"), [], None, None
    for line in lines:
        stripped = line.strip()
        if block is not None:
            if stripped == "$$":
                mathml = convert(" ".join(block), display="block")
                out.extend(["", f'<div class="sk-math">{mathml}</div>', ""])
                block = None
            else:
                block.append(stripped)
            continue
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
        elif fence is None and stripped == "$$":
            block = []
            continue
        if fence is None:
            line = re.sub(r"\\\((.+?)\\\)", lambda m: convert(m.group(1)), line)
        out.append(line)
    if block is not None:
        raise ValueError("a $$ block is not closed")
    return "\n".join(out)
