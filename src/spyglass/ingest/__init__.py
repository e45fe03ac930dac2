"""``spyglass ingest``: files and folders into a collection.

``loaders.open_source`` opens a path: JSONL, CSV and Parquet rows (``loaders``),
folders of documents (``folders``, ``readers``, ``passages``) or of images
(``images``). ``pipeline.ingest`` writes a source through the engine; documents
are chunked with the collection encoder's tokenizer (``tokens``, ``chunker``)
and re-ingested incrementally (``incremental``).
"""
