"""``imapproxy check``, ``serve`` and ``--version`` in-process, and once as a
subprocess through ``python -m imapproxy``."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trustme

from imapproxy import __version__
from imapproxy.__main__ import main
from imapproxy.config import Config, Logging
from imapproxy.logs import configure_logging

DEPLOY_EXAMPLE = Path(__file__).parent.parent / "deploy" / "imapproxy.toml"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """deploy/imapproxy.toml with /etc/imapproxy/ moved to tmp_path, certificates there."""
    ca = trustme.CA()
    leaf = ca.issue_cert("imap.example.com")
    (tmp_path / "tls").mkdir()
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls" / "imap.example.com.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls" / "imap.example.com.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "tls" / "internal-ca.pem"))
    path = tmp_path / "imapproxy.toml"
    path.write_text(DEPLOY_EXAMPLE.read_text().replace("/etc/imapproxy/", f"{tmp_path}/"))
    return path


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(
        '[[listener]]\naddress = "foo"\ntls = "implicit"\n'
        '[[upstream]]\nname = "main"\naddress = "mail:993"\ntls = "implicit"\nverify = "no"\n'
    )
    return path


@pytest.fixture
def _restore_structlog() -> Iterator[None]:
    yield
    configure_logging(Logging(), stream=io.StringIO())
    structlog.reset_defaults()


def test_check_prints_the_summary(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(example)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"configuration: {example}\n")
    assert "implicit:993: 0.0.0.0:993, tls = implicit" in out
    assert "max_literal = 50 MiB (52428800 bytes)" in out


def test_check_reports_errors(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(broken)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{broken}: listener[0].address: expected host:port (IPv6 as [::1]:993), got 'foo'",
        f"{broken}: upstream[0].verify: expected true or false, got 'no'",
    ]


def test_check_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["check", "--config", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"{missing}: cannot read the file: No such file or directory\n"
    )


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["check"])
    assert excinfo.value.code == 2
    assert "--config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as excinfo:
        main([])
    assert excinfo.value.code == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out == f"imapproxy {__version__}\n"


def test_serve_refuses_a_bad_config_before_importing_the_server(
    broken: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = types.ModuleType("imapproxy.server")
    monkeypatch.setitem(sys.modules, "imapproxy.server", server)  # no run(): must not be used
    assert main(["serve", "--config", str(broken)]) == 2
    assert f"{broken}: listener[0].address:" in capsys.readouterr().err


@pytest.mark.usefixtures("_restore_structlog")
def test_serve_configures_logging_and_runs_the_server(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[Config] = []

    def run(config: Config) -> int:
        served.append(config)
        structlog.get_logger().info("serving")
        return 3

    server = types.ModuleType("imapproxy.server")
    server.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imapproxy.server", server)
    assert main(["serve", "--config", str(example)]) == 3
    (config,) = served
    assert config.source == example
    # logging was set up from the config: JSON lines, since stdout is not a terminal here
    out = capsys.readouterr().out
    assert '"event":"serving"' in out


def test_serve_reports_an_unopenable_log_file(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(cfg: Logging) -> None:
        raise PermissionError(13, "Permission denied", str(cfg.file))

    monkeypatch.setattr("imapproxy.logs.configure_logging", refuse)
    server = types.ModuleType("imapproxy.server")  # no run(): must not be reached
    monkeypatch.setitem(sys.modules, "imapproxy.server", server)
    assert main(["serve", "--config", str(example)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{example}: logging.file: cannot open: [Errno 13] Permission denied")


def test_entry_point_in_a_subprocess(example: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imapproxy", "check", "--config", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "mailstore: mailstore.internal.example.com:993" in result.stdout


UNIT = DEPLOY_EXAMPLE.parent / "imapproxy.service"


def test_systemd_unit_runs_check_then_serve_hardened() -> None:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    config = "--config /etc/imapproxy/imapproxy.toml"
    assert settings["ExecStartPre"] == [f"/opt/imapproxy/bin/imapproxy check {config}"]
    assert settings["ExecStart"] == [f"/opt/imapproxy/bin/imapproxy serve {config}"]
    assert settings["ExecReload"] == [
        f"/opt/imapproxy/bin/imapproxy check {config}",
        "/bin/kill -HUP $MAINPID",
    ]
    for key, value in {
        "Type": "exec",
        "User": "imapproxy",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "ReadOnlyPaths": "/etc/imapproxy",
    }.items():
        assert settings[key] == [value], key
    assert "@system-service" in settings["SystemCallFilter"]
    assert settings["TimeoutStopSec"] == ["30s"]
    assert settings["LimitNOFILE"] == ["16384"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # verify insists that the programs exist: point them at this environment's
    unit = tmp_path / "imapproxy.service"
    program = Path(sys.executable).parent / "imapproxy"
    unit.write_text(UNIT.read_text().replace("/opt/imapproxy/bin/imapproxy", str(program)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
