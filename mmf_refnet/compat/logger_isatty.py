"""rc10's ``StreamToLogger`` replaces ``sys.stdout`` (training.stdout_capture) but
has no ``isatty()``; transformers 5 calls ``sys.stdout.isatty()`` while loading
weights and crashes with AttributeError. A log stream is not a terminal."""


def apply() -> None:
    from mmf.utils.logger import StreamToLogger

    if not hasattr(StreamToLogger, "isatty"):
        StreamToLogger.isatty = lambda self: False
