"""Scoped thread counts: torch's intra-op thread count is process-wide, so library code borrows it
for the work it does and gives it back; only an entry point sets it for good."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch


@contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the previous count.

    ``None`` (or 0) leaves the count as it is.

    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    """
    if not threads:
        yield
        return
    if threads < 0:
        raise ValueError(f"threads must be >= 1 (or None to keep the current count), got {threads}")
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
