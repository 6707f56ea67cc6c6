"""Target tables from the source's catalog: ``syncd schema`` and the type tables.

``catalog`` reads what a source table is (columns, declared types, primary key); ``types``
says which target type holds each source type, per dialect pair; ``plan`` turns a mapping and
its source table into the target table it needs, compares that with the target and renders
the DDL that closes the gap (never dropping or narrowing anything); ``command`` is
``syncd schema [--apply]`` and the drift warnings of ``syncd check``.
"""
