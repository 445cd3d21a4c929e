"""Expected failures: a clean one-line message and a non-zero exit, for cron and for people."""


class MothError(Exception):
    """A failure a person can act on; the message names the thing and the fix."""

    exit_code = 1


class NothingToDo(MothError):
    """Not a failure of the machine: e.g. no new material. Chains treat it as a skip."""

    exit_code = 3


class NoNewMaterial(NothingToDo):
    """Training would repeat a version already trained on the same data with the same settings."""

    def __init__(self, version: str, fingerprint: str):
        self.version, self.fingerprint = version, fingerprint
        super().__init__(
            f"no new material since {version} (fingerprint {fingerprint[:12]}); "
            "`--force` or train.skip_unchanged: false trains anyway"
        )


GATE_REFUSED_EXIT = 4  # `mothbrain promote` alone: the gate refused the version (nothing is broken)
