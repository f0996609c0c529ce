"""List the modules and functions of src/ over the size the code aims for.

    python tools/code_shape.py [--module-lines 400] [--function-lines 150]

A module over ``--module-lines`` lines, or a function or class over ``--function-lines``
(its whole body, decorators included), is printed with its size; the exit status is 1 when
any is found, so the check can gate a change.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("src"))
    parser.add_argument("--module-lines", type=int, default=400)
    parser.add_argument("--function-lines", type=int, default=150)
    args = parser.parse_args()
    found = 0
    for path in sorted(args.root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > args.module_lines:
            print(f"{path}: module {lines} lines")
            found += 1
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                size = (node.end_lineno or node.lineno) - start + 1
                if size > args.function_lines:
                    kind = "class" if isinstance(node, ast.ClassDef) else "function"
                    print(f"{path}:{start}: {kind} {node.name} {size} lines")
                    found += 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
