"""Test infrastructure: a private Dovecot server and a deterministic mail corpus.

Shared by the test suite (``tests/conftest.py``), the benchmarks and ``imapproxy demo``:

- :class:`DovecotServer` (:mod:`imapproxy.testing.dovecot`) starts Dovecot 2.3 on
  loopback with a STARTTLS port and an implicit-TLS port, certificates from a trustme
  CA, passwd-file users created on demand (:meth:`DovecotServer.add_user`) and
  ``doveadm who`` to count server-side connections.
- :func:`write_corpus` (:mod:`imapproxy.testing.corpus`) writes about a hundred
  realistic messages (10 MB) as a Maildir++ tree, byte for byte the same on every run;
  :func:`install_corpus` gives a user a hard-linked copy of it.
- :func:`run_demo <imapproxy.testing.demo.run_demo>` backs ``make demo``.

This package needs the ``dev`` extra (trustme) and Debian's ``dovecot-imapd``; see
docs/testing.md.
"""

from imapproxy.testing.corpus import (
    CORPUS_SEED,
    FOLDERS,
    KEYWORDS,
    CorpusFolder,
    CorpusMessage,
    CorpusSummary,
    FolderSpec,
    encode_mailbox_name,
    install_corpus,
    write_corpus,
)
from imapproxy.testing.dovecot import (
    MAIL_SYSTEM_USER,
    DovecotError,
    DovecotNotInstalled,
    DovecotServer,
    User,
    WhoEntry,
    find_dovecot,
)

__all__ = [
    "CORPUS_SEED",
    "FOLDERS",
    "KEYWORDS",
    "MAIL_SYSTEM_USER",
    "CorpusFolder",
    "CorpusMessage",
    "CorpusSummary",
    "DovecotError",
    "DovecotNotInstalled",
    "DovecotServer",
    "FolderSpec",
    "User",
    "WhoEntry",
    "encode_mailbox_name",
    "find_dovecot",
    "install_corpus",
    "write_corpus",
]
