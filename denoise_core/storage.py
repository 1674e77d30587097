"""One storage layer for local folders, ``s3://`` prefixes and members of zip files.

Every URI the CLI accepts goes through here, so the jobs never care where bytes live.
fsspec does the work: ``s3://`` maps to s3fs (which honours the standard AWS
environment, ``AWS_ENDPOINT_URL`` included) and ``zip://member::/path/to/file.zip``
reads a zip member on any filesystem.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator

import fsspec
import pyarrow.fs as pafs
from fsspec.core import url_to_fs

# Lower case; listings compare lowercased keys, so IMG_0001.HEIC is an image too.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif")
IMAGE_EXTENSIONS += (".avif",)  # decoded by OpenCV (libavif), see denoise_core.codecs


def is_image_key(key: str) -> bool:
    """Whether a listed key names an image (by its extension, any case)."""
    return key.lower().endswith(IMAGE_EXTENSIONS)


def is_hidden_key(key: str) -> bool:
    """Whether a key lies in or is a hidden file or folder (``.name``) or a macOS zip's
    ``__MACOSX`` resource folder: never an input, whatever its extension."""
    return any(part.startswith(".") or part == "__MACOSX" for part in key.split("/"))


def is_input_image(key: str) -> bool:
    """The rule every listing (ingest's layouts, ``denoise run``'s plan) applies to keys:
    an image that is not hidden."""
    return is_image_key(key) and not is_hidden_key(key)


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than a plain local path."""
    return "://" in uri and not uri.startswith("file://")


def absolute(uri: str) -> str:
    """Local paths made absolute (Ray workers run in their own directories); URIs unchanged."""
    if "://" in uri:  # s3://, zip://, file://: already absolute or not a local path
        return uri
    return os.path.abspath(os.path.expanduser(uri))


def _location_forms(uri: str) -> tuple[str, list[str]]:
    """(filesystem, the paths ``uri`` may really name) for comparing places.

    Local paths are resolved (``~``, ``..``, symbolic links). A zip member is the
    archive's place. Remote paths are ``bucket/key`` with empty and ``.`` segments
    dropped, once literally and once with ``..`` applied: S3 keeps ``..`` as
    characters, but some clients collapse it, so both count.
    """
    if "::" in uri:  # zip://member::archive: the archive is what lives somewhere
        uri = uri.rsplit("::", 1)[1]
    uri = uri.removeprefix("file://")
    if "://" not in uri:
        return "local", [os.path.realpath(os.path.expanduser(uri))]
    scheme, rest = uri.split("://", 1)
    literal = "/".join(p for p in rest.split("/") if p not in ("", "."))
    return scheme, list(dict.fromkeys([literal, posixpath.normpath("/" + literal).lstrip("/")]))


def location(uri: str) -> tuple[str, str]:
    """Where ``uri`` really is: ("local", its resolved path) or (scheme, "bucket/key")."""
    fs, forms = _location_forms(uri)
    return fs, forms[0]


def _local_key(parent: str, child: str) -> str | None:
    """``child`` relative to ``parent`` (both resolved): by name, or by file identity for
    bind mounts and case-insensitive disks; None when it is not inside."""
    try:
        target = os.stat(parent)
    except OSError:
        target = None
    node = child
    while True:
        same = node == parent
        if not same and target is not None:
            try:
                same = os.path.samestat(os.stat(node), target)
            except OSError:
                pass
        if same:
            rel = os.path.relpath(child, node)
            return "" if rel == "." else rel.replace(os.sep, "/")
        up = os.path.dirname(node)
        if up == node:
            return None
        node = up


def relative_location(parent: str, child: str) -> str | None:
    """Key of ``child`` under ``parent`` once both are resolved ("" for the same place),
    None when ``child`` is not inside ``parent``. Why: path strings lie (symbolic links,
    ``..``, trailing or doubled slashes), and a wrong answer deletes or overwrites data."""
    p_fs, p_forms = _location_forms(parent)
    c_fs, c_forms = _location_forms(child)
    if p_fs != c_fs:
        return None
    if p_fs == "local":
        return _local_key(p_forms[0], c_forms[0])
    for p in p_forms:
        for c in c_forms:
            if c == p:
                return ""
            if c.startswith(p + "/"):
                return c[len(p) + 1 :]
    return None


