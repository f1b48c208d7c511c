"""The MIME-part cache: immutable message data fetched through the proxy.

Message data never changes for a UID within one UIDVALIDITY, so what a FETCH
returned for ``BODY[1.2]``, ``ENVELOPE`` or ``RFC822.SIZE`` can be served again
without asking the upstream. This package is the storage: :class:`PartCache`
keeps values by :class:`CacheKey` in up to three tiers, a byte-budgeted memory
tier, an encrypted disk tier that survives restarts, and an encrypted Redis tier
that several proxy instances share (docs/cache.md). Which items are cached and
how FETCH is served from it is the session's business.

* :mod:`imapproxy.cache.keys`: :class:`CacheKey` and its canonical encoding.
* :mod:`imapproxy.cache.seal`: keyed names and AES-GCM sealing for stored entries.
* :mod:`imapproxy.cache.tiers`: the three stores, synchronous.
* :mod:`imapproxy.cache.store`: :class:`PartCache`, tier order, promotion, failures,
  admission, :class:`CacheStats`.
"""

from imapproxy.cache.keys import CacheKey
from imapproxy.cache.store import CacheStats, PartCache
from imapproxy.config import CacheSettings

__all__ = ["CacheKey", "CacheSettings", "CacheStats", "PartCache"]
