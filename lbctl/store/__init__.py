"""The git store: commits, the journal, selectors, bundles, the remote and its lease."""
