"""Document processing: PDF reading, chunking, embedding and sample generation (no storage)."""
