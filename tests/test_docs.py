"""The documentation is tested: README and docs/ code blocks run, docstrings doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import everstore

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _modules() -> list[str]:
    found = ["everstore"]
    for info in pkgutil.walk_packages(everstore.__path__, "everstore."):
        found.append(info.name)
    return sorted(found)


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_document_code_blocks_run(
    document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples may create files such as game.db
    namespace: dict[str, object] = {"__name__": "__main__"}
    for number, block in enumerate(_PYTHON_BLOCK.findall(document.read_text())):
        # dont_inherit: a block runs as a user's script would, without this module's
        # `from __future__ import annotations` (pydantic resolves annotations itself)
        code = compile(block, f"{document.name}[block {number}]", "exec", dont_inherit=True)
        exec(code, namespace)
