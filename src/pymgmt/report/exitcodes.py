"""pymgmt's exit codes, alone in a module that imports nothing.

`pymgmt --version` and every usage error need one of these, and importing
them from `report.recap` cost 30 ms of event classes (issue 13). What each
code means is said in `report.recap`, which computes them, and the README.
"""

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_CHANGED = 2
EXIT_FAILED = 4
#: 128 + SIGINT: what a shell reports for a program ^C stopped
EXIT_INTERRUPTED = 130
