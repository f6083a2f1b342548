"""Offline flow: data and splits, the CoT grammar, evaluation, and (later) the teacher, students and MKD."""
