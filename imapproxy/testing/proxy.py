"""Run imapproxy in front of an upstream, for tests, benchmarks and the demo.

:class:`ProxyTls` issues the proxy's own certificate (for ``localhost`` and
``127.0.0.1``) from a trustme CA and writes it where a configuration can point.
:func:`proxy_config` writes the TOML for a proxy with an implicit-TLS and a
STARTTLS listener in front of one upstream and validates it like ``imapproxy
check`` would; :func:`dovecot_upstream` gives the upstream table for a
:class:`~imapproxy.testing.dovecot.DovecotServer`. The proxy itself runs in the
caller's nursery: ``proxy = await nursery.start(Proxy(config).serve)``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from imapproxy.config import Config, load_config
from imapproxy.testing.dovecot import DovecotServer

__all__ = ["ProxyTls", "dovecot_upstream", "proxy_config", "toml_value"]


@dataclass(frozen=True)
class ProxyTls:
    """The proxy's certificate and the CA clients must trust for it."""

    directory: Path
    ca: trustme.CA

    @classmethod
    def create(cls, directory: Path) -> ProxyTls:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="imapproxy test CA")
        cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
        cert.cert_chain_pems[0].write_to_path(directory / "cert.pem")
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(directory / "cert.pem", append=True)
        cert.private_key_pem.write_to_path(directory / "key.pem")
        ca.cert_pem.write_to_path(directory / "ca.pem")
        return cls(directory, ca)

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "key.pem"

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting the proxy's CA, verifying host names."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def toml_value(value: object) -> str:
    """A Python value as a TOML value (strings, numbers, booleans, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def dovecot_upstream(
    server: DovecotServer, *, tls: str = "implicit", name: str = "dovecot", **extra: object
) -> dict[str, object]:
    """An ``[[upstream]]`` table for ``server`` (verifying its test certificate)."""
    port = {"implicit": server.imaps_port, "starttls": server.imap_port, "none": server.imap_port}
    table: dict[str, object] = {
        "name": name,
        "address": f"127.0.0.1:{port[tls]}",
        "tls": tls,
        "server_name": "localhost",
    }
    if tls != "none":
        table["ca"] = server.ca_path
    table.update(extra)
    return table


def proxy_config(
    directory: Path,
    tls: ProxyTls,
    upstreams: list[dict[str, object]],
    *,
    listeners: tuple[str, ...] = ("implicit", "starttls"),
    limits: dict[str, object] | None = None,
    timeouts: dict[str, object] | None = None,
    logging: dict[str, object] | None = None,
    routes: dict[str, object] | None = None,
    rules: dict[str, object] | None = None,
    cache: dict[str, object] | None = None,
    multiplex: dict[str, object] | None = None,
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
) -> Config:
    """Write ``directory/imapproxy.toml`` and load it (ephemeral ports by default)."""
    lines: list[str] = []
    for mode in listeners:
        port = (ports or {}).get(mode, 0)
        lines += ["[[listener]]", f'address = "{host}:{port}"', f'tls = "{mode}"', ""]
    lines += [
        "[tls]",
        f"cert = {toml_value(tls.cert_path)}",
        f"key = {toml_value(tls.key_path)}",
        "",
    ]
    for upstream in upstreams:
        lines.append("[[upstream]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in upstream.items()]
        lines.append("")
    for section, values in (
        ("limits", limits),
        ("timeouts", timeouts),
        ("logging", logging),
        ("routes", routes),
        ("rules", rules),
        ("cache", cache),
        ("multiplex", multiplex),
    ):
        if values:
            lines.append(f"[{section}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
            lines.append("")
    path = directory / "imapproxy.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return load_config(path)
