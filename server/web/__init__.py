"""The operators' pages: Jinja2 templates, their translations and the render helper."""
