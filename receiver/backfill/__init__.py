"""Backfill: read each provider's own record (list APIs) back, page by page, to find what webhooks lost."""
