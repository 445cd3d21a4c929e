"""`python -m mothbrain ...` is the `mothbrain` command."""

from mothbrain.cli import main

if __name__ == "__main__":
    main()
