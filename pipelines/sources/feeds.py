"""RSS/Atom feeds: feed lists, fetching, parsing into NewsItems, and the poll schedule.

Fetching and parsing are separate steps with a plain record between them (`FetchResult`), so each is
tested on its own: `FeedFetcher` is the only code here that does I/O; `parse_feed`, `next_poll`,
`html_to_text` and the feed-list parsers are pure. Nothing here reads the wall clock to make a
decision: the fetcher stamps results with an injected clock and `next_poll` is handed ``now``.
"""

from __future__ import annotations

import calendar
import random
import re
import time
import xml.parsers.expat
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import feedparser
import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines import __version__
from pipelines.model import NewsItem, stable_id, to_utc

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "MAX_MIN_INTERVAL",
    "MAX_RETRY_AFTER",
    "USER_AGENT",
    "FeedConfig",
    "FeedError",
    "FeedFetcher",
    "FeedHealth",
    "FeedListError",
    "FeedState",
    "FeedUrlError",
    "FetchOutcome",
    "FetchResult",
    "Outcome",
    "ParsedFeed",
    "PollStatus",
    "cache_max_age",
    "check_feed_url",
    "derive_feed_id",
    "entry_to_item",
    "host_key",
    "html_to_text",
    "next_poll",
    "parse_feed",
    "parse_feed_list",
    "parse_retry_after",
    "read_feed_list",
]

USER_AGENT = f"newsmon/{__version__} (+https://github.com/newsmon/newsmon)"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
# The read timeout bounds each socket read; a server trickling a byte every few seconds would never
# trip it, so a whole fetch (redirects and body included) also has a deadline.
DEFAULT_TOTAL_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_INTERVAL = 900.0
DEFAULT_MAX_BACKOFF = 3600.0
# Publisher hints are honoured, within reason: a bogus <ttl> or Retry-After must not silence a feed
# for weeks.
MAX_MIN_INTERVAL = 24 * 3600.0
MAX_RETRY_AFTER = 24 * 3600.0

