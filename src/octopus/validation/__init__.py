"""The validate stage: great_expectations checks over the collected dataset, Data Docs, metrics.

`octopus validate` calls `run_validate`; `validate_dataset` returns a `ValidationReport`.
Importing this package imports great_expectations (about 4 s), so import it where it is used.
"""

from octopus.validation.checks import ValidationError
from octopus.validation.stage import (EXPECTATIONS, ExpectationResult, ValidationReport, run_validate,
                                      validate_dataset)

__all__ = ["EXPECTATIONS", "ExpectationResult", "ValidationError", "ValidationReport", "run_validate",
           "validate_dataset"]
