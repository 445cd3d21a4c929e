"""Source readers: one module per source kind (chat_jsonl, chatgpt_export, claude_export, transcript, wiki,
writing) built on base.py, and the registry (registry.py) that maps each kind to its reader. The package
face imports nothing, so a reader importing base.py never goes through the registry."""
