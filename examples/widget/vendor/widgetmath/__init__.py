"""widgetmath: the widget's one dependency (vendored; installed by scripts/install.sh)."""
__version__ = "1.2.0"


def clamp(value, low, high):
    """value limited to [low, high]."""
    if low > high:
        raise ValueError("low must not be above high")
    return max(low, min(high, value))


def mean(values):
    values = list(values)
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)
