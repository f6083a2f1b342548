"""The ``relevance`` command line: one entry point over the offline (``mkd``, ``export``) and online
(``service``) flows."""

__version__ = "0.1.0"
