"""The prompt template (recorded at training time or given) and title → description records."""
