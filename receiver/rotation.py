"""One secret or a list of them while rotating: the one rule for reading keys from config and environment."""

ONE_OR_MORE = "must be a non-empty string or a non-empty list of them"


def secret_list(value) -> list[str]:
    """A config option's secret, or its non-empty list of secrets, as a list; ValueError otherwise.

    The message never quotes the value: it is a secret.
    """
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(ONE_OR_MORE)
    return list(values)


def comma_list(raw: str) -> tuple[str, ...]:
    """An environment variable's comma-separated keys, first one first; an empty one is a ValueError."""
    keys = tuple(key.strip() for key in raw.split(","))
    if not all(keys):
        raise ValueError("an empty key in the list (a stray comma?)")
    return keys
