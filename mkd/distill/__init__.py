"""Multi-dimensional knowledge distillation (paper §3.3): the MKD losses (`mkd.distill.losses`), the teacher's
pseudo-labels (`mkd.distill.teacher_file`), the trainer (`mkd.distill.train`); its command is `mkd.commands.train`.
Nothing is imported here, so that the command line can load without torch."""
