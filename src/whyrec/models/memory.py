"""Will a fit fit? Peak-memory estimates checked against the memory this machine has free.

A model whose memory grows with items² (EASE) or with item co-occurrences (SANSA's Gram
matrix) must say so before it starts: an out-of-memory kill after a long wait tells the
user nothing. `available_bytes` reads what the kernel would hand out now (MemAvailable,
capped by the cgroup limit a container runs under); `require` raises a one-line
`ResourceError` naming the estimate, the free memory and what to do instead.
"""

from __future__ import annotations

from pathlib import Path

from whyrec.errors import ResourceError

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


def _meminfo_available() -> int | None:
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    """Bytes left under a cgroup v2 memory limit, None when there is no limit."""
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((CGROUP / "memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Memory a new allocation can get now; None when the platform does not tell."""
    known = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    return min(known) if known else None


def gigabytes(size: float) -> str:
    """1.5e9 → '1.4 GB' (GiB, as `free -h` shows), at least one significant digit."""
    value = size / 2**30
    return (
        f"{value:.0f} GB" if value >= 10 else f"{value:.1g} GB" if value < 1 else f"{value:.1f} GB"
    )


def require(need: float, what: str, advice: str) -> None:
    """Raise `ResourceError` when `need` bytes exceed the available memory.

    `what` names the job ("EASE needs about 31 GB for 87,000 items"), `advice` the way out.
    Unknown available memory (not Linux) lets the fit go ahead, as before this check.
    """
    free = available_bytes()
    if free is not None and need > free:
        raise ResourceError(f"{what}; this machine has {gigabytes(free)} free; {advice}")
