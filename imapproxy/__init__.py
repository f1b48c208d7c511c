"""imapproxy: an IMAP proxy and filtering middlebox on Trio.

The package is layered (see docs/architecture.md): :mod:`imapproxy.wire` is the
sans-IO IMAP codec every other layer stands on; :mod:`imapproxy.testing` starts a
private Dovecot for tests, benchmarks and ``imapproxy demo``.
"""

__version__ = "0.1.0.dev0"
