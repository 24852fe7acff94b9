"""The one line every benchmark ends with per goal: ``GOAL <name> <measured> <target> met|missed``."""


def goal(name: str, measured: float, target: float, higher_is_better: bool = True) -> str:
    """The goal's line; ``higher_is_better=False`` for a ceiling (RSS, latency, a count of losses)."""
    met = measured >= target if higher_is_better else measured <= target
    shown = f"{measured:g}" if float(measured).is_integer() else f"{measured:.3f}"
    return f"GOAL {name} {shown} {target:g} {'met' if met else 'missed'}"