FetchOutcome = Literal[
    "ok", "not_modified", "http_error", "timeout", "connection_error", "too_large", "redirect_error", "refused"
]
# A poll's outcome: the fetch outcome, or parse_error when an ok fetch did not yield a feed.
Outcome = Literal[
    "ok",
    "not_modified",
    "http_error",
    "timeout",
    "connection_error",
    "too_large",
    "redirect_error",
    "refused",
    "parse_error",
]
_SUCCESS: frozenset[str] = frozenset({"ok", "not_modified"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


class FeedError(Exception):
    """Base of the feed errors."""


class FeedUrlError(FeedError, ValueError):
    """A feed URL newsmon will not fetch: not http(s), no host, credentials, malformed."""


class FeedListError(FeedError, ValueError):
    """A feed list that cannot be used; the message names the file and line."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- feed configuration ---------------------------------------------------------------------------

_FEED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_feed_url(url: str) -> str:
    """Vet and normalise a feed URL (scheme and host lower-cased, fragment dropped, empty path → ``/``).

    Only http and https are fetched: ``file://`` and friends would let a feed list read local files.
    Credentials are refused because the URL becomes every item's ``source`` and shows up in alerts.
    """
    text = url.strip()
    if not text or any(ch.isspace() for ch in text):
        raise FeedUrlError(f"not a URL: {url!r}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise FeedUrlError(f"not a URL: {url!r} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        what = f"{scheme}://" if scheme else "a URL without a scheme"
        raise FeedUrlError(f"only http:// and https:// feeds are fetched, not {what}: {text!r}")
    if not parts.hostname:
        raise FeedUrlError(f"no host in feed URL {text!r}")
    if parts.username is not None or parts.password is not None:
        raise FeedUrlError(f"credentials in feed URLs are not supported (they would leak into item sources): {text!r}")
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def derive_feed_id(url: str) -> str:
    """A short id that stays the same for the same (normalised) URL."""
    return stable_id("feed", url, length=12)


def host_key(url: str) -> str:
    """What "one site" means for politeness limits: host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


class FeedConfig(_Frozen):
    """One feed to poll. ``id`` is short and stable: it is a metrics label and the state key."""

    url: str
    id: str = Field(default="", description="given, or derived from the URL hash")

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("id") and isinstance(data.get("url"), str):
            data = {**data, "id": derive_feed_id(check_feed_url(data["url"]))}
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_feed_url(value)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _FEED_ID.match(value):
            raise ValueError(f"feed id {value!r} must be 1-64 letters, digits, '.', '_' or '-'")
        return value


# --- feed lists -----------------------------------------------------------------------------------


def read_feed_list(path: str | Path) -> list[FeedConfig]:
    """Read a feed list file: one URL per line (optionally followed by an id), or an OPML export."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FeedListError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_feed_list(data, source=str(path))


def parse_feed_list(data: bytes | str, source: str = "<feed list>") -> list[FeedConfig]:
    """Pure: the content of a feed list → unique feeds, in file order.

    OPML is recognised by content (the first non-blank character is ``<``), not by file name. A URL
    listed twice is kept once; two different URLs with the same id are an error.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") or raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        entries = _opml_entries(raw, source)
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FeedListError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        entries = _line_entries(text, source)
    feeds: list[FeedConfig] = []
    by_url: dict[str, FeedConfig] = {}
    by_id: dict[str, tuple[str, int]] = {}
    for line, url, feed_id in entries:
        try:
            feed = FeedConfig(url=url, id=feed_id or "")
        except ValidationError as exc:
            raise FeedListError(f"{source}:{line}: {_first_error(exc)}") from None
        if feed.url in by_url:
            continue
        if feed.id in by_id:
            other_url, other_line = by_id[feed.id]
            raise FeedListError(
                f"{source}:{line}: feed id {feed.id!r} is already used by {other_url} (line {other_line})"
            )
        by_url[feed.url] = feed
        by_id[feed.id] = (feed.url, line)
        feeds.append(feed)
    if not feeds:
        raise FeedListError(f"{source}: no feed URLs found")
    return feeds


def _first_error(exc: ValidationError) -> str:
    message = str(exc.errors()[0].get("msg", exc))
    return message.removeprefix("Value error, ")


_INLINE_COMMENT = re.compile(r"\s+#.*$")


def _line_entries(text: str, source: str) -> list[tuple[int, str, str | None]]:
    entries: list[tuple[int, str, str | None]] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = _INLINE_COMMENT.sub("", raw_line.strip())
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) > 2:
            raise FeedListError(f"{source}:{number}: expected 'URL [id]', got {len(fields)} fields: {line!r}")
        entries.append((number, fields[0], fields[1] if len(fields) == 2 else None))
    return entries


def _opml_entries(raw: bytes, source: str) -> list[tuple[int, str, str | None]]:
    # expat (not ElementTree) because errors must name a line, and outlines are found at any depth.
    parser = xml.parsers.expat.ParserCreate()
    entries: list[tuple[int, str, str | None]] = []
    roots: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if not roots:
            roots.append(name)
        if name.lower() != "outline":
            return
        url = next((v for k, v in attrs.items() if k.lower() == "xmlurl"), None)
        if url is not None:
            entries.append((parser.CurrentLineNumber, url, None))

    parser.StartElementHandler = start
    try:
        parser.Parse(raw, True)
    except xml.parsers.expat.ExpatError as exc:
        raise FeedListError(
            f"{source}:{exc.lineno}: not well-formed OPML: {xml.parsers.expat.errors.messages[exc.code]}"
        ) from None
    if roots and roots[0].lower() != "opml":
        raise FeedListError(f"{source}:1: an XML feed list must be OPML, found a <{roots[0]}> document")
    return entries


# --- fetching -------------------------------------------------------------------------------------


class FetchResult(_Frozen):
    """What one fetch of a feed URL came to. ``body`` is set only for ``ok``."""

    feed_url: str
    final_url: str | None = Field(default=None, description="the URL answered after redirects")
    outcome: FetchOutcome
    http_status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="final response headers, lower-case keys")
    etag: str | None = None
    last_modified: str | None = None
    retry_after_seconds: float | None = None
    fetched_at: datetime = Field(description="when the fetch ended (UTC, from the injected clock)")
    elapsed_seconds: float = 0.0
    redirects: int = 0
    error: str = ""

    _utc = field_validator("fetched_at")(to_utc)

    def summary(self) -> FetchResult:
        """The same result without the body (what travels on after parsing)."""
        return self.model_copy(update={"body": None})


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from ``now``: delta-seconds or an HTTP-date; None when absent or garbled."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    when_utc = to_utc(when)
    if when_utc is None:
        return None
    return max(0.0, (when_utc - now).total_seconds())


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


