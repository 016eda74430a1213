"""docs/benchmarks.md holds several benchmarks' results. The strategy benchmark writes the page;
other benchmarks own marked sections in it, which every rewrite keeps:

    <!-- section:NAME -->
    ...
    <!-- /section:NAME -->
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from controller.runs import write_json_atomic, write_text_atomic

_SECTION = re.compile(r"<!-- section:(?P<name>[\w-]+) -->\n.*?<!-- /section:(?P=name) -->\n", re.S)


def kept_sections(path: Path) -> str:
    """Every marked section of the file as it is now ("" when there is none)."""
    if not path.exists():
        return ""
    return "".join(m.group(0) for m in _SECTION.finditer(path.read_text()))


def update_section(path: Path, name: str, body: str) -> None:
    """Put body in section NAME of the file, replacing the old one or appending it."""
    block = f"<!-- section:{name} -->\n{body.rstrip()}\n<!-- /section:{name} -->\n"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"<!-- section:{re.escape(name)} -->\n.*?<!-- /section:{re.escape(name)} -->\n", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    write_text_atomic(path, text)


def publish(out: Path, name: str, body: str, data: Any = None, data_path: Path | None = None) -> None:
    """A benchmark's last step: its raw results to data_path (when given), then its section of the
    page, each written whole (a reader never sees half a file), and one line saying where."""
    if data is not None and data_path is not None:
        write_json_atomic(data_path, data)
    update_section(out, name, body)
    print(f"wrote the {name} section of {out}")
