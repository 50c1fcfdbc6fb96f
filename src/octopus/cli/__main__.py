"""`python -m octopus.cli`: the `octopus` command."""

from octopus.cli import main

main()