def cache_max_age(headers: Mapping[str, str]) -> float | None:
    """Cache-Control max-age in seconds (None when absent, or when the response may not be reused)."""
    value = headers.get("cache-control")
    if not value:
        return None
    if re.search(r"\bno-(?:store|cache)\b", value, re.IGNORECASE):
        return None
    match = _MAX_AGE.search(value)
    return float(match.group(1)) if match else None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FeedFetcher:
    """Fetches feed URLs over one keep-alive ``httpx.Client``; safe to share between threads.

    Every failure is an outcome in the returned `FetchResult`, never an exception: a poller handling
    hundreds of feeds must not stop on one bad site.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        max_connections: int = 32,
        user_agent: str = USER_AGENT,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._total_timeout = total_timeout
        self._clock = clock
        self._monotonic = monotonic
        self._client = httpx.Client(
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            # Redirects are followed by hand: each hop is vetted (scheme) and loops are named as such.
            follow_redirects=False,
            headers={"User-Agent": user_agent, "Accept": _ACCEPT, "Accept-Encoding": "gzip, deflate"},
            transport=transport,
            trust_env=trust_env,
        )

    def __enter__(self) -> FeedFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> FetchResult:
        """GET ``url`` (conditionally, when validators are given) and return what happened."""
        start = self._monotonic()
        deadline = start + self._total_timeout
        redirects = 0
        current = url
        status: int | None = None  # of the latest response, kept when its body then fails

        def result(outcome: FetchOutcome, **fields: Any) -> FetchResult:
            fields.setdefault("final_url", current)
            fields.setdefault("http_status", status)
            return FetchResult(
                feed_url=url,
                outcome=outcome,
                fetched_at=self._clock(),
                elapsed_seconds=max(0.0, self._monotonic() - start),
                redirects=redirects,
                **fields,
            )

        try:
            current = check_feed_url(url)
        except FeedUrlError as exc:
            return result("refused", error=str(exc), final_url=None)
        conditional: dict[str, str] = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        visited = {current}
        try:
            while True:
                with self._client.stream("GET", current, headers=conditional) as response:
                    status = response.status_code
                    if status not in _REDIRECT_STATUSES:
                        return self._finish(response, result, deadline)
                    location = response.headers.get("location")
                    _drain(response)
                if not location:
                    return result("redirect_error", error=f"HTTP {status} without a Location")
                target = urljoin(current, location.strip())
                redirects += 1
                if redirects > self._max_redirects:
                    return result("redirect_error", error=f"more than {self._max_redirects} redirects")
                try:
                    target = check_feed_url(target)
                except FeedUrlError as exc:
                    return result("refused", error=f"redirect refused: {exc}")
                if target in visited:
                    return result("redirect_error", error=f"redirect loop back to {target}")
                if self._monotonic() > deadline:
                    return result("timeout", error=f"fetch took longer than {self._total_timeout:g}s")
                visited.add(target)
                current = target
        except httpx.TimeoutException as exc:
            return result("timeout", error=f"{type(exc).__name__}: {exc}")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return result("refused", error=f"{type(exc).__name__}: {exc}")
        except httpx.RemoteProtocolError as exc:
            # Typically the server closed the connection before the promised Content-Length arrived.
            return result("connection_error", error=f"truncated or malformed response: {exc}")
        except httpx.DecodingError as exc:
            return result("connection_error", error=f"undecodable Content-Encoding: {exc}")
        except httpx.RequestError as exc:
            return result("connection_error", error=f"{type(exc).__name__}: {exc}")

    def _finish(self, response: httpx.Response, result: Callable[..., FetchResult], deadline: float) -> FetchResult:
        headers = {k.lower(): v for k, v in response.headers.items()}
        status = response.status_code
        common: dict[str, Any] = {
            "http_status": status,
            "headers": headers,
            "etag": headers.get("etag"),
            "last_modified": headers.get("last-modified"),
            "retry_after_seconds": parse_retry_after(headers.get("retry-after"), self._clock()),
        }
        if status == 304:
            _drain(response)
            return result("not_modified", **common)
        if not 200 <= status < 300:
            # An error page is not a feed: it is not kept (only drained when small, to reuse the connection).
            _drain(response)
            return result("http_error", error=f"HTTP {status} {response.reason_phrase}".rstrip(), **common)
        declared = headers.get("content-length", "")
        if "content-encoding" not in headers and declared.isdigit() and int(declared) > self._max_bytes:
            return result("too_large", error=f"Content-Length {declared} > limit {self._max_bytes}", **common)
        chunks: list[bytes] = []
        size = 0
        # iter_bytes yields decompressed data, so the cap also stops gzip bombs.
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                return result("too_large", error=f"body larger than {self._max_bytes} bytes", **common)
            if self._monotonic() > deadline:
                return result("timeout", error=f"fetch took longer than {self._total_timeout:g}s", **common)
            chunks.append(chunk)
        return result("ok", body=b"".join(chunks), **common)


_DRAIN_LIMIT = 64 * 1024


def _drain(response: httpx.Response) -> None:
    """Read a small unwanted body so the keep-alive connection can be reused (large ones: hang up)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) <= _DRAIN_LIMIT:
        try:
            for _ in response.iter_raw():
                pass
        except httpx.HTTPError:
            pass  # the status already says what happened; the connection is simply not reused


