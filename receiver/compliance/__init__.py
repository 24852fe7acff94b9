"""Compliance: legal deadline clocks per opt-out and the tamper-evident hash chain (issue 15)."""
