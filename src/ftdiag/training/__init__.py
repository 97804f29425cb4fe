"""train, and what FtdiagCallback reuses: the recipe, its data, its live checks and callbacks."""
