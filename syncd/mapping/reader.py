"""Reading ``mappings/*.yaml``: every mistake reported at once, with file, line and a fix.

:func:`load_mappings` reads every file and reports every problem together, each naming its
file, line and what to write instead (for a ``where`` that does not parse, also the position
in it), before anything runs.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

from syncd.config.yamlfile import Node, did_you_mean, parse_yaml, unknown_key
from syncd.errors import ConfigError, Problem
from syncd.mapping.casts import CASTS
from syncd.mapping.model import METADATA, ColumnMap, Mapping, OnDelete, SetColumn
from syncd.mapping.transforms import TRANSFORMS
from syncd.mapping.where import Where, WhereSyntaxError, parse_where


def load_mappings(directory: Path, databases: Collection[str]) -> list[Mapping]:
    """Every mapping in ``directory``'s ``*.yaml`` and ``*.yml`` files, in file-name order.

    ``databases`` are the configured target database names. Raises :class:`ConfigError` with
    every problem in every file; files whose names start with "." (editor leftovers) are skipped.
    """
    files, problems = _mapping_files(directory)
    mappings: list[Mapping] = []
    names: list[tuple[str, str, int]] = []  # (name, file, line) of every item with a name
    for path in files:
        reader = _FileReader(str(path), sorted(databases))
        mappings.extend(reader.read(path))
        problems.extend(reader.problems)
        names.extend((name, reader.file, line) for name, line in reader.names)
    problems.extend(_duplicate_names(names))
    if files and not mappings and not problems:
        message = "the mapping files define no mappings; add one under their 'mappings:' list"
        problems.append(Problem(str(directory), None, message))
    if problems:
        # Top of each file down, files in order: the order a person fixes them in.
        raise ConfigError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return mappings


def _mapping_files(directory: Path) -> tuple[list[Path], list[Problem]]:
    example = directory / "crm.yaml"
    if not directory.is_dir():
        message = f"mapping directory does not exist; create it and write one like {example}"
        return [], [Problem(str(directory), None, message)]
    files = sorted(
        path
        for path in directory.iterdir()
        if path.suffix in (".yaml", ".yml") and not path.name.startswith(".") and path.is_file()
    )
    if not files:
        return [], [
            Problem(
                str(directory), None, f"no mapping files in {directory}; write one like {example}"
            )
        ]
    return files, []


def _duplicate_names(names: list[tuple[str, str, int]]) -> list[Problem]:
    problems = []
    first: dict[str, tuple[str, int]] = {}
    for name, file, line in names:
        if name in first:
            where = f"{first[name][0]}:{first[name][1]}"
            problems.append(
                Problem(
                    file,
                    line,
                    f"mapping '{name}': the name is already used at "
                    f"{where}; give each mapping its own name",
                )
            )
        else:
            first[name] = (file, line)
    return problems


MAPPING_KEYS = (
    "name", "source", "target", "key", "columns", "on_delete", "where", "exclude", "set",
    "on_new_column",
)  # fmt: skip
SOURCE_KEYS = ("system", "table")
TARGET_KEYS = ("database", "table")
COLUMN_KEYS = ("column", "transform", "type")
ON_DELETE = "delete, ignore or {soft: COLUMN}"
ON_NEW_COLUMN: dict[str, Literal["add", "ignore", "dead-letter"]] = {
    "add": "add",
    "ignore": "ignore",
    "dead-letter": "dead-letter",
}
EXAMPLE = (
    "{name: customers, source: {system: crm, table: public.customers}, "
    "target: {database: warehouse, table: dim_customer}, key: [id]}"
)


class _FileReader:
    """Reads one mapping file, collecting every problem with its line."""

    def __init__(self, file: str, databases: list[str]):
        self.file = file
        self.databases = databases
        self.problems: list[Problem] = []
        self.names: list[tuple[str, int]] = []

    def read(self, path: Path) -> list[Mapping]:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(Problem(self.file, None, f"cannot read mapping file: {exc}"))
            return []
        root, problems = parse_yaml(text, self.file)
        self.problems.extend(problems)
        if root is None and problems:
            return []
        items = self._items(root)
        found = (self._mapping(item, index) for index, item in enumerate(items))
        return [mapping for mapping in found if mapping is not None]

    def _items(self, root: Node | None) -> list[Node]:
        entries = root.mapping if root is not None else None
        for key, node in (entries or {}).items():
            if key != "mappings":
                self.problem(node.line, f"{key}: {unknown_key(key, ['mappings'])}")
        if entries is None or "mappings" not in entries:
            self.problem(
                root.line if root is not None else None,
                "not a mapping file: it needs "
                f"a top-level 'mappings:' list, like mappings: [{EXAMPLE}]",
            )
            return []
        node = entries["mappings"]
        if node.value is None:
            return []  # an empty list waiting for its first mapping
        if node.sequence is None:
            self.problem(
                node.line,
                f"mappings: expected a list of mappings (each item starting "
                f"with '- name:'), found {node.describe()}",
            )
            return []
        return node.sequence

    def _mapping(self, item: Node, index: int) -> Mapping | None:
        fields = item.mapping
        if fields is None:
            self.problem(
                item.line,
                f"mappings[{index}]: expected a mapping like {EXAMPLE}, found {item.describe()}",
            )
            return None
        before = len(self.problems)
        name = self._name(fields, item.line, f"mappings[{index}]")
        item_reader = _ItemReader(self, f"mapping '{name}'" if name else f"mappings[{index}]")
        mapping = item_reader.read(fields, item.line, name or "")
        return mapping if len(self.problems) == before else None

    def _name(self, fields: dict[str, Node], line: int, label: str) -> str | None:
        node = fields.get("name")
        if node is None:
            self.problem(
                line,
                f"{label}: name: missing; write name: customers (unique, it shows "
                "in logs, metrics and dead letters)",
            )
            return None
        if not isinstance(node.value, str) or not node.value.strip():
            self.problem(
                node.line,
                f"{label}: name: expected a non-empty name such as "
                f"customers, found {node.describe()}",
            )
            return None
        self.names.append((node.value, line))
        return node.value

    def problem(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))


class _ItemReader:
    """Reads one item of a ``mappings:`` list; every message starts with the mapping's label."""

    def __init__(self, file: _FileReader, label: str):
        self.file = file
        self.label = label

    def problem(self, line: int | None, path: str, message: str) -> None:
        self.file.problem(line, f"{self.label}: {path}: {message}")

    def read(self, fields: dict[str, Node], line: int, name: str) -> Mapping | None:
        self.check_keys(fields, "", MAPPING_KEYS)
        source = self.section(fields, "source", SOURCE_KEYS, line)
        target = self.section(fields, "target", TARGET_KEYS, line)
        system = self.text(source, "source", "system", "crm")
        source_table = self.table(source, "source")
        database = self.database(target)
        target_table = self.table(target, "target")
        key = self.key(fields, line)
        columns = self.columns(fields.get("columns"), key)
        on_delete = self.on_delete(fields.get("on_delete"), key, columns)
        where = self.where(fields.get("where"))
        exclude = self.exclude(fields.get("exclude"), key, columns)
        set_columns = self.set_columns(fields.get("set"), key, columns, on_delete)
        on_new_column = self.on_new_column(fields.get("on_new_column"), columns)
        if system is None or source_table is None or database is None:
            return None
        if target_table is None or key is None:
            return None
        return Mapping(
            name=name,
            source_system=system,
            source_table=source_table,
            target_database=database,
            target_table=target_table,
            key=key,
            columns=columns,
            on_delete=on_delete,
            file=self.file.file,
            line=line,
            where=where,
            exclude=exclude,
            set_columns=set_columns,
            on_new_column=on_new_column,
            on_new_column_given=fields.get("on_new_column") is not None,
        )

    def check_keys(self, entries: dict[str, Node], path: str, allowed: tuple[str, ...]) -> None:
        for key, node in entries.items():
            if key not in allowed:
                self.problem(node.line, f"{path}.{key}" if path else key, unknown_key(key, allowed))

    def section(
        self, fields: dict[str, Node], key: str, allowed: tuple[str, ...], line: int
    ) -> Node | None:
        """A required ``{...}`` section, its keys checked; None (reported) when missing or wrong."""
        node = fields.get(key)
        shape = "{" + ", ".join(f"{k}: ..." for k in allowed) + "}"
        if node is None:
            self.problem(line, key, f"missing; write {key}: {shape}")
            return None
        if node.mapping is None:
            self.problem(node.line, key, f"expected {shape}, found {node.describe()}")
            return None
        self.check_keys(node.mapping, key, allowed)
        return node

    def text(self, section: Node | None, path: str, key: str, example: str) -> str | None:
        """A required non-empty string ``path.key``; None (reported) when missing or wrong."""
        if section is None or section.mapping is None:
            return None  # the whole section is missing or wrong: reported already
        node = section.mapping.get(key)
        if node is None:
            self.problem(section.line, f"{path}.{key}", f"missing; write {key}: {example}")
            return None
        if not isinstance(node.value, str) or not node.value.strip():
            self.problem(
                node.line,
                f"{path}.{key}",
                f"expected a name such as {example}, found {node.describe()}",
            )
            return None
        return node.value

    def table(self, section: Node | None, path: str) -> str | None:
        example = "public.customers" if path == "source" else "dim_customer"
        table = self.text(section, path, "table", example)
        if table is None or section is None or section.mapping is None:
            return None
        parts = table.split(".")
        if len(parts) > 2 or not all(part.strip() for part in parts):
            self.problem(
                section.mapping["table"].line,
                f"{path}.table",
                f"expected 'table' or 'schema.table', found '{table}'",
            )
            return None
        return table

    def database(self, section: Node | None) -> str | None:
        database = self.text(section, "target", "database", "warehouse")
        if database is None or section is None or section.mapping is None:
            return None
        if database in self.file.databases:
            return database
        configured = ", ".join(self.file.databases) or "none"
        self.problem(
            section.mapping["database"].line,
            "target.database",
            f"unknown database '{database}'"
            f"{did_you_mean(database, self.file.databases)} "
            f"(configured databases: {configured})",
        )
        return None

    def key(self, fields: dict[str, Node], line: int) -> tuple[str, ...] | None:
        node = fields.get("key")
        expected = "a list of the source columns that identify a row, such as [id]"
        if node is None:
            self.problem(
                line,
                "key",
                "missing; write the source columns that identify a row, such as key: [id]",
            )
            return None
        items = [node] if isinstance(node.value, str) else node.sequence
        if not items:
            self.problem(node.line, "key", f"expected {expected}, found {node.describe()}")
            return None
        key: list[str] = []
        for item in items:
            if not isinstance(item.value, str) or not item.value.strip():
                self.problem(item.line, "key", f"expected a column name, found {item.describe()}")
            elif item.value in key:
                self.problem(item.line, "key", f"'{item.value}' is listed twice; list it once")
            else:
                key.append(item.value)
        return tuple(key) if len(key) == len(items) else None

    def columns(
        self, node: Node | None, key: tuple[str, ...] | None
    ) -> tuple[ColumnMap, ...] | None:
        if node is None or node.value is None:
            return None
        entries = node.mapping
        if not entries:
            self.problem(
                node.line,
                "columns",
                "expected source: target pairs such as "
                f"{{id: customer_id}}, or leave columns out to copy every column as it "
                f"is, found {node.describe()}",
            )
            return None
        columns = tuple(self.column(source, entry) for source, entry in entries.items())
        self.check_targets(columns, entries)
        for column in key or ():
            if column not in entries:
                self.problem(
                    node.line,
                    "columns",
                    f"key column '{column}' is not listed; add "
                    f"'{column}: <target column>' (or '{column}:' to keep its name)",
                )
        return columns

    def column(self, source: str, node: Node) -> ColumnMap:
        """One ``source: target`` entry; a wrong one is reported and read as "same name"."""
        path = f"columns.{source}"
        expected = "a target column name or {column: NAME, transform: T or [T, …], type: TYPE}"
        if node.value is None:
            return ColumnMap(source, source)  # `email:` keeps the name
        if isinstance(node.value, str) and node.value.strip():
            return ColumnMap(source, node.value)
        spec = node.mapping
        if spec is None:
            self.problem(node.line, path, f"expected {expected}, found {node.describe()}")
            return ColumnMap(source, source)
        self.check_keys(spec, path, COLUMN_KEYS)
        target = spec.get("column")
        if target is not None and (not isinstance(target.value, str) or not target.value.strip()):
            self.problem(
                target.line,
                f"{path}.column",
                f"expected a target column name, found {target.describe()}",
            )
            target = None
        name = target.value if target is not None and isinstance(target.value, str) else source
        transforms = self.transforms(spec.get("transform"), path)
        return ColumnMap(source, name, transforms, self.cast(spec.get("type"), path))

    def transforms(self, node: Node | None, path: str) -> tuple[str, ...]:
        """``transform: NAME`` or ``transform: [NAME, …]`` (applied in that order)."""
        if node is None or node.value is None:
            return ()
        items = node.sequence if node.sequence is not None else [node]
        known = sorted(TRANSFORMS)
        names: list[str] = []
        for item in items:
            if isinstance(item.value, str) and item.value in TRANSFORMS:
                names.append(item.value)
                continue
            hint = did_you_mean(item.value, known) if isinstance(item.value, str) else ""
            self.problem(
                item.line,
                f"{path}.transform",
                f"unknown transform {item.describe()}{hint} (known: {', '.join(known)})",
            )
        return tuple(names)

    def cast(self, node: Node | None, path: str) -> str | None:
        if node is None or node.value is None:
            return None
        if isinstance(node.value, str) and node.value in CASTS:
            return node.value
        known = list(CASTS)
        hint = did_you_mean(node.value, known) if isinstance(node.value, str) else ""
        self.problem(
            node.line,
            f"{path}.type",
            f"unknown type {node.describe()}{hint} (known: {', '.join(known)})",
        )
        return None

    def where(self, node: Node | None) -> Where | None:
        if node is None or node.value is None:
            return None
        if not isinstance(node.value, str) or not node.value.strip():
            self.problem(
                node.line,
                "where",
                "expected a filter such as \"country in ('DE', 'FR') and status <> 'closed'\", "
                f"found {node.describe()}",
            )
            return None
        try:
            return parse_where(node.value)
        except WhereSyntaxError as exc:
            shown = node.value if len(node.value) <= 80 else node.value[:77] + "..."
            self.problem(
                node.line,
                "where",
                f"at character {exc.column} of {shown!r}: {exc}",
            )
            return None

    def exclude(
        self, node: Node | None, key: tuple[str, ...] | None, columns: tuple[ColumnMap, ...] | None
    ) -> frozenset[str]:
        if node is None or node.value is None:
            return frozenset()
        if columns is not None:
            self.problem(
                node.line,
                "exclude",
                "goes with 'columns' left out (every column but these); with 'columns' "
                "given, leave the unwanted columns out of it instead",
            )
            return frozenset()
        items = node.sequence if node.sequence is not None else [node]
        names: set[str] = set()
        for item in items:
            if not isinstance(item.value, str) or not item.value.strip():
                self.problem(
                    item.line, "exclude", f"expected a column name, found {item.describe()}"
                )
            elif item.value in (key or ()):
                self.problem(
                    item.line,
                    "exclude",
                    f"'{item.value}' is a key column: the target needs it; remove it here",
                )
            else:
                names.add(item.value)
        return frozenset(names)

    def set_columns(
        self,
        node: Node | None,
        key: tuple[str, ...] | None,
        columns: tuple[ColumnMap, ...] | None,
        on_delete: OnDelete,
    ) -> tuple[SetColumn, ...]:
        if node is None or node.value is None:
            return ()
        entries = node.mapping
        if not entries:
            self.problem(
                node.line,
                "set",
                "expected target columns and their values, such as {region: EU, "
                f"synced_from: {{from: source_table}}}}, found {node.describe()}",
            )
            return ()
        renamed = {c.source: c.target for c in columns or ()}
        taken = {renamed.get(k, k): "a key column" for k in key or ()}
        taken.update({c.target: f"fed by columns.{c.source}" for c in columns or ()})
        if on_delete.soft_column:
            taken[on_delete.soft_column] = "the soft-delete column"
        found: list[SetColumn] = []
        for target, entry in entries.items():
            if target in taken:
                self.problem(
                    entry.line,
                    f"set.{target}",
                    f"'{target}' is {taken[target]}; set a column nothing else writes",
                )
                continue
            column = self.set_column(target, entry)
            if column is not None:
                found.append(column)
        return tuple(found)

    def set_column(self, target: str, node: Node) -> SetColumn | None:
        path = f"set.{target}"
        spec = node.mapping
        if spec is None:
            if node.sequence is not None:
                self.problem(node.line, path, f"expected a constant, found {node.describe()}")
                return None
            return SetColumn(target, constant=_constant(node.value))
        self.check_keys(spec, path, ("from",))
        source = spec.get("from")
        known = list(METADATA)
        if source is None or not isinstance(source.value, str) or source.value not in METADATA:
            value = source.value if source is not None else None
            hint = did_you_mean(value, known) if isinstance(value, str) else ""
            found = source.describe() if source is not None else "nothing"
            self.problem(
                (source or node).line,
                f"{path}.from",
                f"expected one of {', '.join(known)}{hint}, found {found}",
            )
            return None
        return SetColumn(target, metadata=source.value)

    def on_new_column(
        self, node: Node | None, columns: tuple[ColumnMap, ...] | None
    ) -> Literal["add", "ignore", "dead-letter"]:
        """What to do with an event column the target lacks; see Mapping.on_new_column."""
        if node is None or node.value is None:
            return "add" if columns is None else "dead-letter"
        value = node.value
        if not isinstance(value, str) or value not in ON_NEW_COLUMN:
            hint = did_you_mean(value, list(ON_NEW_COLUMN)) if isinstance(value, str) else ""
            self.problem(
                node.line,
                "on_new_column",
                f"expected add, ignore or dead-letter{hint}, found {node.describe()}",
            )
            return "add" if columns is None else "dead-letter"
        if columns is not None and value == "add":
            # With a list, every column the mapping writes is named in it (and checked against
            # the target before anything runs): a source column not listed is left out, so no
            # column is ever new. Adding unlisted ones would also carry columns left out on
            # purpose (a password hash) the moment the target lacks them.
            self.problem(
                node.line,
                "on_new_column",
                "'add' goes with 'columns' left out (every column of the event); with "
                "'columns' given, a source column not listed is left out: list a new column "
                "there (and run syncd schema --apply), or write ignore or dead-letter",
            )
            return "dead-letter"
        return ON_NEW_COLUMN[value]

    def check_targets(self, columns: tuple[ColumnMap, ...], entries: dict[str, Node]) -> None:
        fed_by: dict[str, str] = {}
        for column in columns:
            first = fed_by.setdefault(column.target, column.source)
            if first != column.source:
                self.problem(
                    entries[column.source].line,
                    f"columns.{column.source}",
                    f"target column '{column.target}' is already fed by '{first}'; "
                    "each target column takes one source column",
                )

    def on_delete(
        self,
        node: Node | None,
        key: tuple[str, ...] | None,
        columns: tuple[ColumnMap, ...] | None,
    ) -> OnDelete:
        if node is None or node.value in (None, "delete"):
            return OnDelete("delete")
        if node.value == "ignore":
            return OnDelete("ignore")
        spec = node.mapping
        if spec is not None:
            self.check_keys(spec, "on_delete", ("soft",))
        if spec is None or "soft" not in spec:
            hint = "; write {soft: deleted_at} naming the column to set"
            found = f"{node.describe()}{hint if node.value == 'soft' else ''}"
            self.problem(node.line, "on_delete", f"expected {ON_DELETE}, found {found}")
            return OnDelete("delete")
        soft = spec["soft"]
        if not isinstance(soft.value, str) or not soft.value.strip():
            self.problem(
                soft.line,
                "on_delete.soft",
                "expected the column to set on delete, such as deleted_at, "
                f"found {soft.describe()}",
            )
            return OnDelete("delete")
        self.check_soft_column(soft.value, soft.line, key, columns)
        return OnDelete("soft", soft.value)

    def check_soft_column(
        self,
        soft: str,
        line: int,
        key: tuple[str, ...] | None,
        columns: tuple[ColumnMap, ...] | None,
    ) -> None:
        """The soft-delete column must be one that no source column writes to."""
        renamed = {c.source: c.target for c in columns or ()}
        target_key = [renamed.get(k, k) for k in key or ()]
        if soft in target_key:
            self.problem(
                line,
                "on_delete.soft",
                f"'{soft}' is a key column; choose a separate column such as deleted_at",
            )
            return
        for column in columns or ():
            if column.target == soft:
                self.problem(
                    line,
                    "on_delete.soft",
                    f"'{soft}' is also the target "
                    f"of columns.{column.source}; choose a column no source column "
                    "feeds, such as deleted_at",
                )


def _constant(value: Any) -> Any:
    """A ``set:`` constant as YAML gives it (text, a number, true/false, null)."""
    return value
