"""Model-side code: the vision-language programmer and its helpers."""
