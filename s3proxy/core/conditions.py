"""Conditional requests (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since) as S3
evaluates them for GetObject and HeadObject. Pure: headers, the object's ETag and modification
time in; the status to answer out.

The proxy evaluates them itself because the ETag a client holds is the plaintext's, which the
upstream never saw. S3's precedence (RFC 9110 §13.2.2): If-Match decides before
If-Unmodified-Since, and If-None-Match before If-Modified-Since; a failed If-Match or
If-Unmodified-Since is 412, a matched If-None-Match or an unmodified If-Modified-Since is 304.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from s3proxy.core.etags import same_etag

CONDITION_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


def _get(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def etag_matches(condition: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match value (a list, or ``*``) names ``etag``."""
    for candidate in condition.split(","):
        candidate = candidate.strip()
        if candidate == "*" or (candidate and same_etag(candidate.removeprefix("W/"), etag)):
            return True
    return False


def _date(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def evaluate(
    headers: Mapping[str, str], etag: str, last_modified: dt.datetime | None
) -> int | None:
    """``None`` to serve the object, else 412 or 304."""
    if_match = _get(headers, "if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            return 412
    else:
        since = _date(_get(headers, "if-unmodified-since"))
        if since is not None and last_modified is not None and last_modified > since:
            return 412
    if_none_match = _get(headers, "if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            return 304
    else:
        since = _date(_get(headers, "if-modified-since"))
        if since is not None and last_modified is not None and last_modified <= since:
            return 304
    return None


def range_applies(if_range: str | None, etag: str, last_modified: dt.datetime | None) -> bool:
    """Whether a Range is honoured under ``If-Range`` (RFC 9110 §13.1.5): the validator must be
    the current (strong) ETag or exactly the Last-Modified date; if not, the whole object is
    served with 200."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith("W/"):
        return False  # a weak validator never matches
    date = None if value.startswith('"') else _date(value)
    if date is None:
        return same_etag(value, etag)
    return last_modified is not None and last_modified == date
