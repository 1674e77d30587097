"""Checks a driver makes before Ray starts, so that a wrong place fails in seconds.

Without them an OUTPUT under a regular file let every image be denoised before the
final write failed with a traceback, and an unreachable S3 endpoint printed a
142-line botocore traceback after 24 s of retries. Each check returns one line for
the user, or None.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from denoise_core import storage

PROBE_TIMEOUT_S = 5.0
# botocore / aiohttp exception names and what they mean to a user.
_UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ProxyConnectionError",
}
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AccessDenied",
    "Forbidden",
    "403",
}


def check_output_place(uri: str, name: str = "OUTPUT") -> str | None:
    """A local ``uri`` must be a folder, or creatable: its nearest existing ancestor a
    writable folder. Remote prefixes are left to :func:`check_remote_reachable`."""
    if storage.is_remote(uri) or "::" in uri:
        return None
    path = os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{name} {uri} is a file, not a folder"
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"{name} {uri} lies under {probe}, which is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{name} {uri} cannot be written: {probe} is not writable"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"


def storage_error_line(exc: BaseException, uri: str | None = None) -> str | None:
    """One line for a storage failure the user can act on (endpoint unreachable,
    credentials missing or refused, access denied); None for anything else."""
    for_uri = f" for {uri}" if uri else ""
    chain = _chain(exc)
    for err in chain:
        name = type(err).__name__
        if name in _UNREACHABLE:
            return (
                f"cannot reach the S3 endpoint {_endpoint()}{for_uri}: {err} "
                "(check AWS_ENDPOINT_URL and the network)"
            )
        if name in _NO_CREDENTIALS:
            return (
                f"no usable AWS credentials{for_uri}: {err} (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            )
    codes = [
        str(err.response.get("Error", {}).get("Code", ""))
        for err in chain
        if isinstance(getattr(err, "response", None), dict)
    ]
    refused = [c for c in codes if c in _BAD_CREDENTIALS]
    denied = [err for err in chain if isinstance(err, PermissionError)]
    if refused or denied:
        detail = refused[0] if refused else str(denied[0])
        return (
            f"S3 refused access{' to ' + uri if uri else ''} ({detail}): check the AWS "
            "credentials and the bucket's permissions"
        )
    return None


def check_remote_reachable(
    uris: Iterable[str | None], timeout: float = PROBE_TIMEOUT_S
) -> str | None:
    """One small S3 request per bucket, with a short timeout and no retry storm, so
    that an unreachable endpoint or refused credentials fail here in seconds."""
    seen: set[str] = set()
    for uri in uris:
        if not uri or not uri.startswith("s3://") or "::" in uri:
            continue
        bucket, _, key = uri[len("s3://") :].partition("/")
        if bucket in seen:
            continue
        seen.add(bucket)
        import fsspec

        fs = fsspec.filesystem(
            "s3",
            skip_instance_cache=True,
            config_kwargs={
                "connect_timeout": timeout,
                "read_timeout": 2 * timeout,
                "retries": {"max_attempts": 2, "mode": "standard"},
            },
        )
        fs.retries = 1  # s3fs's own retry loop, on top of botocore's
        try:
            fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key, MaxKeys=1)
        except FileNotFoundError:  # no such bucket: the endpoint answered
            continue
        except Exception as exc:
            return storage_error_line(exc, uri) or f"cannot list {uri}: {type(exc).__name__}: {exc}"
    return None
