"""MkDocs hooks for the spreadq site (loaded by ``hooks:`` in mkdocs.yml).

* The command-line reference is generated from the ``spreadq`` typer app at build time:
  a page that holds the line ``<!-- spreadq-cli -->`` gets, in its place, one section
  per command with its help, usage, arguments and options, taken from the click
  command that :func:`typer.main.get_command` builds (the same objects ``--help``
  prints). typer bundles its own click, so the command is read through its methods.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("mkdocs.hooks.spreadq_docs")

CLI_MARKER = "<!-- spreadq-cli -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER not in markdown:
        return markdown
    return markdown.replace(CLI_MARKER, cli_reference())


def cli_reference() -> str:
    """The ``spreadq`` command and its subcommands as Markdown."""
    import typer
    import typer.main

    from spreadq.cli import app

    root = typer.main.get_command(app)
    context = typer.Context(root, info_name="spreadq")
    parts = _command_section(root, context, "spreadq", level=2)
    commands = getattr(root, "commands", {})
    for name in sorted(commands):
        sub = commands[name]
        if getattr(sub, "hidden", False):
            continue
        sub_context = typer.Context(sub, info_name=name, parent=context)
        parts += _command_section(sub, sub_context, f"spreadq {name}", level=3)
    return "\n".join(parts)


def _command_section(command: Any, context: Any, path: str, *, level: int) -> list[str]:
    lines = [f"{'#' * level} `{path}`", ""]
    if command.help:
        lines += [_plain(command.help), ""]
    usage = " ".join(command.collect_usage_pieces(context))
    lines += ["```console", f"$ {path} {usage}".rstrip(), "```", ""]
    rows = []
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None:
            continue
        names, text = record
        kind = "argument" if param.param_type_name == "argument" else "option"
        rows.append(f"| `{names}` | {kind} | {_cell(text)} |")
    if rows:
        lines += ["| name | kind | what it does |", "| --- | --- | --- |", *rows, ""]
    return lines


def _plain(text: str) -> str:
    """Help text as Markdown paragraphs: typer's ``\\b`` (keep lines) marker dropped."""
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


def _without(nav: list[Any], page: str) -> list[Any]:
    kept: list[Any] = []
    for item in nav:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if value == page:
                continue
            if isinstance(value, list):
                item = {title: _without(value, page)}
        elif item == page:
            continue
        kept.append(item)
    return kept
