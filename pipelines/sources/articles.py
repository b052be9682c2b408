"""Pure text handling for replayed article files: decode, unwrap, strip boilerplate, split, date.

A file may hold one article (a headline line, then paragraphs separated by blank lines) or several
articles concatenated as hard-wrapped text with no blank lines (seed 004: POLITICO pieces glued
together). Both shapes come down to a list of paragraphs; article boundaries are then found on
paragraphs: a dateline opening (``LONDON —``), a ``Tag - …`` trailer, or a paragraph that reads
like a fresh lead right after a closing quotation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

__all__ = [
    "Article",
    "BinaryFileError",
    "decode_text",
    "find_published",
    "paragraphs",
    "split_articles",
    "strip_boilerplate",
]


class BinaryFileError(ValueError):
    """The bytes are not text in any encoding worth decoding."""


@dataclass(frozen=True)
class Article:
    title: str
    body: str
    published: datetime | None
    ordinal: int


# --- decoding -------------------------------------------------------------------------------------


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")


def decode_text(data: bytes) -> tuple[str, bool]:
    """Decode file bytes. Returns (text, replaced) where ``replaced`` says invalid UTF-8 was replaced.

    UTF-8 (with or without BOM) is the contract; anything else is decoded with U+FFFD replacement so
    that the readable part of a mis-encoded file still reaches the classifier. Binary data (NUL bytes
    or mostly control characters) is refused.
    """
    head = data[:8192]
    if b"\x00" in head:
        raise BinaryFileError("contains NUL bytes")
    try:
        text = data.decode("utf-8-sig")
        replaced = False
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        replaced = True
    sample = text[:8192]
    if sample:
        control = len(_CONTROL_CHARS.findall(sample))
        bad = sample.count("\ufffd")
        if (control + bad) / len(sample) > 0.10:
            raise BinaryFileError("mostly control or undecodable characters")
    return text, replaced


# --- paragraphs -----------------------------------------------------------------------------------

_DATELINE = re.compile(r"^(?:[A-Z][A-Z’'.,\-]*\s+){0,8}[A-Z][A-Z’'.,\-]*\s+[—–]\s+\S")
_TAG_LINE = re.compile(r"^Tag\s+-\s+\S")
_SENTENCE_END = re.compile(r"[.!?…][”\"’')\]]*$")


def _is_forced_start(line: str) -> bool:
    return bool(_DATELINE.match(line) or _TAG_LINE.match(line))


def _unwrap(lines: list[str]) -> list[str]:
    """Rejoin hard-wrapped lines into paragraphs.

    A line ends a paragraph when the next line's first word would have fitted on it (the wrapper
    would have put it there), or when the next line opens a dateline or tag.
    """
    width = max(len(line) for line in lines)
    out: list[str] = []
    current: list[str] = []
    for i, line in enumerate(lines):
        current.append(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if nxt is None:
            break
        first_word = nxt.split(" ", 1)[0]
        ends = len(line) + 1 + len(first_word) <= width - 1 or _is_forced_start(nxt)
        if ends:
            out.append(" ".join(current))
            current = []
    if current:
        out.append(" ".join(current))
    return out


def _looks_wrapped(lines: list[str]) -> bool:
    if len(lines) < 4:
        return False
    width = max(len(line) for line in lines)
    full = sum(1 for line in lines if len(line) >= width * 0.8)
    return 50 <= width <= 150 and full >= len(lines) * 0.4


def paragraphs(text: str) -> list[str]:
    """Split text into paragraphs: blank-line blocks, unwrapping hard-wrapped blocks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [" ".join(ln.split()) for ln in block.split("\n")]
        lines = [ln for ln in lines if ln]
        if not lines:
            continue
        if _looks_wrapped(lines):
            out.extend(_unwrap(lines))
        else:
            out.extend(lines)
    return out


# --- boilerplate ----------------------------------------------------------------------------------

