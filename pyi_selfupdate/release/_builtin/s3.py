"""Built-in release plugin: publish the tree to S3 or an S3-compatible store, and fetch from it.

``s3://BUCKET/PREFIX`` through boto3 (``pip install 'pyi-selfupdate[s3]'``;
a frozen app never needs it), with the standard AWS credential chain
(environment, ``~/.aws``, instance roles) and the option ``endpoint_url``
(``--endpoint-url``) for MinIO, R2, Wasabi and the like.

Publishing (``release_publish``): the bucket is listed once; a file it holds
with the same size and bytes (the single-part ETag is the MD5; otherwise the
SHA-256 each upload stores as ``x-amz-meta-sha256``, else the object itself)
is skipped; one it holds with other bytes is refused before anything is
uploaded, unless it is a manifest or record (those change with each
release), and a manifest is not replaced by an older one (a lower signed
serial, or a version the local tree does not hold). Then every file is
uploaded in the publication's order (manifests last), each with its
``Cache-Control`` and ``Content-Type``, so a killed publish leaves the bucket
on the old release, and the same command completes it.

Fetching (``release_fetch``, ``release --from``): the manifests, every
earlier ``.gz`` and signed record of the platforms released, and the new
version's own files if it is already there, into the output folder, where
the release verifies them like any local tree.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...errors import ReleaseError, SelfUpdateError
from ...protocol import decode_manifest, full_path
from ...settings import LIMITS
from .._model import ReleaseContext, human_size
from .._publish import Publication, PublishSummary, sha256_hex, split_url
from .._tree import check_tree_name, record_path
from ..hookspecs import hookimpl
from .publish import atomic_write

log = logging.getLogger("pyi_selfupdate.release")

SCHEME = "s3"
_META_SHA256 = "sha256"


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise ReleaseError(
            "s3:// needs boto3, which is not installed here: pip install 'pyi-selfupdate[s3]' "
            "(or pip install boto3)"
        ) from None
    return boto3


class Bucket:
    """``s3://bucket/prefix`` through one boto3 client; every failure a :class:`ReleaseError`."""

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        self.url = url
        self.bucket, self.prefix = split_url(url, SCHEME)
        boto3 = _boto3()
        from botocore.config import Config

        self.client = boto3.session.Session().client(
            "s3", endpoint_url=options.get("endpoint_url") or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(*args, **kwargs)
        except NoCredentialsError:
            raise ReleaseError(
                f"no AWS credentials were found for {self.url}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where an instance role applies"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchBucket":
                raise ReleaseError(
                    f"the bucket {self.bucket!r} does not exist ({self.url}); create it, or check "
                    "its name and --endpoint-url"
                ) from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise ReleaseError(
                    f"{what} on {self.url} was refused ({code}): check the credentials, and that "
                    "they may list, read and write the bucket"
                ) from None
            raise ReleaseError(f"{what} on {self.url} failed ({code}: {error.get('Message', exc)}); "
                               "run the same command again") from None
        except BotoCoreError as exc:
            raise ReleaseError(
                f"{what} on {self.url} failed ({exc}); check --endpoint-url and the network, then "
                "run the same command again (what was uploaded stays, and is skipped)"
            ) from None

    def listing(self) -> Dict[str, Tuple[int, str]]:
        """``relpath -> (size, etag)`` of every object under the prefix."""
        root = self.key("")

        def walk() -> Dict[str, Tuple[int, str]]:
            found = {}
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root):
                for obj in page.get("Contents", ()):
                    found[obj["Key"][len(root):]] = (int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
            return found

        return self._call("listing", walk)

    def get(self, relpath: str, cap: int) -> bytes:
        def read() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(relpath))["Body"]
            try:
                data = body.read(cap + 1)
            finally:
                body.close()
            return data

        data = self._call(f"reading {relpath}", read)
        if len(data) > cap:
            raise ReleaseError(f"{self.url}/{relpath} is larger than {cap} bytes, more than any release "
                               "holds; remove it from the bucket if it is not yours")
        return data

    def stored_sha256(self, relpath: str) -> Optional[str]:
        head = self._call(f"reading {relpath}", self.client.head_object, Bucket=self.bucket, Key=self.key(relpath))
        return (head.get("Metadata") or {}).get(_META_SHA256)

    def same_bytes(self, relpath: str, data: bytes, size: int, etag: str) -> bool:
        """Whether the object holds ``data``: size, then MD5 ETag, stored SHA-256, or the bytes."""
        if size != len(data):
            return False
        if etag == hashlib.md5(data).hexdigest():
            return True
        stored = self.stored_sha256(relpath)
        if stored:
            return stored == sha256_hex(data)
        return hashlib.sha256(self.get(relpath, size)).digest() == hashlib.sha256(data).digest()

    def put(self, relpath: str, data: bytes, cache_control: str, content_type: str) -> None:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode("ascii")
        self._call(f"uploading {relpath}", self.client.put_object, Bucket=self.bucket, Key=self.key(relpath),
                   Body=data, ContentMD5=md5, CacheControl=cache_control, ContentType=content_type,
                   Metadata={_META_SHA256: sha256_hex(data)})


def _refuse_going_back(bucket: Bucket, publication: Publication, relpath: str, data: bytes) -> None:
    """A manifest is not replaced by an older one: a lower signed serial, or a version the
    local tree does not hold (released from elsewhere since this tree was made)."""
    try:
        remote = decode_manifest(bucket.get(relpath, LIMITS.manifest_bytes), source=relpath)
        local = decode_manifest(data, source=relpath)
    except SelfUpdateError as exc:
        log.warning("replacing %s/%s, which is unreadable: %s", publication.destination, relpath, exc)
        return
    cmd, plat = relpath[: -len(".json")].split("/")
    r_serial, l_serial = remote.extra.get("Serial"), local.extra.get("Serial")
    if isinstance(r_serial, int) and isinstance(l_serial, int) and r_serial > l_serial:
        raise ReleaseError(
            f"{publication.destination}/{relpath} has serial {r_serial}, above the local {l_serial}: "
            "a newer release was published from elsewhere; bring it back with `release --from` "
            "and release again, instead of taking clients back"
        )
    if full_path(cmd, remote.version, plat) not in publication.files:
        raise ReleaseError(
            f"{publication.destination}/{relpath} names version {remote.version}, which "
            f"{publication.out} does not hold: publishing would take clients back to {local.version}; "
            "release with `--from` the bucket so the tree holds every release, then publish"
        )


@hookimpl
def release_prepare(context: ReleaseContext) -> None:
    """``--publish s3://...``: refuse a malformed URL or a missing boto3 before the slow work."""
    for option in ("publish", "from"):
        url = context.options.get(option)
        if isinstance(url, str) and url.startswith(f"{SCHEME}://"):
            split_url(url, SCHEME)
            _boto3()


@hookimpl(trylast=True)
def release_publish(publication: Publication) -> Optional[PublishSummary]:
    """Upload the tree to ``s3://bucket/prefix``: new files first, manifests last, unchanged skipped."""
    if not publication.destination.startswith(f"{SCHEME}://"):
        return None
    bucket = Bucket(publication.destination, publication.options)
    publication.report(f"reading {publication.destination}")
    remote = bucket.listing()
    summary = PublishSummary(publication.destination, dry_run=publication.dry_run)
    plan: List[Tuple[str, int]] = []
    refused: List[str] = []
    for relpath in publication.files:
        have = remote.get(relpath)
        if have is None:  # new: only its size is needed now
            plan.append((relpath, publication.out.joinpath(*relpath.split("/")).stat().st_size))
            continue
        data = publication.read(relpath)
        if bucket.same_bytes(relpath, data, *have):
            summary.unchanged.append(relpath)
            continue
        if not publication.is_manifest(relpath):
            refused.append(relpath)
            continue
        if relpath.count("/") == 1:
            _refuse_going_back(bucket, publication, relpath, data)
        plan.append((relpath, len(data)))
        del data
    if refused:
        raise ReleaseError(
            f"{publication.destination} already holds {', '.join(refused)} with other bytes; "
            "released files are never replaced, since clients may hold them (nothing was uploaded). "
            "Release the new build under a new version, or publish the tree those files came from"
        )
    for n, (relpath, size) in enumerate(plan, 1):
        cache, ctype = publication.cache_control(relpath), publication.content_type(relpath)
        if publication.dry_run:
            publication.report(f"would upload {n}/{len(plan)} {relpath} ({human_size(size)}, {cache})")
        else:
            bucket.put(relpath, publication.read(relpath), cache, ctype)
            publication.report(f"uploaded {n}/{len(plan)} {relpath} ({human_size(size)})")
        summary.uploaded.append(relpath)
        summary.bytes_uploaded += size
    return summary


@hookimpl(trylast=True)
def release_fetch(context: ReleaseContext, source: str) -> Optional[bool]:
    """Bring back from ``s3://bucket/prefix`` the manifests, records and ``.gz`` the diff needs."""
    if not source.startswith(f"{SCHEME}://"):
        return None
    bucket = Bucket(source, context.options)
    context.report(f"reading {source}")
    remote = bucket.listing()
    wanted: List[str] = []
    for a in context.artifacts:
        if a.manifest_relpath in remote:
            wanted.append(a.manifest_relpath)
        versions = []
        for relpath in remote:
            parts = relpath.split("/")
            if len(parts) == 3 and parts[0] == a.cmd_name and parts[2] == f"{a.platform}.gz":
                try:
                    check_tree_name(parts[1], "version")
                except ReleaseError as exc:
                    log.warning("%s/%s is not fetched: %s", source, relpath, exc)
                    continue
                versions.append(parts[1])
        for version in sorted(versions):
            wanted += [r for r in (full_path(a.cmd_name, version, a.platform),
                                   record_path(a.cmd_name, version, a.platform)) if r in remote]
            if a.version in versions and version != a.version and a.patch_relpath(version) in remote:
                wanted.append(a.patch_relpath(version))
    fetched = 0
    for relpath in dict.fromkeys(wanted):
        size, etag = remote[relpath]
        target = context.target(relpath)
        if target.is_file() and target.stat().st_size == size:
            if hashlib.md5(Path(target).read_bytes()).hexdigest() == etag:
                continue
        cap = LIMITS.manifest_bytes if relpath.endswith(".json") else LIMITS.binary_bytes
        atomic_write(target, bucket.get(relpath, cap))
        fetched += 1
        context.report(f"fetched {relpath} ({human_size(size)})")
    context.report(f"fetched {fetched} file(s) from {source} ({len(wanted) - fetched} already here)")
    return True
