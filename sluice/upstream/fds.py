"""The process's open-file limit. Every open stream takes two sockets (the caller's and the
provider's), so the common soft limit of 1,024 caps a gateway at about 500 streams while the hard
limit allows far more; `sluice serve` raises the soft limit to the hard one at start."""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit (never lowers it) and returns the limit now
    in force. A process that may not raise it keeps what it had."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. RLIM_INFINITY hard limit above the kernel's nr_open
        return soft
    return target