# --- parsing --------------------------------------------------------------------------------------

# Elements that end a paragraph of text.
# fmt: off
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
})
# fmt: on
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head", "title"})
_CELL_TAGS = frozenset({"td", "th"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._paragraphs: list[str] = []
        self._current: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self._break()
        elif tag == "br":
            self._current.append("\n")
        elif tag in _CELL_TAGS:
            self._current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP_TAGS:  # <script/> opens nothing
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            # Newlines in HTML source are just spaces; only <br> and blocks break lines.
            self._current.append(re.sub(r"\s+", " ", data))

    def _break(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self._current).split("\n"))
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            self._paragraphs.append(paragraph)
        self._current = []

    def text(self) -> str:
        self.close()
        self._break()
        return "\n\n".join(self._paragraphs)


def html_to_text(html: str) -> str:
    """HTML fragment → plain text: tags stripped, entities decoded, script/style dropped.

    Block elements become paragraphs separated by a blank line; ``<br>`` is a line break; other
    whitespace collapses to single spaces.
    """
    extractor = _TextExtractor()
    extractor.feed(html)
    return extractor.text()


def _plain_text(text: str) -> str:
    paragraphs = (" ".join(block.split()) for block in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def _detail_text(value: str, content_type: str | None) -> str:
    if content_type in (None, "text/html", "application/xhtml+xml", "html", "xhtml"):
        return html_to_text(value)
    if content_type.startswith("text/"):
        return _plain_text(value)
    return ""  # base64 or other media: not text we can classify


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _struct_to_utc(value: time.struct_time | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _entry_link(entry: Mapping[str, Any], base: str) -> str | None:
    link = (entry.get("link") or "").strip()
    if not link:
        return None
    absolute = urljoin(base, link)
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


def _entry_body(entry: Mapping[str, Any]) -> str:
    candidates: list[str] = []
    for content in entry.get("content") or []:
        candidates.append(_detail_text(content.get("value") or "", content.get("type")))
    summary = entry.get("summary")
    if summary:
        candidates.append(_detail_text(summary, (entry.get("summary_detail") or {}).get("type")))
    # Feeds put a teaser in one field and the full text in another, in no fixed order: keep the fuller.
    return max(candidates, key=len, default="")


_TITLE_FALLBACK_CHARS = 140


def entry_to_item(entry: Mapping[str, Any], feed: FeedConfig, fetched_at: datetime, base: str) -> NewsItem | None:
    """One feedparser entry → a NewsItem (None for an entry with no title, text or link at all)."""
    guid = (entry.get("id") or "").strip() or None
    link = _entry_link(entry, base)
    title_detail = entry.get("title_detail") or {}
    title = _one_line(_detail_text(entry.get("title") or "", title_detail.get("type")))
    body = _entry_body(entry)
    if not title and body:
        first = body.split("\n", 1)[0]
        title = first if len(first) <= _TITLE_FALLBACK_CHARS else first[:_TITLE_FALLBACK_CHARS].rsplit(" ", 1)[0] + "…"
    if not (title or body or link):
        return None
    published = _struct_to_utc(entry.get("published_parsed") or entry.get("updated_parsed"))
    if guid:
        item_id = stable_id("rss-guid", guid)
    elif link:
        item_id = stable_id("rss-link", link)
    else:
        item_id = stable_id("rss-title", feed.url, title, published.isoformat() if published else "")
    return NewsItem(
        id=item_id,
        source=feed.url,
        source_kind="rss",
        url=link,
        title=title,
        body=body,
        published=published,
        ingested=published or fetched_at,
        guid=guid,
        date_estimated=published is None,
    )


class ParsedFeed(_Frozen):
    """The items of one fetched feed document, or why there are none."""

    feed_id: str
    feed_url: str
    outcome: Literal["ok", "parse_error"]
    title: str = ""
    version: str = Field(default="", description="feedparser's format name, e.g. rss20, atom10, rss10")
    items: list[NewsItem] = Field(default_factory=list)
    skipped_entries: int = Field(default=0, description="entries with no title, text or link")
    bozo: bool = Field(default=False, description="the document was not well-formed (entries may still be kept)")
    error: str = ""
    ttl_seconds: float | None = Field(default=None, description="RSS <ttl>, in seconds")
    max_age_seconds: float | None = Field(default=None, description="Cache-Control max-age of the response")
    min_interval_seconds: float = Field(default=0.0, description="the larger of ttl and max-age: poll no sooner")


# Only these response headers reach feedparser: the body is already decoded (so Content-Encoding
# would lie), and Content-Location would make feedparser rewrite relative guids into URLs.
_FEEDPARSER_HEADERS = ("content-type", "content-language")


def _ttl_seconds(value: Any) -> float | None:
    try:
        minutes = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes * 60.0 if minutes > 0 else None


def parse_feed(result: FetchResult, feed: FeedConfig) -> ParsedFeed:
    """Pure: an ``ok`` fetch → its entries as NewsItems, or a ``parse_error``.

    Ill-formed documents that still yield entries keep them (``bozo`` is set); a document with no
    entries that is ill-formed or not RSS/Atom/RDF at all (an HTML page) is a ``parse_error``.
    """
    if result.outcome != "ok":
        raise ValueError(f"parse_feed needs an ok fetch, got {result.outcome!r}")
    ttl: float | None = None
    max_age = cache_max_age(result.headers)
    base = result.final_url or feed.url

    def done(outcome: Literal["ok", "parse_error"], **fields: Any) -> ParsedFeed:
        candidates = [v for v in (ttl, max_age) if v is not None]
        return ParsedFeed(
            feed_id=feed.id,
            feed_url=feed.url,
            outcome=outcome,
            ttl_seconds=ttl,
            max_age_seconds=max_age,
            min_interval_seconds=max(candidates, default=0.0),
            **fields,
        )

    body = result.body or b""
    if not body.strip():
        return done("parse_error", error="empty body")
    headers = {k: result.headers[k] for k in _FEEDPARSER_HEADERS if k in result.headers}
    parsed = feedparser.parse(body, response_headers=headers, resolve_relative_uris=False, sanitize_html=True)
    bozo = bool(parsed.get("bozo"))
    bozo_text = _bozo_text(parsed) if bozo else ""
    version = parsed.get("version") or ""
    ttl = _ttl_seconds(parsed.feed.get("ttl"))
    title = _one_line(_detail_text(parsed.feed.get("title") or "", (parsed.feed.get("title_detail") or {}).get("type")))
    entries = parsed.get("entries") or []
    if not entries:
        if bozo:
            return done("parse_error", bozo=True, version=version, error=f"not a well-formed feed: {bozo_text}")
        if not version:
            return done("parse_error", error="not an RSS, Atom or RDF feed")
        return done("ok", title=title, version=version)  # a valid feed that is empty right now
    items: list[NewsItem] = []
    skipped = 0
    for entry in entries:
        item = entry_to_item(entry, feed, result.fetched_at, base)
        if item is None:
            skipped += 1
        else:
            items.append(item)
    return done("ok", title=title, version=version, items=items, skipped_entries=skipped, bozo=bozo, error=bozo_text)


def _bozo_text(parsed: Mapping[str, Any]) -> str:
    exc = parsed.get("bozo_exception")
    if exc is None:
        return "ill-formed document"
    return f"{type(exc).__name__}: {exc}"


# --- schedule -------------------------------------------------------------------------------------


class PollStatus(_Frozen):
    outcome: Outcome
    http_status: int | None = None


class FeedState(_Frozen):
    """Everything the scheduler remembers about one feed between polls (JSON-able)."""

    feed_id: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    consecutive_failures: int = 0
    last_success: datetime | None = None
    last_status: PollStatus | None = None
    next_due: datetime
    min_interval_seconds: float = Field(default=0.0, description="ttl/max-age of the last ok response, kept for 304s")

    _utc = field_validator("last_success", "next_due")(to_utc)

    @classmethod
    def initial(cls, feed: FeedConfig, due: datetime) -> FeedState:
        return cls(feed_id=feed.id, url=feed.url, next_due=due)


def next_poll(
    state: FeedState,
    result_outcome: Outcome,
    now: datetime,
    interval: float,
    rng: random.Random,
    retry_after: float | None = None,
    min_interval: float | None = None,
    max_backoff: float = DEFAULT_MAX_BACKOFF,
    *,
    http_status: int | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FeedState:
    """Pure: the state after a poll that ended at ``now`` with ``result_outcome``.

    Success (ok, not_modified): due again after ``max(interval, min_interval)``, where min_interval is
    the publisher's hint (ttl / max-age; for a 304, the larger of its max-age and the remembered ttl).
    Validators are adopted from ok responses only, so a document that failed to parse is fetched again.

    Failure: never give up, back off. The delay is drawn uniformly ("full jitter", so feeds that failed
    together do not retry together) between ``interval`` and ``interval * 2**failures``, capped at
    ``max_backoff``: a failing feed is never polled more often than a healthy one. A Retry-After
    (429/503) is a floor on the delay.
    """
    status = PollStatus(outcome=result_outcome, http_status=http_status)
    if result_outcome in _SUCCESS:
        hint = min(max(min_interval or 0.0, 0.0), MAX_MIN_INTERVAL)
        if result_outcome == "ok":
            remembered = hint
            effective = hint
            new_etag, new_modified = etag, last_modified
        else:
            remembered = state.min_interval_seconds
            effective = max(remembered, hint)
            new_etag, new_modified = etag or state.etag, last_modified or state.last_modified
        return state.model_copy(
            update={
                "etag": new_etag,
                "last_modified": new_modified,
                "consecutive_failures": 0,
                "last_success": now,
                "last_status": status,
                "next_due": now + timedelta(seconds=max(interval, effective)),
                "min_interval_seconds": remembered,
            }
        )
    failures = state.consecutive_failures + 1
    floor = min(interval, max_backoff)
    # 2**failures overflows float past ~1000 failures; the exponent only matters until the cap.
    ceiling = max(floor, min(max_backoff, interval * 2.0 ** min(failures, 60)))
    delay = rng.uniform(floor, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return state.model_copy(
        update={
            "consecutive_failures": failures,
            "last_status": status,
            "next_due": now + timedelta(seconds=delay),
        }
    )


class FeedHealth(_Frozen):
    """One poll of one feed, for health dashboards and feed.down / feed.recovered alerts."""

    feed_id: str
    url: str
    checked_at: datetime
    outcome: Outcome
    http_status: int | None = None
    consecutive_failures: int = 0
    last_success: datetime | None = None
    error: str = ""
    new_entries: int = 0

    _utc = field_validator("checked_at", "last_success")(to_utc)
