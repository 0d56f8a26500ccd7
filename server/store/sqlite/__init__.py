"""The SQLite implementation of the store: the writer thread, migrations, one module per
resource. Each resource module holds plain functions over a ``Database`` connection; the
``Store`` facade decides which connection (a reader, or the writer thread) runs them.
"""
