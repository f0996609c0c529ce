"""How ``mesonet --help`` reads: paragraphs that wrap at any width, words as placeholders.

Typer keeps a docstring's single line breaks after its first paragraph and shows types
(``<bool>``, ``<list[Path]>``, ``{paths}...``) where a reader wants words (``FILE``, ``N``,
``PATH...``). :class:`HelpCommand` fixes both for every command that uses it.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from typer.core import TyperCommand, TyperGroup


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
        elif param.param_type_name == "argument" and param.metavar:
            # the name column already shows the placeholder: no <list[Path]> beside it
            param.display_type_rich = lambda ctx: None
    return params


class HelpGroup(TyperGroup):
    """The ``mesonet`` group: its own options shown like its commands'."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _word_placeholders(super().get_params(ctx))


class HelpCommand(TyperCommand):
    """A typer command whose help wraps cleanly and names its placeholders in words."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _word_placeholders(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "arg").upper()
                if param.nargs != 1 and not name.endswith("..."):
                    name += "..."
                pieces.append(name if param.required else f"[{name}]")
        return pieces
