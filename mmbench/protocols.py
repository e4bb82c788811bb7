"""The three evaluation protocols: which epoch's test metrics a run reports.

``paper``: the best test epoch (the official MMPareto code's protocol: selection on test);
``val``: the epoch with the best validation accuracy; ``last``: the final epoch (a fixed
budget, no selection). The engine records all three, config checks accept them as the
prefix of a sweep metric, and the leaderboards report them in this order.
"""

from __future__ import annotations

PROTOCOLS = ("paper", "val", "last")
PROTOCOL_TEXT = {
    "paper": "test metrics at the best test epoch (the official code's protocol)",
    "val": "test metrics at the best validation epoch",
    "last": "test metrics at the final epoch",
}
