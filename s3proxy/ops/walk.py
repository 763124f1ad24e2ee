"""``s3proxy rewrap`` over a bucket: lists it (once to count, once to work), rewraps objects with
bounded concurrency, shows progress, keeps a resume point in a state file, and ends with a
summary. See docs/keys.md, Rotation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from s3proxy.config import Config
from s3proxy.core.errors import S3ProxyError
from s3proxy.core.request import Target
from s3proxy.core.s3xml import listed_objects
from s3proxy.keys.cache import CachingKeyService
from s3proxy.keys.transit import vault_from
from s3proxy.ops.progress import Progress, ProgressDisplay, ResumePoint
from s3proxy.ops.rewrap import Rewrapper
from s3proxy.upstream.client import Upstream, upstream_from
from s3proxy.upstream.credentials import CredentialSource, resolve

MAX_FAILED_RECORDED = 1000


@dataclass(frozen=True)
class WalkOptions:
    bucket: str
    prefix: str = ""
    start_after: str = ""
    concurrency: int = 8
    dry_run: bool = False
    state: Path | None = None  # resume point kept here; removed when the walk completes
    verbose: bool = False  # a line per object with its outcome


async def listing(
    upstream: Upstream, bucket: str, prefix: str, start_after: str
) -> AsyncIterator[tuple[str, int]]:
    """(key, stored size) of every object under ``prefix`` after ``start_after``, in order."""
    token: str | None = None
    while True:
        query: list[tuple[str, str | None]] = [("list-type", "2"), ("prefix", prefix)]
        if token:
            query.append(("continuation-token", token))
        elif start_after:
            query.append(("start-after", start_after))
        resp = await upstream.send("GET", Target(bucket, None, tuple(query)), [])
        async with resp:
            body = await resp.read()
            if resp.status != 200:
                raise S3ProxyError(f"listing {bucket} failed with HTTP {resp.status}")
        for obj in listed_objects(body):
            yield obj.key, obj.size
        match = re.search(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if match is None:
            return
        token = match.group(1).decode()


def _load_state(options: WalkOptions) -> dict[str, Any]:
    if options.state is None or not options.state.exists():
        return {}
    try:
        state: Any = json.loads(options.state.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise S3ProxyError(f"the state file {options.state} cannot be read: {exc}") from exc
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("after", ""), str)
        or not isinstance(state.get("failed", []), list)
    ):
        raise S3ProxyError(f"the state file {options.state} is not a rewrap state")
    if state.get("bucket") != options.bucket or state.get("prefix") != options.prefix:
        raise S3ProxyError(
            f"the state file {options.state} belongs to another walk "
            f"(bucket {state.get('bucket')!r}, prefix {state.get('prefix')!r})"
        )
    return state


def _save_state(options: WalkOptions, after: str, failed: list[str]) -> None:
    if options.state is None or options.dry_run:  # a dry run changes nothing, so resumes nothing
        return
    text = json.dumps(
        {"bucket": options.bucket, "prefix": options.prefix, "after": after, "failed": failed}
    )
    write_file_safely(options.state, text.encode())


def write_file_safely(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole: written to a new temporary file beside it (created
    with ``O_EXCL | O_NOFOLLOW``, so nothing planted at a predictable name, such as a symlink,
    is opened), flushed to disk, then renamed over ``path``. A crash leaves the old file or the
    new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, on filesystems that need it
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class Walk:
    def __init__(
        self, rewrapper: Rewrapper, upstream: Upstream, options: WalkOptions, out: TextIO
    ) -> None:
        self.rewrapper = rewrapper
        self.upstream = upstream
        self.options = options
        self.out = out
        self.failed: list[str] = []

    async def run(self) -> Progress:
        options = self.options
        state = _load_state(options)
        after = max(options.start_after, state.get("after", ""))
        retry = [str(k) for k in state.get("failed", [])]
        if state:
            self.out.write(f"rewrap: resuming after {after!r} ({len(retry)} to retry)\n")
        progress = await self._count(after, len(retry))
        display = ProgressDisplay(progress, self.out, "rewrap")
        resume = ResumePoint(after)
        latest = await self.rewrapper.vault.latest_version()
        done = await _Pass(self, display, resume, latest).run(retry, after)
        display.finish()
        if done and not self.failed and options.state is not None and not options.dry_run:
            options.state.unlink(missing_ok=True)
        return progress

    async def _count(self, after: str, retrying: int) -> Progress:
        """Counting first (one listing request per 1,000 keys) gives the ETA."""
        progress = Progress()
        progress.total_objects, progress.total_bytes = retrying, 0
        options = self.options
        async for _, size in listing(self.upstream, options.bucket, options.prefix, after):
            progress.total_objects += 1
            progress.total_bytes += size
        return progress


class _Pass:
    """One pass of a walk: the objects left failed by the last run, then the listing after the
    resume point, rewrapped by ``concurrency`` workers; the state saved every second and at
    the end."""

    def __init__(
        self, walk: Walk, display: ProgressDisplay, resume: ResumePoint, latest: int
    ) -> None:
        self.walk = walk
        self.options = walk.options
        self.display = display
        self.progress = display.progress
        self.resume = resume
        self.latest = latest
        self.last_saved = self.progress.clock()

    async def run(self, retry: list[str], after: str) -> bool:
        """Whether every worker ended without an error."""
        options = self.options
        queue: asyncio.Queue[tuple[str, int, bool] | None] = asyncio.Queue(options.concurrency)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(options.concurrency)]
        try:
            for key in retry:
                await queue.put((key, 0, True))
            async for key, size in listing(
                self.walk.upstream, options.bucket, options.prefix, after
            ):
                self.resume.started(key)
                await queue.put((key, size, False))
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            done = not any(not t.cancelled() and t.exception() for t in workers)
            _save_state(options, self.resume.after, self.walk.failed)
        return done

    async def _worker(self, queue: asyncio.Queue[tuple[str, int, bool] | None]) -> None:
        while (item := await queue.get()) is not None:
            await self._one(*item)

    async def _one(self, key: str, size: int, retried: bool) -> None:
        options, display = self.options, self.display
        try:
            outcome = await self.walk.rewrapper.one(
                Target(options.bucket, key, ()), self.latest, options.dry_run
            )
        except (S3ProxyError, OSError) as exc:
            outcome = "failed"
            message = exc.message if isinstance(exc, S3ProxyError) else str(exc)
            display.note(f"failed {key}: {message}")
            if len(self.walk.failed) < MAX_FAILED_RECORDED:
                self.walk.failed.append(key)
        if options.verbose and outcome != "failed":
            display.note(f"{outcome:<9} {key}")
        self.progress.add(outcome, size)
        if not retried:
            self.resume.finished(key)
        display.tick()
        self._save_if_due()

    def _save_if_due(self) -> None:
        if self.progress.clock() - self.last_saved >= 1.0:
            self.last_saved = self.progress.clock()
            _save_state(self.options, self.resume.after, self.walk.failed)


async def rewrap(config: Config, options: WalkOptions, out: TextIO = sys.stderr) -> int:
    vault = vault_from(config.vault)
    credentials = CredentialSource(lambda: resolve(config.upstream.credentials))
    upstream = upstream_from(config.upstream, credentials)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is not None:  # SIGTERM ends the walk as Ctrl-C does, keeping the resume point
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    shared_cache = None
    try:
        await loop.run_in_executor(None, vault.auth.login)
        await credentials.start()
        await upstream.start()
        if config.metadata_cache.enabled:  # rewritten objects are written through to it
            from s3proxy.store.sharedcache import SharedCache

            shared_cache = await SharedCache(config.metadata_cache).__aenter__()
        keys = CachingKeyService(vault, config.vault.cache_limits)
        rewrapper = Rewrapper(vault, upstream, config.upstream.checksum, keys, shared_cache)
        progress = await Walk(rewrapper, upstream, options, out).run()
    except S3ProxyError as exc:
        out.write(f"s3proxy rewrap: {exc.message}\n")
        return 1
    except asyncio.CancelledError:
        out.write("\ns3proxy rewrap: interrupted; run it again with the same --state to resume\n")
        return 130
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if shared_cache is not None:
            await shared_cache.__aexit__(None, None, None)
        await upstream.close()
        await credentials.close()
        vault.close()
    counts = progress.outcomes
    verb = "to rewrap" if options.dry_run else "rewritten"
    out.write(
        f"{'would rewrap' if options.dry_run else 'rewrapped'} {counts[verb]}, "
        f"already current {counts['current']}, not encrypted {counts['skipped']}, "
        f"failed {counts['failed']}\n"
    )
    return 1 if counts["failed"] else 0
