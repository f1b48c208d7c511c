"""TLS contexts for both legs.

The client leg (:func:`server_context`) offers TLS 1.2 and newer with OpenSSL's
modern defaults (forward-secret AEAD suites), no compression and no
renegotiation. The upstream leg (:func:`client_context`) verifies the server's
certificate and host name by default -- against the system store or a configured
CA file -- and sends SNI; ``verify = false`` in an ``[[upstream]]`` is the explicit
opt-out.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from imapproxy.config import ServerTls, Upstream

__all__ = ["client_context", "describe", "server_context"]

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def server_context(cfg: ServerTls) -> ssl.SSLContext:
    """The context for client connections (implicit TLS and STARTTLS).

    Raises:
        ssl.SSLError, OSError: the certificate or key cannot be loaded.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = _VERSIONS[cfg.min_version]
    ctx.load_cert_chain(str(cfg.cert), str(cfg.key))
    if cfg.ciphers:
        ctx.set_ciphers(cfg.ciphers)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_SINGLE_ECDH_USE
    return ctx


def client_context(upstream: Upstream) -> ssl.SSLContext:
    """The context for connections to ``upstream``: verification on unless the
    configuration says ``verify = false``; TLS 1.2 at least."""
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(upstream.ca) if upstream.ca else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if not upstream.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _TlsInfo(Protocol):
    def version(self) -> str | None: ...
    def cipher(self) -> tuple[str, str, int] | None: ...


def describe(stream: _TlsInfo) -> dict[str, str]:
    """TLS version and cipher of an established connection, for log lines."""
    cipher = stream.cipher()
    return {"tls_version": stream.version() or "", "tls_cipher": cipher[0] if cipher else ""}
