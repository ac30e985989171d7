"""SB3 callbacks of furl_wrappers (reward alignment, evaluation and logging arrive with their issues).

Kept under ``furl_wrappers.callbacks`` so it never collides with the ``callbacks.py`` many SB3 projects keep at
their root.
"""

__all__: list[str] = []
