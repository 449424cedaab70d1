"""What re-reads pixels or re-runs the model: gallery thumbnails, leakage hashes, embeddings,
Grad-CAM."""
