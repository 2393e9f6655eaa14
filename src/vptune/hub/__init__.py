"""The Hugging Face Hub: per-task files as `hf://` names (`tasks`), `vptune push` (`push`, `card`), and the
`huggingface_hub` calls both go through (`client`)."""
