"""Wire protocol: frames, schemas and error codes (one source of truth)."""
