"""What the hostile-input and hostile-output tests share: run a command in-process, list a folder, and
check a refusal (exit 2, one error line naming the culprit, no traceback)."""

from __future__ import annotations

import re
from pathlib import Path

from costmodels.cli.main import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_refused(code: int, err: str, command: str, culprit: str) -> None:
    """Exit 2, one error line that names the culprit, no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("costmodel")]
    assert code == 2, err
    assert len(errors) == 1 and errors[0].startswith(f"costmodel {command.split()[0]}: error: "), err
    assert re.search(culprit, errors[0]), (culprit, errors[0])
