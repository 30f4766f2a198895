"""`python -m parley ...`: the same as the `parley` command.

`parley up` starts its children this way (with sys.executable) so they run
in the same interpreter and virtualenv without relying on PATH.
"""

from parley.cli import main

if __name__ == "__main__":
    main()
