"""The one error hierarchy of s3proxy and its mapping to S3 error documents.

Every error the proxy itself raises while serving a request is an :class:`S3ProxyError`; the
HTTP shell turns it into an S3 XML error document with :func:`error_document`. Errors that come
from the upstream are passed to the client unchanged and never go through here.
Messages never contain key material, tokens or plaintext.
"""

from __future__ import annotations

import re


class S3ProxyError(Exception):
    """An error the proxy answers itself, as an S3 error document."""

    status: int = 500
    code: str = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(S3ProxyError):
    status = 400
    code = "InvalidRequest"


class BadRequest(S3ProxyError):
    status = 400
    code = "BadRequest"


class InvalidArgument(S3ProxyError):
    status = 400
    code = "InvalidArgument"


class IncompleteBody(S3ProxyError):
    """The request body ended before (or ran past) its declared length."""

    status = 400
    code = "IncompleteBody"


class RequestTimeout(S3ProxyError):
    """The client stopped sending its request body (idle or overall body timeout)."""

    status = 400
    code = "RequestTimeout"

    def __init__(self) -> None:
        super().__init__(
            "Your socket connection to the server was not read from or written to within the "
            "timeout period. Idle connections will be closed."
        )


class InvalidURI(S3ProxyError):
    status = 400
    code = "InvalidURI"

    def __init__(self) -> None:
        super().__init__("Couldn't parse the specified URI.")


class BadDigest(S3ProxyError):
    status = 400
    code = "BadDigest"


class InvalidDigest(S3ProxyError):
    status = 400
    code = "InvalidDigest"


class MissingContentLength(S3ProxyError):
    status = 411
    code = "MissingContentLength"


class EntityTooLarge(S3ProxyError):
    status = 400
    code = "EntityTooLarge"


class NotImplementedByProxy(S3ProxyError):
    """A request the proxy cannot serve without risking plaintext or corrupt data."""

    status = 501
    code = "NotImplemented"


class AccessDeniedByProxy(S3ProxyError):
    status = 403
    code = "AccessDenied"


class InternalError(S3ProxyError):
    """The proxy could not finish a request for a reason that is neither the client's nor the
    stored data's (the message says which)."""

    status = 500
    code = "InternalError"


class IntegrityError(S3ProxyError):
    """Stored ciphertext failed authentication or does not match its format."""

    status = 500
    code = "InternalError"


class KeyServiceUnavailable(S3ProxyError):
    """Vault could not be reached, timed out, or refused the proxy."""

    status = 503
    code = "ServiceUnavailable"


class UpstreamUnavailable(S3ProxyError):
    """The upstream object store could not be reached."""

    status = 503
    code = "ServiceUnavailable"


class CredentialsUnavailable(S3ProxyError):
    """The proxy has no usable credentials of its own for the upstream."""

    status = 503
    code = "ServiceUnavailable"


class RangeError(S3ProxyError):
    status = 416
    code = "InvalidRange"

    def __init__(self, total: int) -> None:
        super().__init__("The requested range is not satisfiable")
        self.total = total


class InvalidPartNumber(S3ProxyError):
    status = 416
    code = "InvalidPartNumber"


class PreconditionFailed(S3ProxyError):
    status = 412
    code = "PreconditionFailed"

    def __init__(
        self, message: str = "At least one of the pre-conditions you specified did not hold"
    ) -> None:
        super().__init__(message)


class PreconditionChanged(PreconditionFailed):
    """The object changed between two upstream reads of one client request."""


class SlowDown(S3ProxyError):
    """More requests in flight than the proxy is configured to take."""

    status = 503
    code = "SlowDown"

    def __init__(self) -> None:
        super().__init__("Please reduce your request rate.")


class MalformedXML(S3ProxyError):
    status = 400
    code = "MalformedXML"


class InvalidPart(S3ProxyError):
    """A CompleteMultipartUpload names a part that was not uploaded, or with another ETag."""

    status = 400
    code = "InvalidPart"

    def __init__(self, number: int) -> None:
        super().__init__(
            f"One or more of the specified parts could not be found. The part may not have been "
            f"uploaded, or the specified entity tag may not match the part's entity tag "
            f"(part {number})."
        )


class NoSuchUpload(S3ProxyError):
    status = 404
    code = "NoSuchUpload"

    def __init__(self) -> None:
        super().__init__(
            "The specified multipart upload does not exist. The upload ID may be invalid, or "
            "the upload may have been aborted or completed."
        )


class InvalidPartOrder(S3ProxyError):
    status = 400
    code = "InvalidPartOrder"

    def __init__(self) -> None:
        super().__init__(
            "The list of parts was not in ascending order. The parts list must be specified in "
            "order by part number."
        )


class SignatureDoesNotMatch(S3ProxyError):
    """The workload's SigV4 signature (header, query, chunk or trailer) is not what its key
    gives (client authentication only)."""

    status = 403
    code = "SignatureDoesNotMatch"


class InvalidAccessKeyId(S3ProxyError):
    status = 403
    code = "InvalidAccessKeyId"

    def __init__(self) -> None:
        super().__init__("The AWS Access Key Id you provided does not exist in our records.")


class RequestTimeTooSkewed(S3ProxyError):
    status = 403
    code = "RequestTimeTooSkewed"

    def __init__(self) -> None:
        super().__init__(
            "The difference between the request time and the current time is too large."
        )


class AuthorizationHeaderMalformed(S3ProxyError):
    status = 400
    code = "AuthorizationHeaderMalformed"


class AuthorizationQueryParametersError(S3ProxyError):
    status = 400
    code = "AuthorizationQueryParametersError"


class ContentSha256Mismatch(S3ProxyError):
    status = 400
    code = "XAmzContentSHA256Mismatch"

    def __init__(self) -> None:
        super().__init__(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )


class MalformedChunk(InvalidRequest):
    def __init__(self, why: str) -> None:
        super().__init__(f"Malformed aws-chunked request body: {why}.")


# Characters XML 1.0 cannot carry, even escaped (and lone surrogates, from undecodable bytes).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _percent(match: re.Match[str]) -> str:
    char = match.group()
    if 0xDC80 <= ord(char) <= 0xDCFF:  # an undecodable byte kept by surrogateescape
        return f"%{ord(char) - 0xDC00:02X}"
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))


def xml_text(text: str) -> str:
    """Text for an XML element: escaped, and characters XML cannot hold percent-encoded."""
    text = _NOT_XML.sub(_percent, text)
    # (xml.sax.saxutils.escape's three replacements: its import costs the start 16 ms)
    return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def error_document(code: str, message: str, resource: str, request_id: str) -> bytes:
    """An S3 error document, as S3 itself writes it; well-formed whatever the resource holds."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{xml_text(code)}</Code><Message>{xml_text(message)}</Message>"
        f"<Resource>{xml_text(resource)}</Resource><RequestId>{xml_text(request_id)}</RequestId>"
        "</Error>"
    ).encode()
