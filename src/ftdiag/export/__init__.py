"""merge and check-export: fold an adapter into its base, and check what was exported from it."""
