"""HTML output: the self-contained report page and the SVG charts drawn into it."""
