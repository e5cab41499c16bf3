"""The one exception type users see: a one-line message naming the file or option and the fix."""


class BreakHisError(Exception):
    """A user-facing error.

    The command line prints ``error: <message>`` on one line and exits with status 2, without a
    traceback. Raise it for bad input (paths, options, files); let genuine bugs raise anything else.
    """


class DiskFullError(BreakHisError, OSError):
    """A write that ran out of disk space (or quota): the message names the file and the space left.

    Also an :class:`OSError`, so code that tolerates a failed write (the image cache) still does.
    """