# Whole paragraphs that are site furniture, not article text.
_BOILERPLATE = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^read more at\b",
        r"^\*{3,}$",
        r"^thank you for registering\b",
        r"^please refresh (the|your) (page|browser)\b",
        r"^stay up to date with notifications\b",
        r"^notifications can be managed\b",
        r"^support [\w ]{2,40}$",
        r"^[\w ]{2,40} spotlight$",
        r"^this (developing )?story (is being|has been|will be) updated\.?$",
        r"^sign up (to|for) (our|the)\b.{0,120}newsletter",
        r"^(subscribe|click here)\b.{0,80}$",
        r"^advertisement$",
    )
]
# Runs of paragraphs: a donation/newsletter blurb from its opening line to its closing line.
_BLURBS = [
    (
        re.compile(r"^your support helps us", re.IGNORECASE),
        re.compile(r"^your support makes all the difference", re.IGNORECASE),
    ),
]
_BLURB_MAX = 8
# Photo credits glued to a caption: "… pressure to do so. | Jessica Lee/EPA"
_CAPTION_CREDIT = re.compile(r"\s\|\s[^|]{2,60}/[^|]{2,40}$")
_FOLD_PAIRS = (("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'), ("—", "-"), ("–", "-"))


def _fingerprint(para: str) -> str:
    for char, repl in _FOLD_PAIRS:
        if char in para:
            para = para.replace(char, repl)
    return " ".join(para.split()).lower()


def strip_boilerplate(paras: list[str]) -> list[str]:
    """Drop site furniture, donation blurbs, credited photo captions and verbatim repeats."""
    kept: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(paras):
        para = paras[i]
        blurb_end = _blurb_end(paras, i)
        if blurb_end is not None:
            i = blurb_end + 1
            continue
        i += 1
        if any(p.search(para) for p in _BOILERPLATE) or _CAPTION_CREDIT.search(para):
            continue
        fp = _fingerprint(para)
        # Captions repeat the text verbatim (seed 001 has each twice): keep the first copy only.
        # Short lines (section headings, bylines) may legitimately repeat.
        if len(fp) > 60 and fp in seen:
            continue
        seen.add(fp)
        kept.append(para)
    return kept


def _blurb_end(paras: list[str], start: int) -> int | None:
    for opening, closing in _BLURBS:
        if opening.search(paras[start]):
            for j in range(start, min(start + _BLURB_MAX, len(paras))):
                if closing.search(paras[j]):
                    return j
            return start
    return None


# --- dates ----------------------------------------------------------------------------------------

_MONTHS = {
    m: i
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for m in names
}
_ZONES = {
    "utc": 0,
    "gmt": 0,
    "z": 0,
    "bst": 1,
    "cet": 1,
    "cest": 2,
    "est": -5,
    "edt": -4,
    "cst": -6,
    "cdt": -5,
    "pst": -8,
    "pdt": -7,
    "hkt": 8,
    "jst": 9,
}
_MONTH_RE = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_TIME_RE = (
    r"(?:[\s,]+(?:at\s+)?(?P<h>\d{1,2})[:.](?P<mi>\d{2})(?:\s*(?P<ampm>[ap]\.?m\.?))?"
    r"(?:\s+(?P<tz>[A-Za-z]{1,4})\b)?)?"
)
_DATE_PATTERNS = [
    # Published: January 29, 2026 10:57pm
    re.compile(r"\b" + _MONTH_RE + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,\s*(?P<y>\d{4})" + _TIME_RE, re.IGNORECASE),
    # Thursday 17 October 2024 14:16 BST
    re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH_RE + r",?\s+(?P<y>\d{4})" + _TIME_RE, re.IGNORECASE),
    # 2024-10-17T14:16:00Z / 2024-10-17 14:16
    re.compile(
        r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
        r"(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::\d{2})?(?P<tz>Z|[+-]\d{2}:?\d{2})?)?\b"
    ),
]
# Only short paragraphs near the top are dateline/byline material; body sentences mention dates too.
_DATE_PARA_MAX = 120
_DATE_SEARCH_PARAS = 12


def _parse_date(match: re.Match[str]) -> datetime | None:
    g = match.groupdict()
    try:
        month = int(g["m"]) if g.get("m") else _MONTHS[g["mon"].lower().rstrip(".")]
        hour = int(g["h"]) if g.get("h") else 0
        minute = int(g["mi"]) if g.get("mi") else 0
        ampm = (g.get("ampm") or "").replace(".", "").lower()
        if ampm == "pm" and hour < 12:
            hour += 12
        elif ampm == "am" and hour == 12:
            hour = 0
        offset = timedelta(0)
        tz = g.get("tz")
        if tz:
            if tz[0] in "+-":
                sign = 1 if tz[0] == "+" else -1
                digits = tz[1:].replace(":", "")
                offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            elif tz.lower() in _ZONES:
                offset = timedelta(hours=_ZONES[tz.lower()])
        local = datetime(int(g["y"]), month, int(g["d"]), hour, minute, tzinfo=timezone(offset))
    except (KeyError, ValueError):
        return None
    return local.astimezone(UTC)


def find_published(paras: list[str]) -> tuple[datetime | None, int | None]:
    """Find a publication date in the first short paragraphs. Returns (UTC datetime, paragraph index).

    Times without a zone are taken as UTC (documented in the README).
    """
    for idx, para in enumerate(paras[:_DATE_SEARCH_PARAS]):
        if len(para) > _DATE_PARA_MAX:
            continue
        for pattern in _DATE_PATTERNS:
            m = pattern.search(para)
            if m:
                parsed = _parse_date(m)
                if parsed is not None:
                    return parsed, idx
    return None, None


# --- articles -------------------------------------------------------------------------------------

# A fresh lead with no dateline: "The U.K. and China have announced a new …" right after an article
# closed on a quotation. Both conditions are needed; a lead-like sentence inside a story is common.
_FRESH_LEAD = re.compile(
    r"^(?:The\s+)?[A-Z][\w.’'-]*(?:\s+(?:and|&)\s+(?:the\s+)?[A-Z][\w.’'-]*)?\s+"
    r"(?:have|has)\s+(?:announced|unveiled|launched|signed|agreed|published|revealed)\b"
)
_CLOSING_QUOTE = re.compile(r"[.!?,]?[”\"]$|[”\"][.!?]$")
_MIN_ARTICLE_PARAS = 6
_TITLE_MAX = 140


def _is_headline(para: str) -> bool:
    return len(para) <= 200 and len(para.split()) <= 30 and not _SENTENCE_END.search(para) and not _DATELINE.match(para)


_SENTENCE_BREAK = re.compile(r"[.!?][”\"’']?\s+(?=[“\"‘']?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:(?:[A-Za-z]\.)*[A-Za-z]|Mr|Mrs|Ms|Dr|St|No|Gen|Gov|Sen|Rep|Lt|Col|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)$"
)


def _first_sentence(text: str) -> str:
    text = _DATELINE_PREFIX.sub("", text, count=1)
    sentence = text
    for m in _SENTENCE_BREAK.finditer(text):
        if not _ABBREVIATION.search(text[: m.start()]):
            sentence = text[: m.start() + 1]
            break
    sentence = sentence.strip()
    if len(sentence) <= _TITLE_MAX:
        return sentence.rstrip(".")
    cut = sentence[:_TITLE_MAX].rsplit(" ", 1)[0]
    return cut.rstrip(",;:—– ") + "…"


_DATELINE_PREFIX = re.compile(r"^(?:[A-Z][A-Z’'.,\-]*\s+){0,8}[A-Z][A-Z’'.,\-]*\s+[—–]\s+")


def _boundaries(paras: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for para in paras:
        current = groups[-1]
        if _TAG_LINE.match(para):
            groups.append([])  # the tag closes the article; it is not text
            continue
        fresh = len(current) >= _MIN_ARTICLE_PARAS and _FRESH_LEAD.match(para) and _CLOSING_QUOTE.search(current[-1])
        if current and (_DATELINE.match(para) or fresh):
            groups.append([para])
        else:
            current.append(para)
    return [g for g in groups if g]


def split_articles(text: str) -> list[Article]:
    """Split a decoded file into articles with title, plain-text body and publication date."""
    paras = strip_boilerplate(paragraphs(text))
    articles: list[Article] = []
    for group in _boundaries(paras):
        published, date_idx = find_published(group)
        if date_idx is not None:
            group = group[:date_idx] + group[date_idx + 1 :]
        if not group:
            continue
        if len(group) > 1 and _is_headline(group[0]):
            title, body_paras = group[0], group[1:]
        else:
            title, body_paras = _first_sentence(group[0]), group
        articles.append(Article(title=title, body="\n\n".join(body_paras), published=published, ordinal=len(articles)))
    return articles
