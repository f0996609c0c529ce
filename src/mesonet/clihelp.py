"""How ``mesonet --help`` reads: paragraphs that wrap at any width, words as placeholders,
descriptions with room at 80 columns.

Typer keeps a docstring's single line breaks after its first paragraph and shows types
(``<bool>``, ``<list[Path]>``, ``{paths}...``) where a reader wants words (``FILE``, ``N``,
``PATH...``). Its rich panels give an option's description what the name, short name and
placeholder columns leave: 24 of 80 columns. :class:`HelpCommand` and :class:`HelpGroup`
fix all three: click's plain layout, the names in a column of at most
:data:`NAME_COLUMN` characters (a longer one gets its own line), so a description has 50
of 80 columns; lines break only between words (never at a hyphen, as in
``mesonet-deepfake-val`` or ``--video-rule``, nor inside ``[default: 0.5]``).
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

from typer.core import TyperCommand, TyperGroup

NAME_COLUMN = 24
"""Widest option name (with its placeholder) written beside its description."""
_UNBREAKABLE = str.maketrans({"-": "\u2011"})  # textwrap breaks at "-", not at U+2011
_BREAKABLE = str.maketrans({"\u2011": "-", "\u00a0": " "})


def reflow(text: str | None) -> str | None:
    """``text`` with each paragraph on one line, so the terminal wraps it where it ends."""
    if not text:
        return text
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _word_placeholders(params: list[Any]) -> list[Any]:
    """Flags show no placeholder; arguments show their name once (no type beside it).

    Parameters are told apart by their duck type: typer builds on click, or on its own copy
    of click (newer typer), so their classes differ between versions.
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # a flag takes no value: no <bool> placeholder
        elif param.param_type_name == "option" and param.metavar is None and param.opts:
            # a value without a word of its own: the option's last word (--val-fraction
            # FRACTION), not its type (<float>)
            param.metavar = max(param.opts, key=len).lstrip("-").split("-")[-1].upper()
        elif param.param_type_name == "argument" and param.metavar:
            # the name column already shows the placeholder: no <list[Path]> beside it
            param.display_type_rich = lambda ctx: None
    return params


@functools.cache
def _word_formatter(base: type) -> type:
    """A subclass of click's help formatter ``base`` (typer's own copy of click, or click)
    that writes definition lists in a :data:`NAME_COLUMN` column and breaks lines only
    between words."""

    class WordFormatter(base):  # type: ignore[misc, valid-type]
        def write_text(self, text: str) -> None:
            super().write_text(text.translate(_UNBREAKABLE))

        def write_dl(self, rows, col_max: int = NAME_COLUMN, col_spacing: int = 2) -> None:
            rows = [
                (term, text.translate(_UNBREAKABLE).replace("[default: ", "[default:\u00a0"))
                for term, text in rows
            ]
            super().write_dl(rows, min(col_max, NAME_COLUMN), col_spacing)

        def getvalue(self) -> str:
            return super().getvalue().translate(_BREAKABLE)

    return WordFormatter


def _plain_help(format_help: Any, ctx: Any, formatter: Any) -> None:
    """Write the help by click's ``format_help`` (not typer's rich panels) through a
    :func:`_word_formatter` as wide as ``formatter``, then into ``formatter``."""
    words = _word_formatter(type(formatter))(width=formatter.width)
    format_help(ctx, words)
    formatter.write(words.getvalue())


class HelpGroup(TyperGroup):
    """The ``mesonet`` group: its own options shown like its commands', each command's
    first sentence whole."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _word_placeholders(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_help(super(TyperGroup, self).format_help, ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class HelpCommand(TyperCommand):
    """A typer command whose help wraps cleanly and names its placeholders in words."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _word_placeholders(super().get_params(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_help(super(TyperCommand, self).format_help, ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "arg").upper()
                if param.nargs != 1 and not name.endswith("..."):
                    name += "..."
                pieces.append(name if param.required else f"[{name}]")
        return pieces
