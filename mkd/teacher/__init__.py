"""ELLM-rele, the LLM teacher (paper §3.2): supervised fine-tuning of its adapter (`sft`), labelling pairs with it
(`label`), serving it behind the OpenAI chat API in process (`torch_teacher`, `torch_server`) or with llama.cpp
(`llama_server`, `gguf_adapter`). Its prompt, eq. 4 score and API client are torch-free, in
`relevance_core.teacher`; the committee that stands in for it as the release teacher is `mkd.committee`."""
