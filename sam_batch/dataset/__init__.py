"""The output dataset: its Arrow schema, RLE masks, the writer of parts and the reader.

Plain Python: no Ray, no torch."""
