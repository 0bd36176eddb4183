"""The agent's one HTTP server: Prometheus metrics and the live web view (issue 12).

``pymgmt run --prometheus`` turns it on at ``--prometheus-listen`` (mgmt's
default ``127.0.0.1:9233``). Everything it serves is read-only:

  address.py   the listen address (``HOST:PORT``), parsed without importing asyncio
  http.py      a small HTTP/1.1 server on asyncio: GET and HEAD, one request per
               connection, server-sent events, a Host check against DNS rebinding
  metrics.py   ``/metrics``: mgmt's metric names and pymgmt's own, counted from the
               events (prometheus_client, imported only here)
  view.py      ``/`` (the page), ``/graph.svg`` (the graphviz layout), ``/events``
               (SSE: each vertex's live state), ``/vertex/NAME`` (params, redacted)
  page.py      the page's HTML, CSS and script
  server.py    ties them together: the reporter the engine feeds, the server the run starts
"""


class WebError(Exception):
    """The server cannot start (its address is in use, or not this machine's).

    Here, not in server.py, so that the run command can catch it without
    importing the server (a run without --prometheus imports none of it).
    """
