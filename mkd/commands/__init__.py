"""The offline command line (``relevance data | evaluate | cot | teacher | train | ablate``): the top layer of
`mkd`, the one place that composes its packages (the model loader `mkd.scorers` with the committee, the
evaluation with the students). Nothing inside `mkd` imports it; torch and the heavy libraries are imported inside
the commands."""
