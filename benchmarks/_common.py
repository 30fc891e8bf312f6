"""Helpers the benchmark scripts share (they run as ``python benchmarks/<name>.py``)."""


def cpu_name():
    """The CPU model from /proc/cpuinfo, or "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"
