"""The teacher's torch-free side, shared by the offline flow and the gateway: the prompts, the eq. 4 score, the
OpenAI-compatible client, the shipped assets' locations and the local teacher's child process."""
