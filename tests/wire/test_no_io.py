"""The codec does no I/O: importing it pulls in neither trio, ssl, socket nor structlog.

Checked in a fresh interpreter (``sys.executable -c ...``), because the test
process itself has long imported trio (pytest-trio) and the rest.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import imapproxy.wire

FORBIDDEN = ("trio", "ssl", "socket", "structlog")

SUBMODULES = sorted(
    f"imapproxy.wire.{info.name}" for info in pkgutil.iter_modules(imapproxy.wire.__path__)
)

PROGRAM = """
import importlib, json, sys
for name in ["imapproxy.wire", *sys.argv[1:]]:
    importlib.import_module(name)
loaded = sorted(
    name for name in sys.modules
    if name.split(".")[0] in {forbidden!r} or name in ("_ssl", "_socket")
)
wire = sorted(name for name in sys.modules if name.startswith("imapproxy.wire"))
print(json.dumps({{"loaded": loaded, "wire": wire}}))
"""


def test_submodules_are_the_documented_ones() -> None:
    assert set(SUBMODULES) >= {
        f"imapproxy.wire.{name}"
        for name in (
            "bodystructure",
            "build",
            "commands",
            "errors",
            "framing",
            "reader",
            "responses",
            "search",
            "values",
        )
    }


def test_codec_imports_no_io_modules() -> None:
    program = PROGRAM.format(forbidden=set(FORBIDDEN))
    result = subprocess.run(
        [sys.executable, "-c", program, *SUBMODULES],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    assert set(SUBMODULES) <= set(report["wire"])  # every submodule really was imported


def test_the_check_can_fail() -> None:
    """The same program does see an I/O module once one is imported."""
    program = PROGRAM.format(forbidden=set(FORBIDDEN))
    result = subprocess.run(
        [sys.executable, "-c", program, "socket"],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    assert "socket" in json.loads(result.stdout)["loaded"]
