"""Which upload form the store takes, learned with uploads it must refuse (docs/design.md,
Checksums toward the store).

1. A tiny trailer-checksum PUT whose trailer is wrong. A store that verifies trailers refuses it
   with ``BadDigest`` (or MinIO's ``XAmzContentChecksumMismatch``) and stores nothing: TRAILER.
   A store that takes it without verifying (moto) stores it: TRAILER as well (nothing better is
   verified there) if it stored the decoded 26 bytes (a HEAD says), and the probe object is
   deleted again.
2. Any other refusal (Ceph RGW 16: ``XAmzContentSHA256Mismatch``): two signed aws-chunked PUTs
   with ``If-Match: *`` (the probe key never exists), the first with a wrong chunk signature,
   the second right. They differ only in that signature, so a store that refuses the first and
   lets the second through to its condition (412, nothing stored; RGW reads and checks the body
   first) verifies chunk signatures: SIGNED.
3. Anything else refused, or stored (deleted again): PLAIN.

An answer that says nothing about the form (5xx, 403 AccessDenied, 404 NoSuchBucket, no
connection) decides nothing: the caller uploads without a checksum this time and asks again
later.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable

from s3proxy.core.checksums import new_hasher
from s3proxy.core.request import Target
from s3proxy.core.trailing import trailer
from s3proxy.upstream.client import Signing, Upstream
from s3proxy.upstream.forms import Choice, Form, StreamForm, stream_form

log = logging.getLogger("s3proxy")

PROBE_BODY = b"s3proxy upload form probe\n"
_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
_ANSWER_LIMIT = 64 * 1024
CHECKSUM_REFUSALS = frozenset({"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest"})
MAX_KEY_BYTES = 1024
ABOUT_THE_TARGET = frozenset({"InvalidBucketName", "KeyTooLongError", "NoSuchBucket"})
NOT_ABOUT_THE_BODY = ABOUT_THE_TARGET | {
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "RequestTimeTooSkewed",
    "SlowDown",
}


class Inconclusive(Exception):
    """The store's answer says nothing about the form; ``soon``: it was about the upload's
    bucket or key (the next upload may ask again at once), not the store or the proxy's
    access (then wait)."""

    def __init__(self, said: str, soon: bool = False) -> None:
        super().__init__(said)
        self.soon = soon


def probe_target(target: Target) -> Target:
    """A key beside the upload's (so a policy that lets the proxy write it lets it write this),
    that no object has."""
    suffix = f".s3proxy-probe-{uuid.uuid4().hex}"
    key = (target.key or "").encode()[: MAX_KEY_BYTES - len(suffix)].decode(errors="ignore")
    return Target(target.bucket, key + suffix, ())


async def _send(
    upstream: Upstream, target: Target, form: StreamForm, framed: Callable[[], bytes]
) -> str:
    """PUT the body ``framed()`` gives (framed once the request is signed) in ``form``; the
    answer's status and S3 error code, as ``"200"`` or ``"400 BadDigest"``. A stored probe
    object is deleted again."""

    async def body() -> AsyncIterator[bytes]:
        yield framed()

    length = form.framing.length
    resp = await upstream.send(
        "PUT", target, form.headers, body(), length, form.payload, form.on_signed
    )
    async with resp:
        answer = await resp.content.read(_ANSWER_LIMIT)
        version = resp.headers.get("x-amz-version-id")
    if resp.status < 300:
        return await _stored(upstream, target, version, resp.status)
    found = _CODE.search(answer)
    code = found.group(1).decode() if found else ""
    said = f"{resp.status} {code}".strip()
    if not _about_the_body(resp.status, code):
        raise Inconclusive(said, soon=code in ABOUT_THE_TARGET)
    return said


async def _stored(upstream: Upstream, target: Target, version: str | None, status: int) -> str:
    """A probe the store took: ``"200"`` if it stored the decoded body (a store that does not
    decode aws-chunked keeps the framing: ``"200 stored 153 bytes"``); deleted again."""
    query = (("versionId", version),) if version and version != "null" else ()
    stored = Target(target.bucket, target.key, query)
    head = await upstream.send("HEAD", stored, [])
    head.release()
    size = head.headers.get("Content-Length", "")
    removed = await upstream.send("DELETE", stored, [])
    removed.release()
    if removed.status >= 300:  # e.g. a default Object Lock retention
        log.warning(
            "the upload form probe stored %s and could not delete it (HTTP %d)",
            target.resource,
            removed.status,
        )
    if head.status == 200 and size != str(len(PROBE_BODY)):
        return f"{status} stored {size} bytes"
    return str(status)


def _about_the_body(status: int, code: str) -> bool:
    """Whether a refusal can be about the body's form (a wrong trailer or chunk signature, a
    payload type not taken, the probe's condition), not about the bucket, the key or the
    proxy's access."""
    if code in NOT_ABOUT_THE_BODY:
        return False
    if status == 403:
        return code == "SignatureDoesNotMatch"
    if status == 404:  # If-Match on a missing key, as S3 and moto answer it
        return code == "NoSuchKey"
    return status in (400, 411, 412, 501)


