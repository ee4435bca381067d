"""The tools example: skills that call an MCP notes server (notes.server)."""
