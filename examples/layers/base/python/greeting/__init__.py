"""A tiny package served straight from a layer zip."""
VERSION = "1.0 (from the base layer)"


def hello(name):
    return f"hello, {name}"
