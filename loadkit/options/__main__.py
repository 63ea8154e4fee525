"""``python -m loadkit.options``: print the README's option table (``markdown_table``)."""

from loadkit.options import markdown_table

print(markdown_table(), end="")
