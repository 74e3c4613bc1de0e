"""rc10's ``Logger`` with ``training.stdout_capture`` (on by default) replaces ``sys.stdout``
with a ``StreamToLogger`` that writes to the log files only, and then gives its own
logger no console handler: while ``mmf_run`` trains, the console shows nothing for
minutes (no progress ``n/N`` with loss, time and ETA, no evaluation results, no
messages). The console now gets the records the log file gets, from the same
loggers and in the same format (a multi-line record such as the model printout is
cut to its first lines there); the log files are written exactly as before."""

import logging
import sys

MARK = "_refnet_console_log"
HANDLER_NAME = "mmf_refnet_console"
CONSOLE_LINES = 8
FORMAT = "%(asctime)s | %(levelname)s | %(name)s : %(message)s"  # rc10's log file format


class ConsoleFormatter(logging.Formatter):
    """rc10's format; records longer than ``CONSOLE_LINES`` lines are cut (the log file has them whole)."""

    def format(self, record):
        lines = super().format(record).splitlines()
        if len(lines) <= CONSOLE_LINES:
            return "\n".join(lines)
        return "\n".join(lines[:CONSOLE_LINES] + [f"    ... {len(lines) - CONSOLE_LINES} more lines in the log file"])


def console_handler(stream) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(ConsoleFormatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    return handler


def add_console(loggers, stream) -> None:
    handler = console_handler(stream)
    for target in loggers:
        if not any(existing.get_name() == HANDLER_NAME for existing in target.handlers):
            target.addHandler(handler)


def apply() -> None:
    from mmf.utils.logger import Logger, StreamToLogger

    original = Logger.__init__
    if getattr(original, MARK, False):
        return

    def __init__(self, config, name=None):
        console = sys.stdout if not isinstance(sys.stdout, StreamToLogger) else sys.__stdout__
        original(self, config, name)
        if getattr(self, "_stdout_logger", None) is None or console is None:
            return  # not the master process, or no capture (rc10 then logs to the console itself)
        add_console([self._logger, self._warnings_logger, logging.getLogger("stdout")], console)

    setattr(__init__, MARK, True)
    Logger.__init__ = __init__
