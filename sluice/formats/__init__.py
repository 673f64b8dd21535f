"""Wire formats: one package per format (`anthropic`, `openai_chat`, `openai_responses`,
`openai_embeddings`, `gemini`, `bedrock_converse`), each building its `WireRecord`;
`registry.record_of(wire)` is the one lookup (docs/design/wire-formats.md). Pure: no I/O, no
logging, no clock."""
