"""`python -m octopus ...` (what `accelerate launch -m octopus sft` runs): the `octopus` command."""

from octopus.cli import main

main()
