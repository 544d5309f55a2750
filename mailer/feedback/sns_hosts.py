"""SNS's hosts: which URLs are SNS's (checked before any connection is made) and what is fetched from
them: signing certificates (over HTTPS, kept in a small cache, or read from a folder) and the visit to a
SubscribeURL that confirms a subscription. The only network I/O of the feedback package is here, in
``fetch_certificate_https`` and ``confirm_subscription``.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography import x509

from mailer.errors import InputError, VerificationError

__all__ = [
    "CachedCertificates",
    "CertificateDirectory",
    "CertificateSource",
    "SnsMessageError",
    "SnsSignatureError",
    "check_sns_url",
    "confirm_subscription",
    "fetch_certificate_https",
    "load_pem_certificate",
    "sns_region",
    "sns_regions",
]

# sns.<region>.amazonaws.com, or .amazonaws.com.cn in the China partition; a region is letters, words
# and a number (us-east-1, cn-north-1, us-gov-west-1, ap-southeast-4), which S3 bucket hosts under
# amazonaws.com (sns.s3.amazonaws.com, sns.s3-us-west-2.amazonaws.com: anyone can publish there) are not
_SNS_HOST_RE = re.compile(
    r"^sns\.(?P<region>[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2})\.amazonaws\.com(?P<cn>\.cn)?$"
)
_PEM_PATH_RE = re.compile(r"/[A-Za-z0-9_-]{1,200}\.pem")  # SNS's: /SimpleNotificationService-<hex>.pem


class SnsMessageError(InputError):
    """An HTTP body that is not a well-formed SNS message (HTTP 400)."""


class SnsSignatureError(SnsMessageError, VerificationError):
    """A well-formed SNS message that fails verification: signature, certificate, age or topic (HTTP 403)."""


def sns_region(url: str, *, what: str) -> str:
    """The region of an https URL on an SNS host, or SnsSignatureError (checked before any connection)."""
    refusal = SnsSignatureError(
        f"SNS message: {what} {url!r} is not https on an sns.<region>.amazonaws.com host"
    )
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for ':abc' or ':99999'
    except ValueError:  # an unclosed '[', a bad port
        raise refusal from None
    match = _SNS_HOST_RE.match(parts.hostname or "")
    if parts.scheme != "https" or match is None or port not in (None, 443):
        raise refusal
    region = match.group("region")
    if region not in sns_regions():  # a region SNS does not have (a made-up host under amazonaws.com)
        raise refusal
    if region.startswith("cn-") != bool(match.group("cn")):  # the China partition's, and only they, end .cn
        raise refusal
    return region


@lru_cache(maxsize=1)
def sns_regions() -> frozenset[str]:
    """The regions SNS has in every partition, from the endpoint data botocore ships (read, not fetched)."""
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sns", partition_name=partition)
    )


def check_sns_url(url: str, *, what: str, pem: bool = False) -> str:
    """Raise unless ``url`` is https on an SNS host (and, for a certificate, a path ending ``.pem``)."""
    sns_region(url, what=what)
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise SnsSignatureError(f"SNS message: {what} {url!r} carries credentials")
    if pem and _PEM_PATH_RE.fullmatch(parts.path) is None:
        raise SnsSignatureError(f"SNS message: {what} {url!r} does not name a .pem certificate")
    if not url.isascii() or any(ch in url for ch in " \t\r\n\\"):
        raise SnsSignatureError(f"SNS message: {what} {url!r} holds characters no URL of SNS has")
    return url


class CertificateSource(Protocol):
    """Where certificates come from: ``source(url) -> x509.Certificate`` (raise SnsSignatureError)."""

    def __call__(self, url: str) -> x509.Certificate: ...


def load_pem_certificate(pem: bytes, url: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SnsSignatureError(f"SNS message: {url} is not a PEM certificate") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # the checked URL or nothing: a redirect would lead off the SNS host


def _get_sns(url: str, *, what: str, timeout: float, limit: int) -> bytes:
    """GET an https URL on an SNS host (checked again here: no caller can skip it) over TLS verified
    against the system's trust store, following no redirect."""
    check_sns_url(url, what=what, pem=what == "SigningCertURL")
    tls = urllib.request.HTTPSHandler(context=ssl.create_default_context())
    opener = urllib.request.build_opener(tls, _NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as response:
            if response.status != 200:
                raise SnsSignatureError(f"SNS message: {url} answered HTTP {response.status}")
            return bytes(response.read(limit))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, TLS, timeouts, odd URLs
        raise SnsSignatureError(f"SNS message: cannot fetch {url!r}: {exc}") from None


def fetch_certificate_https(url: str, *, timeout: float = 10.0) -> bytes:
    """Download a certificate (production only)."""
    return _get_sns(url, what="SigningCertURL", timeout=timeout, limit=64 * 1024)


def confirm_subscription(url: str, *, timeout: float = 10.0) -> None:
    """Confirm a verified SubscriptionConfirmation by visiting its SubscribeURL (an SNS host only)."""
    _get_sns(url, what="SubscribeURL", timeout=timeout, limit=64 * 1024)


class CachedCertificates:
    """A CertificateSource over a ``url -> PEM bytes`` fetcher, keeping the last few certificates.

    AWS rotates its signing certificate rarely, so a handful of entries serve every message. A URL whose
    fetch failed is not tried again for ``retry_after`` seconds: a stream of forged messages naming new
    URLs costs one fetch each, not one per message. ``held`` answers without any I/O, for callers that
    must not wait (an event loop): they fetch elsewhere what it does not hold.
    """

    def __init__(
        self,
        fetch: Callable[[str], bytes] = fetch_certificate_https,
        *,
        size: int = 8,
        retry_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._size = size
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._failed: OrderedDict[str, tuple[float, SnsSignatureError]] = OrderedDict()
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self.fetches = 0

    def held(self, url: str) -> x509.Certificate | None:
        """``url``'s certificate as far as it is known without I/O: the certificate when cached; the
        SnsSignatureError of a fetch that failed less than ``retry_after`` ago, raised; None when it
        must be fetched (never seen, or its failure is older: it is tried again)."""
        with self._lock:
            cert = self._cache.get(url)
            if cert is not None:
                self._cache.move_to_end(url)
                return cert
            failed = self._failed.get(url)
            if failed is not None and self._clock() - failed[0] < self._retry_after:
                raise failed[1]
        return None

    def __call__(self, url: str) -> x509.Certificate:
        check_sns_url(url, what="SigningCertURL", pem=True)
        cert = self.held(url)
        if cert is not None:
            return cert
        try:
            cert = load_pem_certificate(self._fetch(url), url)
        except SnsSignatureError as exc:
            with self._lock:
                self._failed[url] = (self._clock(), exc)
                while len(self._failed) > 64:
                    self._failed.popitem(last=False)
            raise
        with self._lock:
            self.fetches += 1
            self._cache[url] = cert
            self._failed.pop(url, None)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return cert


class CertificateDirectory:
    """Fetcher reading ``<directory>/<last path segment of the URL>`` (pinned certificates, tests)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __call__(self, url: str) -> bytes:
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        path = self.directory / name
        try:
            return path.read_bytes()
        except (OSError, ValueError):  # no such file, or a name no file system takes
            raise SnsSignatureError(f"SNS message: no certificate {name} in {self.directory}") from None
