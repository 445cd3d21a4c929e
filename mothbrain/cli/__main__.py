"""`python -m mothbrain.cli ...` (the cron lines use it) is the `mothbrain` command."""

from mothbrain.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
