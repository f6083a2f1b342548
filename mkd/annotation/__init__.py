"""CoT annotation of labelled pairs (paper §3.2.1) by L-LLMs behind OpenAI-compatible endpoints or by the rule
annotator (`relevance_core.annotation`, shared with the gateway's explanations): `llm`."""
