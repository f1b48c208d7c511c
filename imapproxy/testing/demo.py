"""``imapproxy demo`` (``make demo``): imapproxy in front of a private Dovecot.

:func:`run_demo` starts a :class:`~imapproxy.testing.dovecot.DovecotServer` in the given
work directory (``.demo`` by default), creates the user ``demo`` (password ``demo``)
with a fresh copy of the corpus, issues the proxy a self-signed certificate (a trustme
CA, for ``localhost`` and 127.0.0.1), writes ``imapproxy.toml`` there and runs the proxy
in front of Dovecot -- implicit TLS on 10993, STARTTLS on 10143, upstream over verified
TLS -- until Ctrl-C or SIGTERM, which drain the proxy and then stop Dovecot. Every
start resets the directory's mail, so the demo always begins from the same state; a
Dovecot left running by a killed earlier demo in the same directory is stopped first.
When the preferred ports are taken, free ones are used and printed.
"""

from __future__ import annotations

import socket
import sys
from functools import partial
from pathlib import Path

import trio

from imapproxy.config import Config
from imapproxy.logs import configure_logging
from imapproxy.server import Proxy
from imapproxy.testing.dovecot import DovecotError, DovecotNotInstalled, DovecotServer, User
from imapproxy.testing.proxy import ProxyTls, dovecot_upstream, proxy_config

__all__ = ["DEMO_PASSWORD", "DEMO_PORTS", "DEMO_USER", "run_demo"]

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - a published credential of a loopback demo
#: The proxy's ports: STARTTLS, implicit TLS.
DEMO_PORTS = (10143, 10993)
#: Dovecot's own ports behind it.
UPSTREAM_PORTS = (11143, 11993)


def _free(port: int) -> int:
    """``port`` if it can be bound on 127.0.0.1, else 0 (an ephemeral one)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def run_demo(workdir: str) -> int:
    """Run Dovecot and the proxy in ``workdir`` until SIGINT/SIGTERM; an exit status."""
    base = Path(workdir).absolute()
    # The proxy is a trusted peer of Dovecot: it forwards the client's address in ID.
    server = DovecotServer(base, ports=UPSTREAM_PORTS, login_trusted_networks="127.0.0.1")
    try:
        server.start()
    except DovecotNotInstalled as exc:
        print(f"imapproxy demo: {exc}", file=sys.stderr)
        return 2
    except DovecotError as exc:
        print(f"imapproxy demo: Dovecot did not start: {exc}", file=sys.stderr)
        return 1
    try:
        user = server.add_user(DEMO_USER, DEMO_PASSWORD)
        tls = ProxyTls.create(base / "proxy-tls")
        config = proxy_config(
            base,
            tls,
            [dovecot_upstream(server, trusted=True)],
            ports={"starttls": _free(DEMO_PORTS[0]), "implicit": _free(DEMO_PORTS[1])},
            logging={"format": "console"} if sys.stdout.isatty() else None,
        )
        configure_logging(config.logging)
        proxy = Proxy(config)
        trio.run(partial(_serve, proxy, server, user, tls, config))
        print("\nStopping Dovecot ...", flush=True)
    finally:
        server.stop()
    print("Stopped.", flush=True)
    return 0


async def _serve(
    proxy: Proxy, server: DovecotServer, user: User, tls: ProxyTls, config: Config
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(proxy.serve, handle_signals=True))
        ports: dict[str, int] = {bound.config.tls: bound.port for bound in proxy.listening}
        print(instructions(server, user, tls, ports, config), flush=True)


def instructions(
    server: DovecotServer, user: User, tls: ProxyTls, ports: dict[str, int], config: Config
) -> str:
    """The connection help the demo prints."""
    host, ca = server.hostname, tls.ca_path
    corpus = server.corpus
    imap, imaps = ports["starttls"], ports["implicit"]
    return f"""\
imapproxy demo: imapproxy is running in front of a private Dovecot.

  Host        {host} (127.0.0.1); the certificate is valid for both names
  IMAP        port {imap}  (STARTTLS required before login)
  IMAPS       port {imaps}  (implicit TLS)
  User        {user.name}   Password  {user.password}
  Mail        {corpus.total_messages} messages in {len(corpus.folders)} folders \
({corpus.total_bytes / 1e6:.1f} MB), reset on every start
  CA file     {ca}
  Config      {config.source}   (check it: imapproxy check --config {config.source})
  Upstream    Dovecot on {host}:{server.imaps_port} (TLS, verified; log: {server.log_path})
  Work dir    {server.workdir}

Connect with openssl, then type  a LOGIN {user.name} {user.password}  /  b LIST "" "*"  /  c LOGOUT
  openssl s_client -quiet -connect {host}:{imaps} -CAfile {ca} -verify_return_error
  openssl s_client -quiet -starttls imap -connect {host}:{imap} -CAfile {ca} \
-verify_return_error

Python, standard library:
  import imaplib, ssl
  ctx = ssl.create_default_context(cafile="{ca}")
  with imaplib.IMAP4_SSL("{host}", {imaps}, ssl_context=ctx) as imap:
      imap.login("{user.name}", "{user.password}")
      print(imap.list())

Python, IMAPClient:
  from imapclient import IMAPClient
  with IMAPClient("{host}", {imaps}, ssl_context=ctx) as client:
      client.login("{user.name}", "{user.password}")
      print(client.list_folders())

The proxy logs each connection and login below. Press Ctrl-C to stop."""
