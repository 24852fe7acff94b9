"""The one line every benchmark ends with per goal: ``GOAL <name> <measured> <target> met|missed``."""


def goal(name: str, measured: float, target: float, higher_is_better: bool = True) -> str:
    """The goal's line; ``higher_is_better=False`` for a ceiling (RSS, latency, a count of losses)."""
    met = measured >= target if higher_is_better else measured <= target
    return f"GOAL {name} {measured:.3f} {target:g} {'met' if met else 'missed'}"