def path_relation(a: str, b: str) -> str | None:
    """How place ``a`` relates to ``b``: "same", "inside" (``a`` lies in ``b``),
    "contains" (``b`` lies in ``a``) or None (separate)."""
    key = relative_location(b, a)
    if key is not None:
        return "same" if key == "" else "inside"
    return "contains" if relative_location(a, b) is not None else None


def open_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem behind ``uri`` and the path inside it."""
    fs, path = url_to_fs(uri)
    return fs, path


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI (local or remote) with forward slashes."""
    if is_remote(uri):
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def relative_key(root: str, path: str) -> str:
    """``path`` relative to ``root`` with forward slashes (the key users see)."""
    root_path = open_fs(root)[1].rstrip("/")
    if path.startswith(root_path + "/"):
        return path[len(root_path) + 1 :]
    return posixpath.basename(path)


def protocol_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Turn an (fs, path) pair back into a URI that :func:`open_fs` understands."""
    return fs.unstrip_protocol(path) if is_remote_fs(fs) else path


def is_remote_fs(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return not any(p in ("file", "local") for p in protocols)


def read_bytes(uri: str) -> bytes:
    """Whole object as bytes (zip members via ``zip://member::archive``).

    A plain object is one ``cat_file``, a single GET on S3 (opening it as a file, or
    s3fs's parallel ranged read, first sends a HEAD for its size).
    """
    if "::" in uri:  # chained URL (zip member): needs fsspec.open
        with fsspec.open(uri, "rb") as f:
            return f.read()
    fs, path = open_fs(uri)
    if "s3" in (fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)):
        # s3fs sizes the object first (a HEAD) to split big ones into parallel ranges.
        return fs.cat_file(path, max_concurrency=1)
    return fs.cat_file(path)


# Remote parents already made by this process: on S3 each makedirs is a HEAD request,
# and bulk writes put thousands of objects under the same few prefixes.
_MADE_PARENTS: set[tuple[str, str]] = set()


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write so that no reader ever sees a half-written object under its final name.

    S3 PUTs are atomic already; on a local disk we write a temporary sibling and rename.
    """
    fs, path = open_fs(uri)
    if is_remote_fs(fs):
        parent = posixpath.dirname(path)
        made = (str(fs.protocol), parent)
        if parent and made not in _MADE_PARENTS:
            fs.makedirs(parent, exist_ok=True)  # creates a missing bucket
            _MADE_PARENTS.add(made)
        fs.pipe_file(path, data)
        return
    parent = os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def exists(uri: str) -> bool:
    fs, path = open_fs(uri)
    return fs.exists(path)


def is_nonempty_dir(uri: str) -> bool:
    """True when ``uri`` holds at least one object (an empty or missing prefix is fine)."""
    fs, path = open_fs(uri)
    if not fs.exists(path):
        return False
    if not fs.isdir(path):
        return True
    return len(fs.ls(path, detail=False)) > 0


def remove_tree(uri: str) -> None:
    """Delete everything under ``uri``; a bucket root is emptied, never deleted itself."""
    fs, path = open_fs(uri)
    if not fs.exists(path):
        return
    if is_remote_fs(fs) and "/" not in path.strip("/"):
        # s3fs's recursive rm of "bucket" removes the bucket too (so `--overwrite s3://bucket`
        # would delete the user's bucket and the following writes fail): remove its contents.
        children = fs.ls(path, detail=False)
        if children:
            fs.rm(children, recursive=True)
        return
    fs.rm(path, recursive=True)


def makedirs(uri: str) -> None:
    fs, path = open_fs(uri)
    if not is_remote_fs(fs):
        fs.makedirs(path, exist_ok=True)


def walk_images(uri: str) -> Iterator[str]:
    """The input images under ``uri`` (recursively), as URIs, sorted: the keys relative to
    ``uri`` that :func:`is_input_image` accepts (hidden files and folders left out)."""
    fs, path = open_fs(uri)
    root = path.rstrip("/")
    for p in sorted(fs.find(path)):
        key = p[len(root) + 1 :] if p.startswith(root + "/") else posixpath.basename(p)
        if is_input_image(key):
            yield protocol_uri(fs, p)


def pyarrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for ``uri`` (for Ray Data and Parquet), through fsspec.

    Going through the same fsspec object as everything else keeps one source of
    truth for credentials and endpoints.
    """
    fs, path = open_fs(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
