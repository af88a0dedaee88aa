"""The toolkit's version, in a module of its own so that every stage can name it without importing the
public API."""

__version__ = "0.1.0"
