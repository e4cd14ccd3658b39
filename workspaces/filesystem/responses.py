"""HTTP responses that stream a file or a tar archive: the REST API and the web UI send the same."""

from __future__ import annotations

import posixpath

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

from workspaces.filesystem.results import ArchiveDownload, FileStream


def file_response(stream: FileStream, *, attachment: bool = False) -> StreamingHttpResponse:
    """The bytes of a file (or a range of it) with their length, the file's ETag and size;
    ``attachment`` makes browsers save it under its name."""
    response = StreamingHttpResponse(
        stream.chunks(), content_type=stream.mime_type or "application/octet-stream"
    )
    response["Content-Length"] = str(stream.length)
    response["ETag"] = f'"{stream.etag}"'
    response["X-File-Size"] = str(stream.size)
    if attachment:
        response["Content-Disposition"] = content_disposition_header(
            True, posixpath.basename(stream.path)
        )
    return response


def archive_response(download: ArchiveDownload) -> StreamingHttpResponse:
    response = StreamingHttpResponse(download.chunks(), content_type="application/x-tar")
    response["Content-Disposition"] = content_disposition_header(True, download.filename)
    return response
