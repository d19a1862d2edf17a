"""The Ray layer: actors that hold models, the scheduler that feeds them chunks.

Only this package imports Ray; everything it runs is plain Python from the rest
of ``sam_batch``.
"""
