"""The one-shot fast path: a converged graph answered in milliseconds (issue 13).

Most one-shot runs (``pymgmt run --converged-timeout 0``, from cron or a
deploy script) find everything already as wanted. The full run pays ~200
ms of imports (asyncio, the engine, the resource classes) and its parse
or cache before checking anything; CFEngine answers the same question in
~80 ms. So the check comes first:

* plan.py     what a full run stores for the next one: each file's wanted
              state, each command as exec runs it, each package's wanted
              state, the graph's name, size and compile lines;
* apply.py    every file of a plan, judged by the file resource's own
              rule (resources/filestate.py) after the same safe walk, and
              changed by its own apply in durable batches;
* execute.py  the plan run by readiness: commands as exec runs them
              (resources/spawn.py), packages checked by the apt backend's
              own query (resources/pkgstate.py);
* command.py  the command lines it answers, the state directory's lock,
              and the very lines and recap the full run would write.

Anything it is not sure of (an unknown flag, another agent holding the
lock, another kind, a package to change) goes to the full run before
anything was changed or started, which then decides and reports exactly
as it always did. Its imports are `os`, `stat`, `time`, `fcntl`,
`marshal`, `pwd` and `_blake2` (`grp` for a named group, `select` for
commands, `_ctypes` for a syncfs): nothing that costs. The ``pymgmt``
script asks it first and exits where it answers (command.py
`run_or_return`), before the command line's parser is even imported.
"""
