"""fleet-agentsim: plays N agents across tenants against the lab's proxy and proves where their check-ins landed.

Commands (see `python -m agentsim --help`):
  run     open-loop check-in load at a constant rate, with a ledger of every acknowledged check-in
  verify  proves every acknowledged check-in of a ledger is in its tenant's shard database
  report  turns run reports into a latency-over-time PNG and a Markdown table
"""

__version__ = "1.0.0"
