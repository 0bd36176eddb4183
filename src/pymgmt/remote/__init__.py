"""Remote execution over SSH: `pymgmt run --remote FILE` runs graphs on hosts with no agent installed."""
