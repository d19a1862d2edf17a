"""Finishing a video: stitch segments into global ids (pure), then commit its parts."""
