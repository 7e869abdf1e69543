"""``python -m tui.cli``: the ``podforge`` command line, as the console script runs it."""

from tui.cli import main

if __name__ == "__main__":
    main()
