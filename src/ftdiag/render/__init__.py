"""Renderers: the only code that knows about Rich, JSON, Markdown, HTML and JUnit."""
