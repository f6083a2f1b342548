"""The offline side: data and splits, evaluation, the teachers (`teacher`: the LLM; `committee`: the release
teacher of trained models), CoT annotation, the students and MKD training."""
