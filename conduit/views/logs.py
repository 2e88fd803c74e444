"""Structured events on stderr: JSON for machines, key=value lines for people."""

from __future__ import annotations

import logging
import sys


def _import_structlog_without_rich():
    """structlog imports rich (its console, tracebacks and pygments: about 12 MiB resident) whenever
    rich is installed, only for pretty tracebacks that conduit never renders (configure below gives
    plain ones); and colorama, which only a Windows console needs (elsewhere structlog writes the
    same colours itself). Each is hidden while structlog loads, unless something loaded it already."""
    hidden = [name for name in ("rich", "colorama") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import rich` fails, as if not installed
    try:
        import structlog
    finally:
        for name in hidden:
            del sys.modules[name]
    return structlog


structlog = _import_structlog_without_rich()


def configure(fmt: str = "console", level: str = "info") -> None:
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(name: str = "conduit") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
