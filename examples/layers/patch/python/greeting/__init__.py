"""The patch layer replaces the base layer's __init__.py."""
VERSION = "1.1 (from the patch layer)"


def hello(name):
    return f"hello again, {name}"
