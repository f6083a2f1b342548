"""The release teacher: a committee of trained relevance models whose scores a logistic regression, fitted on the
validation split, combines into one calibrated p(Good). It plays the role of eq. 4's teacher score s_T in MKD
(paper §3.3): the LLM's judgement is replaced by models that rank better than any single student, because
distillation only transfers what the teacher knows better.

- `combiner`: the standardised logistic regression over the members' logits, and its out-of-fold figure;
- `committee`: the committee folder (``committee.json``), fitting it, and scoring with it. Members are handed in
  as scorers (`mkd.commands.committee` builds them with the model loader, `mkd.scorers`), so this package never
  imports that loader;
- `labelling`: the MKD teacher file (score, p_good/p_bad, a verdict-consistent CoT from the rule annotator);
- `scores_file`: compact scores files (gzip TSV): the committable copy of a teacher file and its expansion back,
  and a member's scores of every pair (``scores:FILE``). The commands are `mkd.commands.committee`.
"""
