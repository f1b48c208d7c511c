"""``imapproxy demo`` (``make demo``): a private Dovecot with the corpus, ready to poke at.

:func:`run_demo` starts a :class:`~imapproxy.testing.dovecot.DovecotServer` in the given
work directory (``.demo`` by default), creates the user ``demo`` (password ``demo``)
with a fresh copy of the corpus, prints how to connect, and then waits for Ctrl-C or
SIGTERM before stopping Dovecot. Every start resets the directory's mail, so the demo
always begins from the same state; a Dovecot left running by a killed earlier demo in
the same directory is stopped first. The demo prefers ports 10143 (STARTTLS) and
10993 (implicit TLS) and falls back to free ports when those are taken.

For now the demo serves Dovecot directly; once the proxy core exists, the demo will
put imapproxy in front of it.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from imapproxy.testing.dovecot import DovecotError, DovecotNotInstalled, DovecotServer, User

__all__ = ["DEMO_PASSWORD", "DEMO_PORTS", "DEMO_USER", "run_demo"]

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - a published credential of a loopback demo
DEMO_PORTS = (10143, 10993)


def run_demo(workdir: str) -> int:
    """Run the demo server in ``workdir`` until SIGINT/SIGTERM; return an exit status."""
    server = DovecotServer(Path(workdir).absolute(), ports=DEMO_PORTS)
    try:
        server.start()
    except DovecotNotInstalled as exc:
        print(f"imapproxy demo: {exc}", file=sys.stderr)
        return 2
    except DovecotError as exc:
        print(f"imapproxy demo: Dovecot did not start: {exc}", file=sys.stderr)
        return 1

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        user = server.add_user(DEMO_USER, DEMO_PASSWORD)
        print(instructions(server, user), flush=True)
        while not stopping.wait(0.5):
            if not server.running:
                print(
                    f"imapproxy demo: Dovecot exited unexpectedly; see {server.log_path}",
                    file=sys.stderr,
                )
                return 1
        print("\nStopping Dovecot ...", flush=True)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Stopped.", flush=True)
    return 0


def instructions(server: DovecotServer, user: User) -> str:
    """The connection help the demo prints."""
    host, ca = server.hostname, server.ca_path
    corpus = server.corpus
    return f"""\
imapproxy demo: a private Dovecot is running.

  Host        {host} (127.0.0.1); the certificate is valid for both names
  IMAP        port {server.imap_port}  (plaintext; STARTTLS offered)
  IMAPS       port {server.imaps_port}  (implicit TLS)
  User        {user.name}   Password  {user.password}
  Mail        {corpus.total_messages} messages in {len(corpus.folders)} folders \
({corpus.total_bytes / 1e6:.1f} MB), reset on every start
  CA file     {ca}
  Work dir    {server.workdir}   (log: {server.log_path})

Connect with openssl, then type  a LOGIN {user.name} {user.password}  /  b LIST "" "*"  /  c LOGOUT
  openssl s_client -quiet -starttls imap -connect {host}:{server.imap_port} -CAfile {ca} \
-verify_return_error
  openssl s_client -quiet -connect {host}:{server.imaps_port} -CAfile {ca} -verify_return_error

Python, standard library:
  import imaplib, ssl
  ctx = ssl.create_default_context(cafile="{ca}")
  with imaplib.IMAP4_SSL("{host}", {server.imaps_port}, ssl_context=ctx) as imap:
      imap.login("{user.name}", "{user.password}")
      print(imap.list())

Python, IMAPClient:
  from imapclient import IMAPClient
  with IMAPClient("{host}", {server.imaps_port}, ssl_context=ctx) as client:
      client.login("{user.name}", "{user.password}")
      print(client.list_folders())

Note: this release serves Dovecot directly. The imapproxy proxy core is the next
milestone; a later release of the demo puts the proxy in front of this server.

Press Ctrl-C to stop."""
