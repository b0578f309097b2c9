"""widget: a small library whose tests Kiln runs in a fresh VM (see .kiln.yml)."""
import widgetmath


def price(units, unit_cents, discount_percent=0):
    """Total price in cents, the discount clamped to 0-50 %."""
    if units < 0 or unit_cents < 0:
        raise ValueError("units and unit_cents must not be negative")
    discount = widgetmath.clamp(discount_percent, 0, 50)
    return round(units * unit_cents * (100 - discount) / 100)


def average_price(prices):
    return widgetmath.mean(prices)
