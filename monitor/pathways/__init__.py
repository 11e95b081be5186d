"""Pathways and business transactions: the routes traces take from their origin, with
latency percentiles that merge exactly over any range, and declared business flows
(started, completed, compensated or stuck)."""
