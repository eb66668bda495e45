"""`python -m jimeng_server`."""

from .cli import main

main()
