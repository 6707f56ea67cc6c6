"""Mappings: which source table feeds which target table, and how a row is shaped on the way.

Data teams write them in ``mappings/*.yaml``::

    mappings:
      - name: customers
        source: {system: crm, table: public.customers}
        target: {database: warehouse, table: dim_customer}
        key: [id]
        where: "country in ('DE', 'FR') and status <> 'closed'"
        columns:                       # omitted: every column (but `exclude:`), same names
          id: customer_id
          email: {column: email_hash, transform: [trim, lower, sha256]}
          signup: {column: signed_up_on, type: date}
        set: {region: EU, synced_from: {from: source_table}}
        on_delete: delete              # delete | ignore | {soft: deleted_at}

``model`` is what the data path uses (``Mapping``); ``reader`` reads the files
(``load_mappings``); ``where``, ``transforms`` and ``casts`` are the row filter, the column
transforms and the casts.
"""

from syncd.mapping.model import METADATA, ColumnMap, Mapping, OnDelete, Row, SetColumn
from syncd.mapping.reader import load_mappings
from syncd.mapping.transforms import TRANSFORMS

__all__ = [
    "METADATA",
    "TRANSFORMS",
    "ColumnMap",
    "Mapping",
    "OnDelete",
    "Row",
    "SetColumn",
    "load_mappings",
]
