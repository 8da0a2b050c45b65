"""Data sets into S3: ``upload`` (folders and zips), and the check of an S3 layout."""
