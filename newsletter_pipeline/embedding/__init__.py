"""Step 3, embedding: one sentence vector per item (embed), on torch or OpenVINO (openvino_backend), cached
(embed_cache)."""
