"""Section 6: resident memory while validating 100,000 distinct tokens, at two cache sizes.

The tokens are signed once, into a file; each cache size then gets a clean subprocess
(``python -m benchmarks.memory --child ...``) that reads them one at a time, so a token's text
stays in memory only if the validator keeps it. Resident memory is read after a garbage
collection before the first token, halfway, and at the end: a bounded cache fills, then stops
growing, so the second half must add (next to) nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from benchmarks.common import (
    Context,
    cache_entries,
    cache_setting,
    default_cache_size,
    mint_tokens_to_file,
    rss_bytes,
    supports_token_cache,
    timed,
)
from benchmarks.report import Row, mb, us
from entra_guard import EntraConfig, TokenValidator

__all__ = ["main", "run"]

SECTION = "memory"
SMALL_CACHE = 1000
#: Growth allowed in the second half, for allocator noise: a leak of 100 bytes a token is 4.8 MB.
SECOND_HALF_LIMIT = 5 * 2**20
#: Resident memory per cached verified token, with the default cache full (issue 12).
PER_ENTRY_TARGET_KB = 1.5
_CHILD_TIMEOUT = 300


def run(ctx: Context) -> list[Row]:
    count = ctx.options.scaled(ctx.options.memory_tokens, 5000)
    idp = ctx.idp
    sizes: list[int | None] = [None]
    if supports_token_cache():
        sizes.append(SMALL_CACHE)
    with tempfile.TemporaryDirectory(prefix="entra-guard-bench-") as tmp:
        tokens = Path(tmp) / "tokens.txt"
        _, seconds = timed(lambda: mint_tokens_to_file(idp, count, tokens))
        ctx.note(f"Memory: signing {count:,} tokens took {seconds:.0f} s (not measured).")
        rows: list[Row] = []
        for size in sizes:
            command = [
                sys.executable,
                "-m",
                "benchmarks.memory",
                "--child",
                "--tokens",
                str(tokens),
                "--tenant",
                idp.tenant_id,
                "--instance",
                idp.instance,
                "--audience",
                idp.config().audiences[0],
            ]
            if size is not None:
                command += ["--cache-size", str(size)]
            done = subprocess.run(  # noqa: S603  # our own interpreter and module
                command,
                capture_output=True,
                text=True,
                timeout=_CHILD_TIMEOUT,
                check=False,
                cwd=Path(__file__).resolve().parent.parent,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the memory subprocess failed:\n{done.stderr}")
            rows += _rows(json.loads(done.stdout.splitlines()[-1]), size)
    return rows


def _label(size: int | None) -> str:
    if not supports_token_cache():
        return "no token cache in this build"
    if size is None:
        return f"token_cache_size={default_cache_size()} (default)"
    return f"token_cache_size={size}"


def _rows(result: dict[str, Any], size: int | None) -> list[Row]:
    label = _label(size)
    bound = default_cache_size() if size is None else size
    count, half = result["tokens"], result["tokens"] // 2
    before, middle, after = result["rss_before"], result["rss_half"], result["rss_after"]
    entries = result["entries"]
    second_half = after - middle
    fills = bound is None or bound <= half
    rows = [
        Row(
            SECTION,
            f"Memory, {label}: RSS growth over {count:,} distinct tokens",
            mb(after - before),
            baseline=f"RSS before {mb(before)}",
            ratio=f"RSS after {after / before:.2f}x before",
            data=result,
        ),
        Row(
            SECTION,
            f"Memory, {label}: RSS growth in the second {count - half:,} tokens",
            mb(second_half),
            baseline=f"first half {mb(middle - before)}",
            # Only a cache that is full by halfway must stop growing (not so with --quick).
            target=f"<= {mb(SECOND_HALF_LIMIT)} (bounded)" if fills else "- (not full by half)",
            met=second_half <= SECOND_HALF_LIMIT if fills else None,
            data=result,
        ),
        Row(
            SECTION,
            f"Memory, {label}: validation per token over {count:,} distinct tokens",
            us(result["seconds"] / count * 1e6),
            data=result,
        ),
    ]
    if entries:
        per_entry = (after - before) / entries / 1024
        # The target holds for the default cache, full by the end (not so with --quick).
        judged = size is None and bound is not None and entries >= bound * 0.95
        rows.append(
            Row(
                SECTION,
                f"Memory, {label}: RSS per cached token",
                f"{per_entry:.2f} KB",
                target=f"<= {PER_ENTRY_TARGET_KB} KB" if judged else "-",
                met=per_entry <= PER_ENTRY_TARGET_KB if judged else None,
                data=result,
            )
        )
    if bound is not None:
        rows.append(
            Row(
                SECTION,
                f"Memory, {label}: entries in the token cache",
                "not reachable" if entries is None else f"{entries:,}",
                target=f"<= {bound:,}",
                met=None if entries is None else entries <= bound,
                data=result,
            )
        )
    return rows


# -- the subprocess ----------------------------------------------------------------------------


async def _measure(args: argparse.Namespace, lines: TextIO, total: int) -> dict[str, Any]:
    config = EntraConfig(
        tenant_id=args.tenant,
        instance=args.instance,
        audiences=[args.audience],
        **cache_setting(args.cache_size),
    )
    tokens = 0
    async with TokenValidator(config) as validator:
        await validator.prefetch()
        await validator.validate(lines.readline().rstrip("\n"))  # imports, keys, first entry
        tokens = 1
        gc.collect()
        before, middle = rss_bytes(), 0
        started = time.perf_counter()
        for line in lines:
            await validator.validate(line.rstrip("\n"))
            tokens += 1
            if tokens == total // 2:
                gc.collect()
                middle = rss_bytes()
        seconds = time.perf_counter() - started
        gc.collect()
        after = rss_bytes()
        entries = cache_entries(validator)
    return {
        "tokens": tokens,
        "cache_size": args.cache_size,
        "rss_before": before,
        "rss_half": middle,
        "rss_after": after,
        "entries": entries,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="entra-guard memory benchmark, one cache size")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--tokens", required=True, help="a file of tokens, one per line")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--cache-size", type=int, default=None)
    args = parser.parse_args(argv)
    # Read line by line: a token stays in memory only if the validator keeps it.
    with Path(args.tokens).open(encoding="ascii") as lines:
        total = sum(1 for _ in lines)
        lines.seek(0)
        result = asyncio.run(_measure(args, lines, total))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
