"""The widget's unit tests (run by tests/junit_runner.py, which writes JUnit XML)."""
import unittest

import widget


class PriceTest(unittest.TestCase):
    def test_plain(self):
        self.assertEqual(widget.price(3, 250), 750)

    def test_discount(self):
        self.assertEqual(widget.price(4, 100, discount_percent=25), 300)

    def test_discount_is_capped(self):
        self.assertEqual(widget.price(2, 100, discount_percent=90), 100)

    def test_negative_units(self):
        with self.assertRaises(ValueError):
            widget.price(-1, 100)


class AverageTest(unittest.TestCase):
    def test_average(self):
        self.assertEqual(widget.average_price([100, 200, 300]), 200)

    def test_empty(self):
        with self.assertRaises(ValueError):
            widget.average_price([])


if __name__ == "__main__":
    unittest.main()