async def _wrong_trailer(upstream: Upstream, target: Target, algorithm: str) -> str:
    form = stream_form(Choice(Form.TRAILER, algorithm), [], len(PROBE_BODY))
    digest_size = len(new_hasher(algorithm).digest())

    def framed() -> bytes:  # PROBE_BODY's checksum is not all zeros
        return bytes(form.framing.frame(PROBE_BODY)) + trailer(algorithm, bytes(digest_size))

    return await _send(upstream, target, form, framed)


async def _signed_chunks(upstream: Upstream, target: Target, *, wrong: bool) -> str:
    """A signed aws-chunked PUT with ``If-Match: *`` (no probe object exists), its chunk
    signature wrong or right."""
    form = stream_form(Choice(Form.SIGNED), [("If-Match", "*")], len(PROBE_BODY))
    seed = form.on_signed
    if seed is None:
        raise RuntimeError("a signed-chunks form without a seed")

    def wrongly_seeded(signing: Signing) -> None:
        seed(Signing(signing.signature, signing.timestamp, signing.scope, lambda _: "0" * 64))

    if wrong:
        form.on_signed = wrongly_seeded

    def framed() -> bytes:
        return bytes(form.framing.frame(PROBE_BODY)) + form.framing.finish()

    return await _send(upstream, target, form, framed)


def _taken(answer: str) -> bool:
    """Whether the store took a probe's body and stored it as sent."""
    return answer.isdigit() and answer.startswith("2")


def _passed(answer: str) -> bool:
    """Whether a probe got past the body checks: stored, or refused only for its condition."""
    return _taken(answer) or answer in ("412 PreconditionFailed", "404 NoSuchKey")


async def learn(upstream: Upstream, target: Target, algorithm: str) -> Choice:
    """The form the store takes, probed next to ``target``; raises :class:`Inconclusive`."""
    probe = probe_target(target)
    first = await _wrong_trailer(upstream, probe, algorithm)
    if _taken(first) or first.split(" ")[-1] in CHECKSUM_REFUSALS:
        choice = Choice(Form.TRAILER, algorithm)
    else:
        wrong = await _signed_chunks(upstream, probe, wrong=True)
        right = await _signed_chunks(upstream, probe, wrong=False)
        signed = _passed(right) and not _passed(wrong)
        choice = Choice(Form.SIGNED) if signed else Choice(Form.PLAIN)
        first = f"{first}; signed chunks, a wrong signature: {wrong}, right: {right}"
    log.info(
        "upstream %s takes uploads with %s (a wrong trailer checksum: %s)",
        upstream.endpoint,
        choice.describe(),
        first,
    )
    return choice
