"""Structured events on stderr: JSON for machines, key=value lines for people.

structlog (with the asyncio and logging it imports: about 30 ms) is loaded by the first event
the chosen level lets through, not by the modules that may send one: a command that logs nothing,
such as a plan of a converged host, or an apply whose info events the console's default warning
level drops, never loads it. Every module logs through `logger`, so the configuration the CLI
chose is in place before that first event.
"""

from __future__ import annotations

import sys
import threading

_loaded = None  # structlog, once loaded
_loading = threading.Lock()
_chosen: tuple[str, str] | None = None  # configure's arguments, applied when structlog loads
# The levels of structlog's filtering loggers (logging's numbers), for events dropped without it.
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40, "critical": 50, "fatal": 50}


def _import_structlog_without_rich():
    """structlog imports rich (its console, tracebacks and pygments: about 12 MiB resident) whenever
    rich is installed, only for pretty tracebacks that conduit never renders (configure below gives
    plain ones); and colorama, which only a Windows console needs (elsewhere structlog writes the
    same colours itself). Each is hidden while structlog loads, and put back as it was; only while
    this is the process's one thread, since hiding is for the whole process and another thread may be
    importing rich then (the agent loads structlog before it starts any)."""
    if threading.active_count() > 1:
        import structlog

        return structlog
    had = {name: sys.modules.get(name) for name in ("rich", "colorama")}
    for name in had:
        sys.modules[name] = None  # type: ignore[assignment]  # `import rich` fails, as if not installed
    try:
        import structlog
    finally:
        for name, module in had.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    return structlog


def structlog():
    """structlog, loaded (and configured as chosen) on first use, once: the agent's threads may send
    their first events at the same moment, and none may see a module still loading."""
    global _loaded
    if _loaded is None:
        with _loading:
            if _loaded is None:
                module = _import_structlog_without_rich()
                if _chosen is not None and not module.is_configured():  # a configuration in place stays (tests capture)
                    _apply(module, *_chosen)
                _loaded = module
    return _loaded


def configure(fmt: str = "console", level: str = "info") -> None:
    global _chosen
    with _loading:
        _chosen = (fmt, level)
        if _loaded is not None:
            _apply(_loaded, fmt, level)


def _apply(structlog, fmt: str, level: str) -> None:
    import logging

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


class Logger:
    """structlog's logger `name` (debug, info, warning, error …), asked for at each event: it loads
    structlog on the first one and follows the configuration in place then (tests capture it)."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, method: str):
        if _chosen is not None and _LEVELS.get(method, 100) < _LEVELS.get(_chosen[1], 0):
            return _dropped  # what structlog's filter for the chosen level would do, without loading it
        return getattr(structlog().get_logger(self.name), method)


def _dropped(*_args, **_kwargs) -> None:
    return None


def logger(name: str = "conduit") -> Logger:
    return Logger(name)
