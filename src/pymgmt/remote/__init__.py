"""Remote execution over SSH: `pymgmt run --remote FILE` runs graphs on hosts with no agent.

See `session` (the initiator), `child` (the remote agent), `spec`, `ssh` and `bundle`.
"""
