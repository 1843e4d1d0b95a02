"""The AWS areas, one module each. A module here that defines `plan(stage)` and `AFTER` (the areas it
needs to exist first) takes part in `inv up`: the stack finds it and computes its wave."""
