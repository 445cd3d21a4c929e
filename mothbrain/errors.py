"""Expected failures: a clean one-line message and a non-zero exit, for cron and for people."""


class MothError(Exception):
    """A failure a person can act on; the message names the thing and the fix."""

    exit_code = 1


class NothingToDo(MothError):
    """Not a failure of the machine: e.g. no new material. Chains treat it as a skip."""

    exit_code = 3
